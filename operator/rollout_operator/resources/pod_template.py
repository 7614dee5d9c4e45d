"""Pieces every pod of a run shares: containers, env, volumes, resources and the pod template.

Each container gets the security context of `security.py`, resource limits, writable scratch
space only on volumes, and its configuration through env: `ROLLOUT_RUN_CONFIG` (no secrets) and
secrets as `secretKeyRef`s, so the operator never reads or copies a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rollout_operator.resources.placement import placement_fields, run_scheduling
from rollout_operator.resources.security import container_security_context, pod_security_context
from rollout_operator.runtime.run_config import DEFAULT_REPO_DIR, MODEL_API_KEY_ENV, RUN_CONFIG_ENV

if TYPE_CHECKING:
    from rollout_operator.api.spec import ResourceRequirements, SchedulingSpec
    from rollout_operator.resources.context import RunContext

GIT_CREDENTIAL_KEYS = {
    "ROLLOUT_GIT_TOKEN": "token",
    "ROLLOUT_GIT_SSH_KEY": "ssh-privatekey",
    "ROLLOUT_GIT_USERNAME": "username",
}
# Keys of spec.output.credentialsSecret that become env vars of the same name when present.
STORAGE_CREDENTIAL_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)

TMP_DIR = "/tmp"
WORKSPACE_DIR = "/workspace"
REPO_DIR = DEFAULT_REPO_DIR
TMP_VOLUME = "tmp"
WORKSPACE_VOLUME = "workspace"


def env_value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    """An env var filled by the kubelet from a Secret's key; the manifest holds only names."""
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def process_env() -> list[dict[str, Any]]:
    """A writable home and temp folder on the scratch volume, since the root filesystem is not."""
    return [
        env_value("HOME", TMP_DIR),
        env_value("TMPDIR", TMP_DIR),
        env_value("XDG_CACHE_HOME", f"{TMP_DIR}/.cache"),
        env_value("PYTHONDONTWRITEBYTECODE", "1"),
        env_value("PYTHONUNBUFFERED", "1"),
    ]


def run_config_env(ctx: RunContext) -> dict[str, Any]:
    return env_value(RUN_CONFIG_ENV, ctx.run_config().to_env_value())


def storage_env(ctx: RunContext) -> list[dict[str, Any]]:
    """Object-storage credentials from spec.output.credentialsSecret, each key optional."""
    secret = ctx.spec.output.credentials_secret
    if secret is None:
        return []
    return [secret_env(key, secret, key, optional=True) for key in STORAGE_CREDENTIAL_KEYS]


def git_env(ctx: RunContext) -> list[dict[str, Any]]:
    """Clone credentials from spec.repo.credentialsSecret: a token or an SSH key, as present."""
    secret = ctx.spec.repo.credentials_secret
    if secret is None:
        return []
    return [
        secret_env(name, secret, key, optional=True) for name, key in GIT_CREDENTIAL_KEYS.items()
    ]


def model_env(ctx: RunContext) -> list[dict[str, Any]]:
    ref = ctx.spec.model.api_key_secret
    if ref is None:
        return []
    return [secret_env(MODEL_API_KEY_ENV, ref.name, ref.key)]


def judge_env(ctx: RunContext) -> list[dict[str, Any]]:
    """Scorer secrets (judge API keys) under the env names the user chose."""
    return [
        secret_env(item.env, item.secret_key_ref.name, item.secret_key_ref.key)
        for item in ctx.spec.scoring.secrets
    ]


def container_resources(
    spec_resources: ResourceRequirements | None,
    default_requests: Mapping[str, str],
    default_limits: Mapping[str, str],
    extra_limits: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """Requests and limits with every default resource (cpu, memory) limited.

    The spec's values win. A resource the spec requests but does not limit is limited to its
    request (a default limit could be below it); one the spec limits but does not request is
    left to Kubernetes (request = limit); one the spec leaves out gets both defaults.
    """
    given_requests = (spec_resources.requests if spec_resources else None) or {}
    given_limits = (spec_resources.limits if spec_resources else None) or {}
    requests = {name: str(amount) for name, amount in given_requests.items()}
    limits = {name: str(amount) for name, amount in given_limits.items()}
    for name, default_limit in default_limits.items():
        limits.setdefault(name, requests.get(name, default_limit))
    for name, default_request in default_requests.items():
        if name not in given_requests and name not in given_limits:
            requests[name] = default_request
    limits.update(extra_limits or {})
    return {"requests": requests, "limits": limits}


def volume_mount(volume: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount


def empty_dir(name: str, size_limit: str, *, medium: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"sizeLimit": size_limit}
    if medium:
        source["medium"] = medium
    return {"name": name, "emptyDir": source}


def scratch_volumes(ctx: RunContext, *, workspace: bool) -> list[dict[str, Any]]:
    """/tmp for every pod, and /workspace for pods that unpack or clone the repo."""
    volumes = [empty_dir(TMP_VOLUME, ctx.settings.tmp_size_limit)]
    if workspace:
        volumes.append(empty_dir(WORKSPACE_VOLUME, ctx.settings.workspace_size_limit))
    return volumes


def container(
    ctx: RunContext,
    *,
    name: str,
    image: str,
    command: Sequence[str],
    env: Iterable[Mapping[str, Any]],
    resources: Mapping[str, Any],
    mounts: Iterable[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One hardened container: read-only root, no privileges, results in its termination message."""
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": ctx.settings.image_pull_policy,
        "command": list(command),
        "env": [dict(item) for item in env],
        "resources": dict(resources),
        "volumeMounts": [dict(mount) for mount in mounts],
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec.update(extra or {})
    return spec


def sandbox_container(
    ctx: RunContext,
    *,
    name: str,
    command: Sequence[str],
    env: Iterable[Mapping[str, Any]] = (),
    resources: Mapping[str, Any],
    workspace_read_only: bool | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A container of the sandbox image with the run's config, /tmp, and optionally /workspace."""
    mounts = [volume_mount(TMP_VOLUME, TMP_DIR)]
    if workspace_read_only is not None:
        mounts.append(volume_mount(WORKSPACE_VOLUME, WORKSPACE_DIR, read_only=workspace_read_only))
    return container(
        ctx,
        name=name,
        image=ctx.sandbox_image,
        command=command,
        env=[*process_env(), run_config_env(ctx), *env],
        resources=resources,
        mounts=mounts,
        extra=extra,
    )


def sandbox_resources(
    ctx: RunContext, spec_resources: ResourceRequirements | None
) -> dict[str, Any]:
    return container_resources(
        spec_resources, ctx.settings.default_requests, ctx.settings.default_limits
    )


def unpack_bundle_container(ctx: RunContext) -> dict[str, Any]:
    """Init container that fetches the synced bundle into /workspace/repo for the main container.

    Only this container gets the storage credentials; user code in the main container does not.
    """
    return sandbox_container(
        ctx,
        name="unpack-bundle",
        command=["rolloutctl", "unpack-bundle", "--url", ctx.require_bundle_url(),
                 "--dest", REPO_DIR],
        env=storage_env(ctx),
        resources=sandbox_resources(ctx, None),
        workspace_read_only=False,
    )


BUNDLE_FETCH_URL_ENV = "ROLLOUT_BUNDLE_FETCH_URL"


def fetch_bundle_container(ctx: RunContext) -> dict[str, Any]:
    """Init container of a user-code pod: fetches the bundle through its signed URL (read-only
    access to that one object) into /workspace/repo. The pod holds no storage credential."""
    return sandbox_container(
        ctx,
        name="fetch-bundle",
        command=["rolloutctl", "unpack-bundle", "--url-env", BUNDLE_FETCH_URL_ENV,
                 "--dest", REPO_DIR],
        env=[env_value(BUNDLE_FETCH_URL_ENV, ctx.require_bundle_fetch_url())],
        resources=sandbox_resources(ctx, None),
        workspace_read_only=False,
    )


def pod_spec(
    ctx: RunContext,
    *,
    containers: Sequence[Mapping[str, Any]],
    init_containers: Sequence[Mapping[str, Any]] = (),
    volumes: Sequence[Mapping[str, Any]],
    restart_policy: str,
    deadline_seconds: int | None = None,
    runtime_class: bool = True,
    scheduling: SchedulingSpec | None = None,
) -> dict[str, Any]:
    """A pod spec without Kubernetes API access, with the run's RuntimeClass when asked for,
    placed by `scheduling` (the run's `spec.scheduling` when None)."""
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [dict(item) for item in containers],
        "volumes": [dict(item) for item in volumes],
    }
    if init_containers:
        spec["initContainers"] = [dict(item) for item in init_containers]
    if deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = deadline_seconds
    if runtime_class and ctx.spec.sandbox.runtime_class_name:
        spec["runtimeClassName"] = ctx.spec.sandbox.runtime_class_name
    if ctx.settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in ctx.settings.image_pull_secrets]
    spec.update(placement_fields(scheduling or run_scheduling(ctx)))
    return spec


def pod_template(ctx: RunContext, component: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": ctx.labels(component)}, "spec": dict(spec)}


def object_meta(ctx: RunContext, component: str) -> dict[str, Any]:
    """Name, namespace, labels and the controlling owner reference of a child."""
    return {
        "name": ctx.child_name(component),
        "namespace": ctx.namespace,
        "labels": ctx.labels(component),
        "ownerReferences": [ctx.owner_reference()],
    }


# `rolloutctl` pod entrypoints exit with this code when the run's configuration is wrong and a
# retry cannot help (rollout_operator.cli.pod_common.EXIT_CONFIG).
CONFIG_ERROR_EXIT_CODE = 2


def pod_failure_policy(container_name: str, *, on_config_error: str) -> dict[str, Any]:
    """Node drains and preemptions do not use up retries; a configuration error ends retrying.

    `on_config_error` is FailJob, or FailIndex for an Indexed Job with a per-index backoff limit.
    """
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": on_config_error,
                "onExitCodes": {
                    "containerName": container_name,
                    "operator": "In",
                    "values": [CONFIG_ERROR_EXIT_CODE],
                },
            },
        ]
    }


def job_manifest(
    ctx: RunContext,
    component: str,
    spec: Mapping[str, Any],
    *,
    job_spec: Mapping[str, Any],
) -> dict[str, Any]:
    """A Job that runs `spec` as its pod; the run, not a TTL, decides when the Job goes away."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(ctx, component),
        "spec": {**job_spec, "template": pod_template(ctx, component, spec)},
    }


def run_once_job(
    ctx: RunContext,
    component: str,
    container: dict[str, Any],
    *,
    deadline_seconds: int,
    backoff_limit: int,
    workspace: bool,
    init_containers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A one-pod Job (sync, inspection, aggregate): retried on crashes, failed at once on a
    config error."""
    spec = pod_spec(
        ctx,
        containers=[container],
        init_containers=init_containers,
        volumes=scratch_volumes(ctx, workspace=workspace),
        restart_policy="Never",
        deadline_seconds=deadline_seconds,
    )
    return job_manifest(
        ctx,
        component,
        spec,
        job_spec={
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline_seconds,
            "podFailurePolicy": pod_failure_policy(container["name"], on_config_error="FailJob"),
        },
    )
