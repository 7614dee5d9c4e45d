"""Security settings of every pod the operator creates, and a checker for them.

User code (tools, rewards, rubrics) runs in these pods, so each one meets the Kubernetes
"restricted" Pod Security Standard and more: a read-only root filesystem, no service-account
token, resource limits on every container, and a deadline on every pod that is meant to end.
`pod_security_violations` states those rules as code so that tests can hold every builder to them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

NON_ROOT_ID = 65532

# Volume types the restricted standard allows.
ALLOWED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
REQUIRED_LIMITS = ("cpu", "memory")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def pod_security_context() -> dict[str, Any]:
    """Pod-level settings: a fixed non-root identity and the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "fsGroup": NON_ROOT_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level settings: no privilege, no capabilities, nothing writable but volumes."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_violations(
    pod_spec: Mapping[str, Any], *, api_client: bool = False
) -> list[str]:
    """Every way `pod_spec` falls short of the operator's pod security rules; empty when none.

    A pod whose restartPolicy is not Always (a Job's pod) must also carry activeDeadlineSeconds.
    `api_client` marks a pod that talks to the API server (the operator's own): it may mount its
    ServiceAccount token; every other rule still holds.
    """
    problems = [*_pod_level_violations(pod_spec, api_client), *_volume_violations(pod_spec)]
    pod_context = pod_spec.get("securityContext") or {}
    for where, container in _containers(pod_spec):
        problems.extend(
            f"{where}: {problem}" for problem in _container_violations(container, pod_context)
        )
    return problems


def _pod_level_violations(pod_spec: Mapping[str, Any], api_client: bool) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            yield f"pod: {field} must not be true"
    if not api_client and pod_spec.get("automountServiceAccountToken") is not False:
        yield "pod: automountServiceAccountToken must be false"
    context = pod_spec.get("securityContext") or {}
    if context.get("runAsUser") == 0:
        yield "pod: runAsUser must not be 0 (root)"
    if context.get("sysctls"):
        yield "pod: sysctls must not be set"
    if _selinux_type_forbidden(context):
        yield "pod: seLinuxOptions.type is not an allowed type"
    if pod_spec.get("restartPolicy", "Always") != "Always" and not pod_spec.get(
        "activeDeadlineSeconds"
    ):
        yield "pod: activeDeadlineSeconds must be set on a pod that runs to completion"


def _volume_violations(pod_spec: Mapping[str, Any]) -> Iterator[str]:
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        forbidden = sorted(kinds - ALLOWED_VOLUME_TYPES)
        if forbidden:
            yield f"volume {volume.get('name')!r}: type {', '.join(forbidden)} is not allowed"


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in CONTAINER_LISTS:
        for container in pod_spec.get(field) or []:
            kind = "init container" if field == "initContainers" else "container"
            yield f"{kind} {container.get('name')!r}", container


def _container_violations(
    container: Mapping[str, Any], pod_context: Mapping[str, Any]
) -> Iterator[str]:
    context = container.get("securityContext") or {}
    if context.get("privileged"):
        yield "privileged must not be true"
    if context.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation must be false"
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        yield "capabilities.drop must include ALL"
    if capabilities.get("add"):
        yield "capabilities.add must be empty"
    if context.get("readOnlyRootFilesystem") is not True:
        yield "readOnlyRootFilesystem must be true"
    if not _effective(context, pod_context, "runAsNonRoot"):
        yield "runAsNonRoot must be true"
    if _effective(context, pod_context, "runAsUser") == 0:
        yield "runAsUser must not be 0 (root)"
    seccomp = _effective(context, pod_context, "seccompProfile") or {}
    if seccomp.get("type") not in ALLOWED_SECCOMP_TYPES:
        yield "seccompProfile.type must be RuntimeDefault or Localhost"
    if context.get("procMount", "Default") != "Default":
        yield "procMount must be Default"
    if _selinux_type_forbidden(context):
        yield "seLinuxOptions.type is not an allowed type"
    if any(port.get("hostPort") for port in container.get("ports") or []):
        yield "hostPort must not be set"
    limits = (container.get("resources") or {}).get("limits") or {}
    missing = [name for name in REQUIRED_LIMITS if not limits.get(name)]
    if missing:
        yield f"resources.limits must set {', '.join(missing)}"


def _effective(context: Mapping[str, Any], pod_context: Mapping[str, Any], key: str) -> Any:
    """A container's value for `key`, falling back to the pod's, as the kubelet resolves it."""
    return context[key] if key in context else pod_context.get(key)


def _selinux_type_forbidden(context: Mapping[str, Any]) -> bool:
    selinux_type = (context.get("seLinuxOptions") or {}).get("type")
    return selinux_type not in (None, "", "container_t", "container_init_t", "container_kvm_t")


def pod_spec_of(manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside a Job or Deployment manifest (or a Pod's own spec); None otherwise."""
    kind = manifest.get("kind")
    spec = manifest.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return ((spec.get("template") or {}).get("spec")) or {}
    return None


def workload_security_violations(
    manifest: Mapping[str, Any], *, api_client: bool = False
) -> list[str]:
    """`pod_security_violations` of a workload's pod template, plus a Job-level deadline."""
    pod_spec = pod_spec_of(manifest)
    if pod_spec is None:
        return []
    problems = pod_security_violations(pod_spec, api_client=api_client)
    if manifest.get("kind") == "Job" and not (manifest.get("spec") or {}).get(
        "activeDeadlineSeconds"
    ):
        problems.append("job: activeDeadlineSeconds must be set")
    return problems
