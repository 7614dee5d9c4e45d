"""Kueue admission as a run sees it: the `Queued` condition of its worker Job (created suspended,
unsuspended by Kueue on admission) and of its inference server's pods (held by Kueue's
scheduling gate until admitted).

The operator never unsuspends a queued Job: Kueue does. The worker Job's activeDeadlineSeconds
only runs while it is unsuspended (Kubernetes restarts the timer on resume), and the inference
server's start deadline counts from its admission.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rollout_operator.api.constants import ConditionStatus, ConditionType, Reason
from rollout_operator.api.spec import SchedulingSpec
from rollout_operator.api.status import Condition, find_condition
from rollout_operator.reconcile.observed import DeploymentState, JobState
from rollout_operator.resources.placement import KUEUE_QUEUE_LABEL

QueueState = tuple[str, str, str]
"""(status, reason, message) of the Queued condition."""


def worker_queue_state(scheduling: SchedulingSpec, job: JobState) -> QueueState | None:
    """Queued while Kueue holds the worker Job suspended; None for a Job that is not queued
    or has finished."""
    queue = scheduling.queue_name
    if queue is None or job.complete or job.failed_terminal:
        return None
    if job.suspended:
        kueue = f" Kueue says: {job.admission}" if job.admission else ""
        return (ConditionStatus.TRUE, Reason.WAITING_FOR_ADMISSION,
                f"The worker Job {job.name} waits in Kueue LocalQueue {queue} for admission; "
                f"its deadline starts when Kueue admits it.{kueue}")
    return (ConditionStatus.FALSE, Reason.ADMITTED,
            f"Kueue admitted the worker Job {job.name} from LocalQueue {queue}.")


def jobs_awaiting_admission(children: Iterable[Mapping[str, Any]]) -> list[str]:
    """Uids of the run's Jobs that wait suspended in a Kueue queue, whose Workloads say why."""
    uids = []
    for child in children:
        metadata, spec = child.get("metadata") or {}, child.get("spec") or {}
        if (child.get("kind") == "Job" and spec.get("suspend") and metadata.get("uid")
                and KUEUE_QUEUE_LABEL in (metadata.get("labels") or {})):
            uids.append(str(metadata["uid"]))
    return uids


def inference_queue_state(scheduling: SchedulingSpec,
                          deployment: DeploymentState | None) -> QueueState | None:
    """Queued while Kueue gates any of the inference server's pods; None when the server is
    not queued or has no pods yet."""
    queue = scheduling.queue_name
    if queue is None or deployment is None or deployment.pods == 0:
        return None
    if deployment.gated:
        return (ConditionStatus.TRUE, Reason.WAITING_FOR_ADMISSION,
                f"{deployment.gated} of the inference server's pods wait in Kueue LocalQueue "
                f"{queue} for admission; its start deadline counts from admission.")
    return (ConditionStatus.FALSE, Reason.ADMITTED,
            f"Kueue admitted the inference server's pods from LocalQueue {queue}.")


def admitted_since(conditions: list[Condition]) -> datetime | None:
    """When the run was last seen admitted after waiting in a queue (None if it never was)."""
    queued = find_condition(conditions, ConditionType.QUEUED)
    if queued is None or queued.status != ConditionStatus.FALSE:
        return None
    return queued.last_transition_time
