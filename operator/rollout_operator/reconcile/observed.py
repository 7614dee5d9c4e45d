"""What the operator sees of a run's children, reduced to the facts decisions need.

Built from plain manifest dicts as the API returns them, so decisions stay pure and can be tested
with tables of hand-written objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout_operator.resources.context import COMPONENT_LABEL
from rollout_operator.resources.placement import KUEUE_ADMISSION_GATE, KUEUE_JOB_UID_LABEL

JOB_NAME_LABEL = "job-name"
JOB_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True, slots=True)
class JobState:
    name: str
    completions: int
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    complete: bool = False
    failed_terminal: bool = False
    failure_message: str = ""
    failure_reason: str = ""
    """Reason of the Job's Failed condition, e.g. DeadlineExceeded or BackoffLimitExceeded."""
    suspended: bool = False
    indexed: bool = False
    """completionMode Indexed: the Job reports which indexes completed and which failed."""
    completed_indexes: frozenset[int] = frozenset()
    failed_indexes: frozenset[int] = frozenset()
    messages: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """Termination message of each completion index's latest finished pod (parsed JSON)."""
    admission: str = ""
    """Why Kueue has not admitted it yet, from its Workload's conditions (empty when unknown)."""

    @property
    def pod_errors(self) -> str:
        """What the pods said about their failure: the distinct `error`s of their termination
        messages (the cause behind a Job's "reached the specified backoff limit")."""
        seen: list[str] = []
        for index in sorted(self.messages):
            error = self.messages[index].get("error")
            if error and str(error) not in seen:
                seen.append(str(error))
        shown = "; ".join(text[:300] for text in seen[:2])
        return shown + (f" (and {len(seen) - 2} more)" if len(seen) > 2 else "")

    @property
    def done(self) -> int:
        """Completions done: completed indexes as the Job reports them (`status.succeeded`
        counts pods, and lags behind them) or, for a Job that is not Indexed, succeeded pods."""
        return len(self.completed_indexes) if self.indexed else self.succeeded


def parse_indexes(text: str | None) -> frozenset[int]:
    """`"0,2-3"` (the Job status's `completedIndexes` / `failedIndexes`) as `{0, 2, 3}`;
    parts that are not numbers or ranges are left out."""
    indexes: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if last else low
        except ValueError:
            continue
        if 0 <= low <= high:
            indexes.update(range(low, high + 1))
    return frozenset(indexes)


def format_indexes(indexes: Iterable[int]) -> str:
    """`{0, 2, 3}` as `"0, 2-3"`, for messages."""
    ranges: list[list[int]] = []
    for index in sorted(indexes):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


@dataclass(frozen=True, slots=True)
class DeploymentState:
    name: str
    replicas: int
    available: int
    created: str = ""
    """creationTimestamp (RFC 3339), empty when unknown."""
    problem: str = ""
    """Why a pod of it cannot become ready (crash loop, image pull, unschedulable), if known."""
    restarts: int = 0
    """Container restarts of its pods that exist now (a server that died and was restarted)."""
    pods: int = 0
    """Its pods that exist now."""
    gated: int = 0
    """Its pods that Kueue holds (scheduling gate) until it admits them."""

    @property
    def ready(self) -> bool:
        return self.replicas > 0 and self.available >= self.replicas


@dataclass(frozen=True, slots=True)
class Observed:
    """A run's children by component, plus the Secrets that exist in its namespace."""

    jobs: Mapping[str, JobState] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentState] = field(default_factory=dict)
    present: frozenset[tuple[str, str]] = frozenset()
    """(kind, name) of every child that exists."""
    secrets: frozenset[str] = frozenset()

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self.present


def parse_termination_message(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text[-2000:]}
    return value if isinstance(value, dict) else {"raw": text[-2000:]}


def _condition_true(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _pod_message(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        message = parse_termination_message(terminated.get("message"))
        if message is not None:
            return message
    return None


def _pod_time(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def kueue_admission(workload: Mapping[str, Any]) -> str:
    """What a Kueue Workload says about admission: its QuotaReserved (or else Admitted)
    condition while that is False, as "reason: message"; empty otherwise."""
    conditions = (workload.get("status") or {}).get("conditions") or []
    for kind in ("QuotaReserved", "Admitted"):
        for condition in conditions:
            if condition.get("type") == kind and condition.get("status") == "False":
                reason, message = condition.get("reason") or "", condition.get("message") or ""
                return ": ".join(str(part) for part in (reason, message) if part)[:500]
    return ""


def job_state(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
              admission: str = "") -> JobState:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    name = str(job["metadata"]["name"])
    messages: dict[int, dict[str, Any]] = {}
    finished = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
    for pod in sorted(finished, key=_pod_time):  # later pods of an index win
        labels = (pod.get("metadata") or {}).get("labels") or {}
        message = _pod_message(pod)
        if message is not None:
            messages[int(labels.get(JOB_INDEX_LABEL, 0))] = message
    failed = _condition_true(job, "Failed")
    return JobState(
        name=name,
        completions=int(spec.get("completions") or 1),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=_condition_true(job, "Complete") is not None,
        failed_terminal=failed is not None,
        failure_message=str((failed or {}).get("message") or (failed or {}).get("reason") or ""),
        failure_reason=str((failed or {}).get("reason") or ""),
        suspended=bool(spec.get("suspend")),
        indexed=spec.get("completionMode") == "Indexed",
        completed_indexes=parse_indexes(status.get("completedIndexes")),
        failed_indexes=parse_indexes(status.get("failedIndexes")),
        messages=messages,
        admission=admission,
    )


# Waiting reasons that do not clear up by themselves.
STUCK_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})


def pod_problem(pod: Mapping[str, Any]) -> str:
    """Why `pod` cannot become ready, in one line; empty when nothing is known to be wrong."""
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "PodScheduled", "False", "Unschedulable"):
            return f"pod {name} cannot be scheduled: {condition.get('message') or 'no node fits'}"
    for container in [*(status.get("initContainerStatuses") or []),
                      *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason not in STUCK_REASONS:
            continue
        text = f"pod {name}, container {container.get('name')}: {reason}"
        last = (container.get("lastState") or {}).get("terminated") or {}
        detail = last.get("message") or waiting.get("message") or ""
        if last.get("exitCode") is not None:
            text += f" (last exit code {last['exitCode']})"
        return f"{text}: {str(detail).strip()[-300:]}" if detail else text
    return ""


def deployment_state(deployment: Mapping[str, Any],
                     pods: Iterable[Mapping[str, Any]] = ()) -> DeploymentState:
    metadata = deployment.get("metadata") or {}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    pods = list(pods)
    problem = next((text for text in map(pod_problem, pods) if text), "")
    return DeploymentState(
        name=str(metadata["name"]),
        replicas=int(spec.get("replicas", 1) or 0),
        available=int(status.get("availableReplicas") or 0),
        created=str(metadata.get("creationTimestamp") or ""),
        problem=problem,
        restarts=sum(int(c.get("restartCount") or 0) for pod in pods
                     for c in (pod.get("status") or {}).get("containerStatuses") or []),
        pods=len(pods),
        gated=sum(1 for pod in pods if _awaits_admission(pod)),
    )


def _awaits_admission(pod: Mapping[str, Any]) -> bool:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(gate.get("name") == KUEUE_ADMISSION_GATE for gate in gates)


def observe(
    children: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]] = (),
    secrets: Iterable[str] = (),
    workloads: Iterable[Mapping[str, Any]] = (),
    created: Iterable[tuple[str, str]] = (),
) -> Observed:
    """Reduce listed children (Jobs, Deployments, Services, ...), their pods and the Kueue
    Workloads of their Jobs to `Observed`.

    `created` names (kind, name) of children just created that the list does not show yet:
    they are present (nothing creates them again) though nothing is known of their state."""
    admission: dict[str, str] = {}
    for workload in workloads:
        job_uid = ((workload.get("metadata") or {}).get("labels") or {}).get(KUEUE_JOB_UID_LABEL)
        if job_uid:
            admission[str(job_uid)] = kueue_admission(workload)
    pods_by_job: dict[str, list[Mapping[str, Any]]] = {}
    server_pods: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        job_name = labels.get(JOB_NAME_LABEL)
        if job_name:
            pods_by_job.setdefault(str(job_name), []).append(pod)
        else:
            server_pods.setdefault(str(labels.get(COMPONENT_LABEL, "")), []).append(pod)
    jobs: dict[str, JobState] = {}
    deployments: dict[str, DeploymentState] = {}
    present: set[tuple[str, str]] = set(created)
    for child in children:
        metadata = child.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        kind, name = str(child.get("kind")), str(metadata.get("name"))
        present.add((kind, name))
        component = str((metadata.get("labels") or {}).get(COMPONENT_LABEL, ""))
        if kind == "Job":
            jobs[component] = job_state(child, pods_by_job.get(name, ()),
                                        admission.get(str(metadata.get("uid")), ""))
        elif kind == "Deployment":
            deployments[component] = deployment_state(child, server_pods.get(component, ()))
    return Observed(jobs, deployments, frozenset(present), frozenset(secrets))
