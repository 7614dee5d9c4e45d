"""The rollout servers of an Osmosis 0.3 workspace (`spec.rollout`): a Deployment running the
user's entrypoint, its Service, and a NetworkPolicy that lets only this run's workers in and,
out, only the model gateway (plus DNS, the bundle's storage and the package index, which the
init containers need).

User code: the pods hold no model key, no storage or git credential and no service-account
token; only the Secrets `spec.rollout.secrets` names reach the server, as `[secrets]` do in an
eval run. The init containers fetch the bundle through its signed URL and build the rollout's
environment with `uv sync` (its build backends are user code, so the build runs here, not on
the trusted side). The workers run the model gateway themselves (`GATEWAY_PORT` of each worker
pod): the rollout server reaches the model only through the worker that sent it the rollout, at
the URL and with the bearer that worker gave it.

A second container serves the rollouts' artifact directory read-only (`ARTIFACT_PORT`) so
that workers can collect each trajectory's ATIF file; it runs no user code.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.api.spec import RolloutSpec
from rollout_operator.resources.context import ROLLOUT_SERVER, WORKERS, RunContext
from rollout_operator.resources.pod_template import (
    REPO_DIR,
    TMP_DIR,
    TMP_VOLUME,
    container,
    env_value,
    fetch_bundle_container,
    object_meta,
    pod_spec,
    pod_template,
    process_env,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
    secret_env,
    volume_mount,
)
from rollout_operator.resources.user_code import (
    cidr_egress,
    dns_egress,
    server_container,
    server_network_policy,
)
from rollout_operator.workspaces.shard_runner import (
    ARTIFACT_URL_ENV,
    GATEWAY_HOST_ENV,
    GATEWAY_PORT_ENV,
    ROLLOUT_SERVER_URL_ENV,
)

ROLLOUT_PORT = 9100
ARTIFACT_PORT = 9101
GATEWAY_PORT = 9102
"""Where each worker pod serves the model gateway to the rollout servers."""
ROLLOUT_PORT_NAME = "rollout"
ARTIFACT_PORT_NAME = "artifacts"
SERVER_CONTAINER = "rollout-server"
BUILD_CONTAINER = "build-env"
ARTIFACT_CONTAINER = "artifacts"
ARTIFACT_ROOT = f"{TMP_DIR}/rollout-artifacts"


def rollout_dir(ctx: RunContext) -> str:
    """The rollout project inside the unpacked bundle."""
    rollout = _rollout(ctx)
    return f"{REPO_DIR}/rollouts/{rollout.name}"


def build_env_container(ctx: RunContext) -> dict[str, Any]:
    """`uv sync` of the rollout project with its own pins, into rollouts/<name>/.venv, with
    the image's Python (no interpreter downloads)."""
    return sandbox_container(
        ctx,
        name=BUILD_CONTAINER,
        command=["uv", "sync", "--project", rollout_dir(ctx)],
        env=[env_value("UV_PYTHON_DOWNLOADS", "never")],
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=False,
    )


def rollout_env(ctx: RunContext) -> list[dict[str, Any]]:
    """What the user's server gets: the protocol's variables, `spec.rollout.env`, and the
    Secrets `spec.rollout.secrets` names (as references)."""
    rollout = _rollout(ctx)
    env = [
        env_value("_OSMOSIS_ROLLOUT_PORT", str(ROLLOUT_PORT)),
        env_value("_OSMOSIS_ROLLOUT_ARTIFACT_ROOT", ARTIFACT_ROOT),
        {"name": "_OSMOSIS_ROLLOUT_INSTANCE_ID",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    env += [env_value(name, value) for name, value in sorted(rollout.env.items())]
    env += [secret_env(item.env, item.secret_key_ref.name, item.secret_key_ref.key)
            for item in rollout.secrets]
    return env


def rollout_server_container(ctx: RunContext) -> dict[str, Any]:
    rollout = _rollout(ctx)
    spec = server_container(
        ctx, name=SERVER_CONTAINER,
        command=[f"{rollout_dir(ctx)}/.venv/bin/python", rollout.entrypoint],
        port=ROLLOUT_PORT, port_name=ROLLOUT_PORT_NAME, env=rollout_env(ctx),
    )
    spec["workingDir"] = rollout_dir(ctx)
    return spec


def artifact_container(ctx: RunContext) -> dict[str, Any]:
    """Serves ARTIFACT_ROOT read-only over HTTP for the workers (the Python standard library's
    file server; no user code, no credential)."""
    return container(
        ctx,
        name=ARTIFACT_CONTAINER,
        image=ctx.sandbox_image,
        command=["python", "-m", "http.server", "--bind", "0.0.0.0", "--directory",
                 ARTIFACT_ROOT, str(ARTIFACT_PORT)],
        env=process_env(),
        resources=sandbox_resources(ctx, None),
        mounts=[volume_mount(TMP_VOLUME, TMP_DIR, read_only=True)],
        extra={"ports": [{"name": ARTIFACT_PORT_NAME, "containerPort": ARTIFACT_PORT,
                          "protocol": "TCP"}]},
    )


def build_rollout_server_deployment(ctx: RunContext) -> dict[str, Any]:
    spec = pod_spec(
        ctx,
        containers=[rollout_server_container(ctx), artifact_container(ctx)],
        init_containers=[fetch_bundle_container(ctx), build_env_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Always",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(ctx, ROLLOUT_SERVER),
        "spec": {
            "replicas": ctx.spec.sandbox.replicas,
            "selector": {"matchLabels": ctx.selector_labels(ROLLOUT_SERVER)},
            "template": pod_template(ctx, ROLLOUT_SERVER, spec),
        },
    }


def build_rollout_server_service(ctx: RunContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, ROLLOUT_SERVER),
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels(ROLLOUT_SERVER),
            "ports": [
                {"name": ROLLOUT_PORT_NAME, "port": ROLLOUT_PORT,
                 "targetPort": ROLLOUT_PORT_NAME, "protocol": "TCP"},
                {"name": ARTIFACT_PORT_NAME, "port": ARTIFACT_PORT,
                 "targetPort": ARTIFACT_PORT_NAME, "protocol": "TCP"},
            ],
        },
    }


def gateway_egress(ctx: RunContext) -> dict[str, Any]:
    """To the run's worker pods, on the gateway port only."""
    return {
        "to": [{"podSelector": {"matchLabels": ctx.selector_labels(WORKERS)}}],
        "ports": [{"protocol": "TCP", "port": GATEWAY_PORT}],
    }


def rollout_server_egress_rules(ctx: RunContext) -> list[dict[str, Any]]:
    """The gateway; DNS; the storage ranges (the bundle fetch) and the package index ranges
    (`uv sync`) of the operator's settings. Nothing of spec.sandbox.egress (refused)."""
    rules = [gateway_egress(ctx), dns_egress()]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.package_index_egress]
    return rules


def build_rollout_server_network_policy(ctx: RunContext) -> dict[str, Any]:
    policy = server_network_policy(ctx, ROLLOUT_SERVER, port=ROLLOUT_PORT,
                                   egress=rollout_server_egress_rules(ctx))
    policy["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": ARTIFACT_PORT})
    return policy


def rollout_server_url(ctx: RunContext) -> str:
    """The rollout Service as worker pods reach it."""
    return ctx.service_url(ROLLOUT_SERVER, ROLLOUT_PORT)


def worker_env(ctx: RunContext) -> list[dict[str, Any]]:
    """What a worker of a `spec.rollout` run needs to drive the rollout servers and to give
    them its gateway: the Services' URLs and its own pod IP. None for other runs."""
    if ctx.spec.rollout is None:
        return []
    return [
        env_value(ROLLOUT_SERVER_URL_ENV, rollout_server_url(ctx)),
        env_value(ARTIFACT_URL_ENV, ctx.service_url(ROLLOUT_SERVER, ARTIFACT_PORT)),
        env_value(GATEWAY_PORT_ENV, str(GATEWAY_PORT)),
        {"name": GATEWAY_HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


def worker_ports(ctx: RunContext) -> dict[str, Any]:
    """The worker container's gateway port, for a `spec.rollout` run."""
    if ctx.spec.rollout is None:
        return {}
    return {"ports": [{"name": "gateway", "containerPort": GATEWAY_PORT, "protocol": "TCP"}]}


def _rollout(ctx: RunContext) -> RolloutSpec:
    if ctx.spec.rollout is None:
        raise ValueError(f"run {ctx.namespace}/{ctx.name} has no spec.rollout: it has tool "
                         "servers, not a rollout server")
    return ctx.spec.rollout
