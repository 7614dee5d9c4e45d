"""A run queued in Kueue: the worker Job waits suspended until Kueue unsuspends it, the inference
server's pods wait behind Kueue's scheduling gate, the run shows Queued meanwhile, and its own
deadlines do not run while it waits."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from rollout_operator.api.constants import ConditionType, Phase, Reason
from rollout_operator.api.status import find_condition
from rollout_operator.reconcile.decide import RunObject, decide
from rollout_operator.reconcile.observed import deployment_state, kueue_admission, observe
from rollout_operator.reconcile.queueing import jobs_awaiting_admission
from rollout_operator.resources.placement import (
    KUEUE_ADMISSION_GATE,
    KUEUE_JOB_UID_LABEL,
    KUEUE_QUEUE_LABEL,
)
from tests.reconcile.test_decide import (
    AGGREGATE_OK,
    NOW,
    SECRETS,
    SETTINGS,
    Cluster,
    _body,
    _condition,
    _started,
    _status,
    _step,
    _synced,
)

QUEUED = {"queueName": "team-a", "priorityClassName": "batch"}


def _failed(body: dict[str, Any]) -> bool:
    return any(c.type == ConditionType.FAILED and c.status == "True"
               for c in _status(body).conditions)


def _kueue_admits(cluster: Cluster) -> None:
    """What Kueue does on admission: unsuspend the Job."""
    cluster.component("Job", "workers")["spec"]["suspend"] = False


def test_a_queued_worker_job_waits_for_kueue_and_the_operator_never_unsuspends_it() -> None:
    body, cluster = _body(scheduling=QUEUED), Cluster()
    _started(body, cluster)
    job = cluster.component("Job", "workers")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert _condition(body, ConditionType.QUEUED) == ("True", Reason.WAITING_FOR_ADMISSION)

    for later in (timedelta(0), timedelta(hours=30)):  # far past the worker deadline
        waiting = _step(body, cluster, NOW + later)
        assert waiting.patch_jobs == [] and waiting.delete == [] and waiting.create == []
        assert _condition(body, ConditionType.QUEUED) == ("True", Reason.WAITING_FOR_ADMISSION)
        assert _condition(body, ConditionType.COMPLETE) == (
            "False", Reason.WAITING_FOR_ADMISSION)
        assert not _failed(body)
    assert _status(body).phase == Phase.RUNNING

    _kueue_admits(cluster)
    admitted = _step(body, cluster)
    assert admitted.patch_jobs == []
    assert _condition(body, ConditionType.QUEUED) == ("False", Reason.ADMITTED)
    assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.ROLLOUTS_RUNNING)
    assert [e.reason for e in admitted.events] == [Reason.ADMITTED, Reason.ROLLOUTS_RUNNING]

    cluster.finish_job("workers", {0: {"shard": 0, "done": 40}, 1: {"shard": 1, "done": 40}})
    _step(body, cluster)
    cluster.finish_job("aggregate", {0: AGGREGATE_OK})
    _step(body, cluster)
    assert _condition(body, ConditionType.COMPLETE) == ("True", Reason.COMPLETED)
    assert _condition(body, ConditionType.QUEUED) == ("False", Reason.ADMITTED)


def test_suspending_a_queued_run_removes_its_worker_job_and_resuming_queues_it_again() -> None:
    body, cluster = _body(scheduling=QUEUED), Cluster()
    _started(body, cluster)
    _kueue_admits(cluster)
    _step(body, cluster)
    job_name = cluster.component("Job", "workers")["metadata"]["name"]

    body["spec"]["suspend"] = True
    suspended = _step(body, cluster)
    assert suspended.patch_jobs == []  # Kueue would resume an admitted Job suspended by others
    assert suspended.delete == [("batch/v1", "Job", job_name)]
    assert _condition(body, ConditionType.QUEUED) == ("False", Reason.SUSPENDED)
    held = _step(body, cluster)
    assert held.create == [] and _status(body).phase == Phase.SUSPENDED

    body["spec"]["suspend"] = False
    resumed = _step(body, cluster)
    assert [m["kind"] for m in resumed.create] == ["Job"]
    assert resumed.create[0]["spec"]["suspend"] is True
    assert _condition(body, ConditionType.QUEUED) == ("True", Reason.WAITING_FOR_ADMISSION)


def test_a_run_without_a_queue_has_no_queued_condition() -> None:
    body, cluster = _body(), Cluster()
    _started(body, cluster)
    assert cluster.component("Job", "workers")["spec"]["suspend"] is False
    assert all(c.type != ConditionType.QUEUED for c in _status(body).conditions)


def _server_pod(gated: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "server"}]}
    if gated:
        spec["schedulingGates"] = [{"name": KUEUE_ADMISSION_GATE}]
    return {"metadata": {"name": "server-pod", "labels": {"rollouts.dev/component": "inference"}},
            "spec": spec, "status": {"phase": "Pending"}}


def test_the_inference_start_deadline_counts_from_kueue_admission() -> None:
    serve = {"serve": {"model": "Qwen/Qwen3-8B", "scheduling": {"queueName": "gpu"}}}
    body, cluster = _body(model=serve), Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    server = cluster.component("Deployment", "inference")
    assert server["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu"
    server["metadata"]["creationTimestamp"] = NOW.isoformat()
    cluster.pods.append(_server_pod(gated=True))
    deadline = timedelta(seconds=SETTINGS.inference_start_deadline_seconds)

    late = NOW + 3 * deadline  # queued far longer than the start deadline
    _step(body, cluster, late)
    assert _condition(body, ConditionType.QUEUED) == ("True", Reason.WAITING_FOR_ADMISSION)
    assert _condition(body, ConditionType.INFERENCE_READY) == (
        "False", Reason.INFERENCE_STARTING)
    assert _status(body).phase == Phase.STARTING

    cluster.pods[-1] = _server_pod(gated=False)  # Kueue admitted: the gate is gone
    _step(body, cluster, late)
    assert _condition(body, ConditionType.QUEUED) == ("False", Reason.ADMITTED)
    _step(body, cluster, late + deadline - timedelta(seconds=1))
    assert _condition(body, ConditionType.INFERENCE_READY) == (
        "False", Reason.INFERENCE_STARTING)
    assert not _failed(body)
    _step(body, cluster, late + deadline + timedelta(seconds=1))
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.INFERENCE_FAILED)


def test_without_a_queue_the_inference_deadline_counts_from_creation() -> None:
    body, cluster = _body(model={"serve": {"model": "Qwen/Qwen3-8B"}}), Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    cluster.component("Deployment", "inference")["metadata"]["creationTimestamp"] = \
        NOW.isoformat()
    cluster.pods.append(_server_pod(gated=False))
    _step(body, cluster, NOW + timedelta(seconds=SETTINGS.inference_start_deadline_seconds + 1))
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.INFERENCE_FAILED)


def test_gated_pods_are_counted() -> None:
    deployment = {"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {}}
    state = deployment_state(deployment, [_server_pod(gated=True), _server_pod(gated=False)])
    assert (state.pods, state.gated) == (2, 1)
    assert deployment_state(deployment, []).gated == 0


PENDING = ("couldn't assign flavors to pod set main: insufficient quota for cpu in flavor "
           "cpu-batch, 4 more needed")


def _workload(job: dict[str, Any], *conditions: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "job-w", "labels": {KUEUE_JOB_UID_LABEL: job["metadata"]["uid"]}},
            "status": {"conditions": list(conditions)}}


def test_the_queued_condition_quotes_kueues_workload() -> None:
    body, cluster = _body(scheduling=QUEUED), Cluster()
    _started(body, cluster)
    job = cluster.component("Job", "workers")
    job["metadata"]["uid"] = "job-uid-1"
    other = copy.deepcopy(job)
    other["metadata"].update(uid="job-uid-2", name="another")
    assert jobs_awaiting_admission([job, other, cluster.component("Job", "sync")]) == [
        "job-uid-1", "job-uid-2"]

    workload = _workload(job, {"type": "QuotaReserved", "status": "False", "reason": "Pending",
                               "message": PENDING})
    observed = observe(cluster.children.values(), cluster.pods, SECRETS, [workload])
    assert observed.jobs["workers"].admission == f"Pending: {PENDING}"
    decision = decide(RunObject.from_body(body), observed, SETTINGS, NOW)
    assert decision.status is not None
    queued = find_condition(decision.status.conditions, ConditionType.QUEUED)
    assert queued is not None and queued.reason == Reason.WAITING_FOR_ADMISSION
    assert queued.message.endswith(f"Kueue says: Pending: {PENDING}")

    _kueue_admits(cluster)
    assert jobs_awaiting_admission([cluster.component("Job", "workers")]) == []


def test_what_a_workload_says_about_admission() -> None:
    job = {"metadata": {"uid": "u"}}
    assert kueue_admission(_workload(job)) == ""
    assert kueue_admission(_workload(
        job, {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
        {"type": "Admitted", "status": "False", "reason": "AdmissionChecks",
         "message": "waiting for provisioning"})) == "AdmissionChecks: waiting for provisioning"
    assert kueue_admission(_workload(
        job, {"type": "Admitted", "status": "True", "reason": "Admitted"})) == ""
