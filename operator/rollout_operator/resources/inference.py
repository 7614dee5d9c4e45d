"""The managed inference server (spec.model.serve): a vLLM or SGLang Deployment and its Service.

The server runs no user code, so it keeps the default runtime class (GPU runtimes and gVisor
rarely mix), but it gets the same non-root, read-only, no-token pod settings as every other pod.
Model weights and caches go to an emptyDir, shared memory to a memory-backed one.
It is placed by `serve.scheduling` (GPU nodes) when given, else by `spec.scheduling`; with a
queueName it is labelled for Kueue's Deployment integration.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.api.spec import ServeSpec
from rollout_operator.resources.context import INFERENCE, RunContext
from rollout_operator.resources.placement import inference_scheduling, queue_labels
from rollout_operator.resources.pod_template import (
    TMP_DIR,
    TMP_VOLUME,
    container,
    container_resources,
    empty_dir,
    env_value,
    object_meta,
    pod_spec,
    pod_template,
    volume_mount,
)

INFERENCE_CONTAINER = "server"
HEALTH_PATH = "/health"
PORT_NAME = "http"
GPU_RESOURCE = "nvidia.com/gpu"
CACHE_DIR = "/cache"
CACHE_VOLUME = "cache"
SHM_VOLUME = "dshm"
TENSOR_PARALLEL_FLAGS = {
    "vllm": ("--tensor-parallel-size", "-tp"),
    "sglang": ("--tp-size", "--tp", "--tensor-parallel-size"),
}


def _has_flag(args: list[str], flags: tuple[str, ...]) -> bool:
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in args for flag in flags)


def server_command(serve: ServeSpec) -> list[str]:
    """The engine's OpenAI-compatible server on all interfaces, split over the pod's GPUs."""
    args = list(serve.args)
    if serve.gpus > 1 and not _has_flag(args, TENSOR_PARALLEL_FLAGS[serve.engine]):
        args += [TENSOR_PARALLEL_FLAGS[serve.engine][0], str(serve.gpus)]
    port = str(serve.port)
    if serve.engine == "vllm":
        return ["vllm", "serve", serve.model, "--host", "0.0.0.0", "--port", port, *args]
    return [
        "python3", "-m", "sglang.launch_server", "--model-path", serve.model,
        "--host", "0.0.0.0", "--port", port, *args,
    ]


def server_image(ctx: RunContext, serve: ServeSpec) -> str:
    if serve.image:
        return serve.image
    return ctx.settings.vllm_image if serve.engine == "vllm" else ctx.settings.sglang_image


def _http_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def inference_container(ctx: RunContext, serve: ServeSpec) -> dict[str, Any]:
    settings = ctx.settings
    gpus = {GPU_RESOURCE: str(serve.gpus)} if serve.gpus else None
    return container(
        ctx,
        name=INFERENCE_CONTAINER,
        image=server_image(ctx, serve),
        command=server_command(serve),
        env=[
            # Engines keep compile caches under HOME; it lives on the large cache volume.
            env_value("HOME", CACHE_DIR),
            env_value("TMPDIR", TMP_DIR),
            env_value("HF_HOME", f"{CACHE_DIR}/huggingface"),
            env_value("XDG_CACHE_HOME", CACHE_DIR),
            env_value("VLLM_NO_USAGE_STATS", "1"),
            env_value("DO_NOT_TRACK", "1"),
        ],
        resources=container_resources(
            serve.resources, settings.inference_requests, settings.inference_limits, gpus
        ),
        mounts=[
            volume_mount(TMP_VOLUME, TMP_DIR),
            volume_mount(CACHE_VOLUME, CACHE_DIR),
            volume_mount(SHM_VOLUME, "/dev/shm"),
        ],
        extra={
            "ports": [{"name": PORT_NAME, "containerPort": serve.port, "protocol": "TCP"}],
            # Downloading and loading weights takes minutes: allow an hour before liveness.
            "startupProbe": _http_probe(period=10, failures=360),
            "readinessProbe": _http_probe(period=5, failures=3),
            "livenessProbe": _http_probe(period=15, failures=4),
        },
    )


def cache_volume(ctx: RunContext) -> dict[str, Any]:
    limit = ctx.settings.inference_cache_size_limit
    return empty_dir(CACHE_VOLUME, limit) if limit else {"name": CACHE_VOLUME, "emptyDir": {}}


def _serve(ctx: RunContext) -> ServeSpec:
    serve = ctx.spec.model.serve
    if serve is None:
        raise ValueError(
            f"run {ctx.namespace}/{ctx.name} uses an external model (spec.model.name); "
            "there is no inference server to build"
        )
    return serve


def build_inference_deployment(ctx: RunContext) -> dict[str, Any]:
    serve = _serve(ctx)
    scheduling = inference_scheduling(ctx)
    spec = pod_spec(
        ctx,
        containers=[inference_container(ctx, serve)],
        volumes=[
            empty_dir(TMP_VOLUME, ctx.settings.tmp_size_limit),
            cache_volume(ctx),
            empty_dir(SHM_VOLUME, ctx.settings.inference_shm_size_limit, medium="Memory"),
        ],
        restart_policy="Always",
        runtime_class=False,
        scheduling=scheduling,
    )
    # Kueue's Deployment integration reads the label on the Deployment and admits each pod
    # (held by a scheduling gate until then); the pod template carries it as Kueue would set it.
    queue = queue_labels(scheduling)
    metadata = object_meta(ctx, INFERENCE)
    metadata["labels"].update(queue)
    template = pod_template(ctx, INFERENCE, spec)
    template["metadata"]["labels"].update(queue)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": serve.replicas,
            "selector": {"matchLabels": ctx.selector_labels(INFERENCE)},
            "template": template,
        },
    }


def build_inference_service(ctx: RunContext) -> dict[str, Any]:
    serve = _serve(ctx)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, INFERENCE),
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels(INFERENCE),
            "ports": [
                {"name": PORT_NAME, "port": serve.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
