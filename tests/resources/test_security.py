"""`pod_security_violations`: silent on a hardened pod, and each rule can fail on its own."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from rollout_operator.resources.security import (
    container_security_context,
    pod_security_context,
    pod_security_violations,
    workload_security_violations,
)


def hardened_pod(restart_policy: str = "Never") -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "example/image:1",
        "securityContext": container_security_context(),
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "initContainers": [{**copy.deepcopy(container), "name": "init"}],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if restart_policy != "Always":
        pod["activeDeadlineSeconds"] = 60
    return pod


def main(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][0]
    return container


def init(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["initContainers"][0]
    return container


def drop(pod: dict[str, Any], key: str) -> None:
    """Remove `key` from both the pod's and the main container's security context."""
    pod["securityContext"].pop(key)
    main(pod)["securityContext"].pop(key)


Mutation = Callable[[dict[str, Any]], None]

MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("privileged", lambda p: main(p)["securityContext"].update(privileged=True), "privileged"),
    (
        "escalation allowed",
        lambda p: main(p)["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    (
        "escalation unset",
        lambda p: main(p)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    (
        "capabilities kept",
        lambda p: main(p)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        "drop must include ALL",
    ),
    (
        "capability added",
        lambda p: main(p)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "capabilities.add",
    ),
    (
        "writable root",
        lambda p: main(p)["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem",
    ),
    ("root user in container", lambda p: main(p)["securityContext"].update(runAsUser=0), "root"),
    ("root user in pod", lambda p: p["securityContext"].update(runAsUser=0), "root"),
    (
        "non-root not required",
        lambda p: drop(p, "runAsNonRoot"),
        "runAsNonRoot",
    ),
    (
        "seccomp unconfined",
        lambda p: main(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile",
    ),
    (
        "seccomp missing everywhere",
        lambda p: drop(p, "seccompProfile"),
        "seccompProfile",
    ),
    ("no limits", lambda p: main(p)["resources"].pop("limits"), "resources.limits"),
    ("no memory limit", lambda p: main(p)["resources"]["limits"].pop("memory"), "memory"),
    ("init container limits", lambda p: init(p).pop("resources"), "init container 'init'"),
    ("token mounted", lambda p: p.pop("automountServiceAccountToken"), "automountServiceAccount"),
    ("host network", lambda p: p.update(hostNetwork=True), "hostNetwork"),
    ("host pid", lambda p: p.update(hostPID=True), "hostPID"),
    ("host ipc", lambda p: p.update(hostIPC=True), "hostIPC"),
    (
        "host path volume",
        lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        "hostPath",
    ),
    ("host port", lambda p: main(p).update(ports=[{"containerPort": 80, "hostPort": 80}]),
     "hostPort"),
    ("sysctls", lambda p: p["securityContext"].update(sysctls=[{"name": "a", "value": "1"}]),
     "sysctls"),
    (
        "proc mount",
        lambda p: main(p)["securityContext"].update(procMount="Unmasked"),
        "procMount",
    ),
    (
        "selinux type",
        lambda p: main(p)["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        "seLinuxOptions",
    ),
    ("no deadline", lambda p: p.pop("activeDeadlineSeconds"), "activeDeadlineSeconds"),
]


@pytest.mark.parametrize("restart_policy", ["Never", "OnFailure", "Always"])
def test_a_hardened_pod_has_no_violations(restart_policy: str) -> None:
    assert pod_security_violations(hardened_pod(restart_policy)) == []


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in MUTATIONS], ids=[i for i, _, _ in MUTATIONS]
)
def test_each_rule_reports_its_violation(mutate: Mutation, expected: str) -> None:
    pod = hardened_pod()
    mutate(pod)
    problems = pod_security_violations(pod)
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_pod_level_settings_cover_containers_that_do_not_set_them() -> None:
    pod = hardened_pod()
    for container in (main(pod), init(pod)):
        for key in ("runAsNonRoot", "runAsUser", "seccompProfile"):
            container["securityContext"].pop(key, None)
    assert pod_security_violations(pod) == []


def test_a_job_without_its_own_deadline_is_reported() -> None:
    job: dict[str, Any] = {"kind": "Job", "spec": {"template": {"spec": hardened_pod()}}}
    assert workload_security_violations(job) == ["job: activeDeadlineSeconds must be set"]
    job["spec"]["activeDeadlineSeconds"] = 60
    assert workload_security_violations(job) == []
    assert workload_security_violations({"kind": "Service", "spec": {}}) == []
