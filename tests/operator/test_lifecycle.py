"""`kubectl apply` to scored trajectories, with `rolloutctl operator` as a real process.

The cluster is the emulated API server of tests/k8s; Jobs run their containers' commands as
local processes with the pods' environment; the model is the scripted server; trajectories go
to moto's S3 server; tools are served by a real tool server process.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.server import wait_for
from tests.operator.harness import (
    MODEL_KEY,
    NAMESPACE,
    REWARD,
    Harness,
    Samples,
    make_repo,
    run_manifest,
)

pytestmark = pytest.mark.slow


def _assert_complete_and_exact(h: Harness, run: dict[str, object], rows: int,
                               samples: int) -> list[dict[str, object]]:
    records = h.records(run)  # type: ignore[arg-type]
    keys = Counter((r["row_index"], r["sample_index"], r.get("attempt", 0)) for r in records)
    assert {(i, s) for i, s, _ in keys} == {(i, s) for i in range(rows) for s in range(samples)}
    assert all(count == 1 for count in keys.values()), "a trajectory was written twice"
    kept: dict[tuple[object, object], dict[str, object]] = {}
    for record in records:  # per item the best record: a non-masked one, else the latest
        item = (record["row_index"], record["sample_index"])
        before = kept.get(item)
        if before is None or (before["status"] == "masked" and (
                record["status"] != "masked"
                or record.get("attempt", 0) > before.get("attempt", 0))):
            kept[item] = record
    return list(kept.values())


SUCCEEDED = ("rollout_operator_runs", (("phase", "Succeeded"),))
COMPLETE = ("rollout_operator_run_conditions", (("condition", "Complete"), ("status", "True")))


def _metrics_once(h: Harness, ready: Callable[[Samples], bool], what: str) -> Samples:
    """The operator's metrics once `ready` holds (it notes a status just after writing it)."""

    def scraped() -> Samples | None:
        samples = h.operator.scrape()
        return samples if ready(samples) else None

    return wait_for(scraped, 20, interval=0.2, message=f"the operator's metrics to show {what}")


def _assert_metrics_count(h: Harness, run: dict[str, Any]) -> None:
    samples = _metrics_once(h, lambda s: s.get(SUCCEEDED) == 1, "the run as Succeeded")
    assert samples[COMPLETE] == 1
    progress = run["status"]["progress"]
    for outcome in ("completed", "failed", "masked"):
        assert samples[("rollout_operator_rollouts_total", (("outcome", outcome),))] == (
            progress.get(outcome, 0)), outcome
    assert samples[("rollout_operator_reconcile_duration_seconds_count",
                    (("trigger", "create"),))] >= 1
    assert not [key for key in samples if key[0] == "rollout_operator_child_create_errors_total"]


def test_apply_to_complete(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    harness.apply(run_manifest("calc", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint))
    run = harness.wait_phase("calc", ("Succeeded", "Failed"))
    status = run["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)

    records = _assert_complete_and_exact(harness, run, rows=6, samples=2)
    assert all(r["status"] == "completed" and r["scores"] == {REWARD: 1.0} for r in records)

    results_key = status["artifacts"]["results"].removeprefix("s3://").split("/", 1)[1]
    bucket = harness.bucket.removeprefix("s3://").split("/", 1)[0]
    results = json.loads(harness.s3.client().get_object(Bucket=bucket, Key=results_key)[
        "Body"].read())
    assert results["summary"]["eval_fns"][REWARD]["mean"] == status["summary"][REWARD]["mean"]
    assert status["score"] == "1.000"
    assert status["progress"]["completed"] == 12
    assert len(json.dumps(status).encode()) < 32 * 1024
    assert status["commit"] and status["tools"] == ["add", "multiply"]
    _assert_metrics_count(harness, run)

    uid = run["metadata"]["uid"]
    # the run finished: its servers are torn down, its Jobs remain until the run goes
    kinds = Counter(kind for kind, _ in harness.children(uid))
    assert kinds["deployments"] == 0 and kinds["jobs"] == 4  # sync, inspect, workers, aggregate

    # Re-applying the same manifest (GitOps) changes nothing.
    harness.apply(run_manifest("calc", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint))
    again = harness.get("calc")
    assert again["metadata"]["generation"] == run["metadata"]["generation"]
    assert again["status"]["phase"] == "Succeeded"
    assert Counter(kind for kind, _ in harness.children(uid)) == kinds

    events = harness.cluster.kubectl("-n", NAMESPACE, "get", "events", "-o", "json").stdout
    assert "Synced" in events and "Completed" in events
    pod_logs = "\n".join(p.read_text(errors="replace")
                         for p in harness.cluster.workdir.rglob("log") if p.is_file())
    assert pod_logs.strip(), "the pods wrote no logs to check"
    for text in (json.dumps(status), events, harness.operator.log, harness.object_text(),
                 pod_logs):
        assert MODEL_KEY not in text

    harness.cluster.kubectl("-n", NAMESPACE, "delete", "rolloutrun", "calc")
    wait_for(lambda: not harness.children(uid), 20, interval=0.2,
             message="the run's children to be garbage-collected")
    gone = _metrics_once(harness, lambda s: s.get(SUCCEEDED) == 0, "the deleted run gone")
    assert gone[COMPLETE] == 0
    # the counter is cumulative: the run's rollouts stay counted
    assert gone[("rollout_operator_rollouts_total", (("outcome", "completed"),))] == (
        status["progress"]["completed"])


def test_operator_killed_and_worker_killed_mid_run(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    manifest = run_manifest("resume", repo, harness.model_url, harness.bucket,
                            harness.s3.endpoint, model="scripted:sleep-150", rows=10,
                            samples=2, shards=2)
    harness.apply(manifest)
    harness.wait_phase("resume", ("Running",))
    run = harness.get("resume")
    worker_job = next(name for kind, name in harness.children(run["metadata"]["uid"])
                      if kind == "jobs" and "-workers-" in name)
    harness.operator.kill()
    harness.cluster.kill_job_pod(NAMESPACE, worker_job, index=0)
    harness.operator.start()
    run = harness.wait_phase("resume", ("Succeeded", "Failed"))
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1)
    _assert_complete_and_exact(harness, run, rows=10, samples=2)
    children = harness.children(run["metadata"]["uid"])  # (kind, name): no child made twice
    assert len(children) == len(set(children))


def test_half_the_model_calls_fail(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    harness.apply(run_manifest("flaky", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint, model="scripted:fail-every-2",
                               faults={"maxMaskedFraction": 1.0}))
    run = harness.wait_phase("flaky", ("Succeeded", "Failed"))
    assert run["status"]["phase"] == "Succeeded"
    records = _assert_complete_and_exact(harness, run, rows=6, samples=2)
    for record in records:
        # retried to success, or masked: an infrastructure failure is never scored 0
        assert record["status"] in ("completed", "masked")
        if record["status"] == "completed":
            assert record["scores"] == {REWARD: 1.0}
        else:
            assert record["scores"] == {} and record["error"]["category"] == "inference"


INVALID = [
    ("bad-scheme", {"repo": {"url": "ftp://example.com/r.git"}}, "spec.repo.url"),
    ("dotdot", {"repo": {"url": "https://example.com/r.git", "path": "../x"}}, "spec.repo.path"),
    ("no-secret", {"output": {"url": "s3://b/p", "credentialsSecret": "missing-secret"}},
     "missing-secret"),
    ("bad-scorer", {"scoring": {"functions": ["reward_fn.nothing:here"]}}, "reward_fn.nothing"),
    ("neg-shards", {"workers": {"shards": -1}}, "spec.workers.shards"),
]


def test_invalid_specs_fail_with_a_message_and_others_still_run(harness: Harness,
                                                                tmp_path: Path) -> None:
    """Each bad spec is refused where it is first seen: by the CRD's schema at `kubectl apply`
    (as a real API server does) or by the operator, with a Failed condition naming the field."""
    repo = make_repo(tmp_path / "repo")
    no_main = make_repo(tmp_path / "no-main", without_main=True)
    seen_by_operator = [("no-main", "mcp/main.py")]
    for name, change, expected in INVALID:
        manifest = run_manifest(name, repo, harness.model_url, harness.bucket,
                                harness.s3.endpoint, **change)
        done = harness.cluster.kubectl("apply", "--validate=false", "-f", "-", check=False,
                                       input=yaml.safe_dump(manifest))
        if done.returncode:
            assert expected in done.stderr, (name, done.stderr)
        else:
            seen_by_operator.append((name, expected))
    harness.apply(run_manifest("no-main", no_main, harness.model_url, harness.bucket,
                               harness.s3.endpoint))
    harness.apply(run_manifest("good", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint, rows=2, samples=1, shards=1))
    assert len(seen_by_operator) >= 4
    for name, expected in seen_by_operator:
        run = harness.wait_phase(name, ("Failed",), timeout=90)
        failed = next(c for c in run["status"]["conditions"] if c["type"] == "Failed")
        assert expected in failed["message"], (name, failed)
    good = harness.wait_phase("good", ("Succeeded", "Failed"))
    assert good["status"]["phase"] == "Succeeded"


def _runner_processes(h: Harness) -> list[int]:
    """Processes the stand-in's Job runner started (they work in the pods' directories)."""
    pods_dir = (h.cluster.workdir / "pods").resolve()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc / "cwd").resolve().is_relative_to(pods_dir):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_deleting_a_running_run_leaves_no_pods_or_processes(harness: Harness,
                                                            tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    harness.apply(run_manifest("doomed", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint, model="scripted:sleep-150", rows=10,
                               samples=2, shards=2))
    harness.wait_phase("doomed", ("Running",))
    jobs = harness.cluster.controllers.jobs
    wait_for(lambda: jobs.running_pods(NAMESPACE), 60, interval=0.2,
             message="the run's pods to be running")
    assert _runner_processes(harness)
    harness.cluster.kubectl("-n", NAMESPACE, "delete", "rolloutrun", "doomed")

    def pods() -> list[str]:
        return [p["metadata"]["name"]
                for p in harness.cluster.emulator.list_objects("v1/pods", NAMESPACE)]

    wait_for(lambda: not pods() and not jobs.running_pods(NAMESPACE)
             and not _runner_processes(harness), 30, interval=0.2,
             message="the run's pods and their processes to go")
    assert harness.cluster.emulator.list_objects("batch/v1/jobs", NAMESPACE) == []


def _events_by_reason(h: Harness, name: str) -> Counter[tuple[str, str]]:
    """The run's own Events (not Kopf's handler logs) by (reason, message)."""
    done = h.cluster.kubectl("-n", NAMESPACE, "get", "events", "-o", "json")
    return Counter((e["reason"], e["message"]) for e in json.loads(done.stdout)["items"]
                   if e["involvedObject"].get("name") == name and e["reason"] != "Logging")


def test_operator_restarts_emit_no_event_twice(harness: Harness, tmp_path: Path) -> None:
    """Killed while the workers run, restarted after they finished (every child's event and
    the run's resume reconcile at once), then killed and restarted after completion."""
    repo = make_repo(tmp_path / "repo")
    harness.apply(run_manifest("again", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint, model="scripted:sleep-150", rows=6,
                               samples=2, shards=2))
    run = harness.wait_phase("again", ("Running",))
    workers = wait_for(lambda: next((name for kind, name in harness.children(
        run["metadata"]["uid"]) if kind == "jobs" and "-workers-" in name), None), 60,
        interval=0.2, message="the worker Job")
    harness.operator.kill()

    def workers_done() -> bool:
        job = harness.cluster.emulator.get_object("batch/v1/jobs", workers, NAMESPACE) or {}
        return any(c["type"] == "Complete" and c["status"] == "True"
                   for c in (job.get("status") or {}).get("conditions") or [])

    wait_for(workers_done, 90, interval=0.2, message="the workers to finish")
    harness.operator.start()
    run = harness.wait_phase("again", ("Succeeded", "Failed"))
    assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"], indent=1)
    wait_for(lambda: _events_by_reason(harness, "again")[
        ("Completed", "The run completed.")], 20, interval=0.2, message="the Completed Event")
    harness.operator.kill()
    harness.operator.start()

    def succeeded() -> bool:
        try:
            return harness.operator.scrape().get(SUCCEEDED) == 1
        except OSError:  # not serving yet
            return False

    wait_for(succeeded, 30, interval=0.2, message="the restarted operator to see the run")
    time.sleep(3)  # several reconcile intervals of the restarted operator
    events = _events_by_reason(harness, "again")
    assert ("Aggregating", "Computing the summary and writing results.json.") in events
    twice = {key: count for key, count in events.items() if count > 1}
    assert not twice, twice
