"""A run queued in Kueue, against the API stand-in with `rolloutctl operator` as a real process:
the worker Job waits suspended, with no pods, and the run shows Queued (quoting the Workload Kueue
made for the Job), until the test admits it as Kueue would (patching spec.suspend to false);
then the run completes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.resources.placement import KUEUE_JOB_UID_LABEL, KUEUE_QUEUE_LABEL
from tests.k8s.server import wait_for
from tests.operator.harness import (
    KUEUE_WORKLOAD_CRD,
    NAMESPACE,
    Harness,
    Samples,
    make_repo,
    run_manifest,
)

pytestmark = pytest.mark.slow

TIMER_RECONCILES = ("rollout_operator_reconcile_duration_seconds_count", (("trigger", "timer"),))


def _condition(run: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions = (run.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def _worker_job(harness: Harness, uid: str) -> dict[str, Any] | None:
    done = harness.cluster.kubectl(
        "-n", NAMESPACE, "get", "jobs", "-o", "json",
        "-l", f"rollouts.dev/run-uid={uid},rollouts.dev/component=workers")
    items = json.loads(done.stdout)["items"]
    return items[0] if items else None


def _timer_reconciles(harness: Harness) -> float:
    samples: Samples = harness.operator.scrape()
    return samples.get(TIMER_RECONCILES, 0.0)


PENDING = "couldn't assign flavors to pod set main: insufficient quota for cpu in flavor cpu"
def _pending_workload(job: dict[str, Any]) -> dict[str, Any]:
    """The Workload Kueue makes for a Job it cannot admit yet."""
    meta = job["metadata"]
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": f"job-{meta['name']}-1a2b3", "namespace": NAMESPACE,
                     "labels": {KUEUE_JOB_UID_LABEL: meta["uid"]},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                          "name": meta["name"], "uid": meta["uid"],
                                          "controller": True}]},
        "spec": {"queueName": "team-a", "podSets": []},
        "status": {"conditions": [{"type": "QuotaReserved", "status": "False",
                                   "reason": "Pending", "message": PENDING,
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    }


def test_a_queued_run_waits_for_admission_then_completes(harness: Harness,
                                                         tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    harness.apply(run_manifest(
        "queued", repo, harness.model_url, harness.bucket, harness.s3.endpoint, rows=2,
        samples=1, shards=1,
        scheduling={"queueName": "team-a",
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}]}))

    def queued() -> dict[str, Any] | None:
        run = harness.get("queued")
        condition = _condition(run, "Queued")
        return run if condition and condition["status"] == "True" else None

    run = wait_for(queued, 150, interval=0.3, message="the run Queued")
    uid = run["metadata"]["uid"]
    assert _condition(run, "Queued")["reason"] == "WaitingForAdmission"  # type: ignore[index]
    job = _worker_job(harness, uid)
    assert job is not None and job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert job["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Exists"}]

    # What Kueue does next: a Workload for the Job, which says why it is not admitted yet.
    harness.apply(KUEUE_WORKLOAD_CRD)
    harness.apply(_pending_workload(job))

    def quoted() -> dict[str, Any] | None:
        run = harness.get("queued")
        condition = _condition(run, "Queued") or {}
        return run if condition.get("message", "").endswith(f"Kueue says: Pending: {PENDING}") \
            else None

    wait_for(quoted, 60, interval=0.3, message="Kueue's reason in the Queued condition")

    # Several more reconciles by the timer, and still nothing runs: the operator leaves a
    # queued Job suspended.
    seen = _timer_reconciles(harness)
    wait_for(lambda: _timer_reconciles(harness) >= seen + 3, 60, interval=0.2,
             message="three more timer reconciles")
    job = _worker_job(harness, uid)
    assert job is not None and job["spec"]["suspend"] is True
    pods = harness.cluster.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json", "-l",
                                   f"job-name={job['metadata']['name']}")
    assert json.loads(pods.stdout)["items"] == []
    still = harness.get("queued")
    assert _condition(still, "Queued")["status"] == "True"  # type: ignore[index]
    assert still["status"]["phase"] == "Running"

    harness.cluster.kubectl("-n", NAMESPACE, "patch", "job", job["metadata"]["name"],
                            "--type=merge", "-p", json.dumps({"spec": {"suspend": False}}))
    done = harness.wait_phase("queued", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)
    admitted = _condition(done, "Queued")
    assert admitted is not None and (admitted["status"], admitted["reason"]) == (
        "False", "Admitted")
    assert done["status"]["progress"]["completed"] == 2
