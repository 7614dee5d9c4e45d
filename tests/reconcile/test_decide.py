"""The reconcile decision walked through a run's life with hand-made observations."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.api.constants import ConditionType, Phase, Reason
from rollout_operator.api.status import RolloutRunStatus, find_condition, status_patch
from rollout_operator.reconcile.decide import Decision, RunObject, decide
from rollout_operator.reconcile.observed import (
    JOB_INDEX_LABEL,
    JOB_NAME_LABEL,
    observe,
    parse_indexes,
    pod_problem,
)
from rollout_operator.runtime.run_config import RUN_CONFIG_ENV, RunConfig
from rollout_operator.settings import OperatorSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "calculator" / "rolloutrun.yaml"
SECRETS = ("llm-api-key", "rollout-storage")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(runtime_image="registry.test/rollout-runtime:1")


def _body(**spec_changes: Any) -> dict[str, Any]:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"].update(namespace="team", uid="0123456789abcdef", generation=1)
    manifest["spec"].update(spec_changes)
    return dict(manifest)


class Cluster:
    """Children created by decisions, with statuses the test sets like a controller would."""

    def __init__(self) -> None:
        self.children: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []

    def apply(self, decision: Decision) -> None:
        for manifest in decision.create:
            key = (manifest["kind"], manifest["metadata"]["name"])
            assert key not in self.children, f"{key} created twice"
            self.children[key] = copy.deepcopy(manifest)
        for _, kind, name in decision.delete:
            self.children.pop((kind, name), None)
            if kind == "Job":  # its pods go with it, as the garbage collector does
                self.pods = [pod for pod in self.pods
                             if pod["metadata"]["labels"].get(JOB_NAME_LABEL) != name]

    def component(self, kind: str, component: str) -> dict[str, Any]:
        for (k, _), child in self.children.items():
            if k == kind and child["metadata"]["labels"]["rollouts.dev/component"] == component:
                return child
        raise AssertionError(f"no {kind} for {component}")

    def finish_job(self, component: str, messages: dict[int, dict[str, Any]],
                   ok: bool = True, reason: str = "BackoffLimitExceeded",
                   message: str = "Job has reached the specified backoff limit") -> None:
        job = self.component("Job", component)
        job["status"] = {
            "succeeded": len(messages) if ok else 0,
            "failed": 0 if ok else 1,
            "conditions": [{"type": "Complete", "status": "True"} if ok else
                           {"type": "Failed", "status": "True", "reason": reason,
                            "message": message}],
        }
        for index, message in messages.items():
            self.pods.append({
                "metadata": {"name": f"{job['metadata']['name']}-{index}",
                             "creationTimestamp": "2026-11-24T12:00:00Z",
                             "labels": {JOB_NAME_LABEL: job["metadata"]["name"],
                                        JOB_INDEX_LABEL: str(index)}},
                "status": {"phase": "Succeeded" if ok else "Failed", "containerStatuses": [
                    {"state": {"terminated": {"message": json.dumps(message)}}}]},
            })

    def make_ready(self, component: str) -> None:
        deployment = self.component("Deployment", component)
        deployment["status"] = {"availableReplicas": deployment["spec"].get("replicas", 1)}

    def observed(self, secrets: tuple[str, ...] = SECRETS) -> Any:
        return observe(self.children.values(), self.pods, secrets)


def _step(body: dict[str, Any], cluster: Cluster, now: datetime = NOW) -> Decision:
    decision = decide(RunObject.from_body(body), cluster.observed(), SETTINGS, now)
    cluster.apply(decision)
    if decision.status is not None:
        body["status"] = status_patch(decision.status)
    return decision


def _status(body: dict[str, Any]) -> RolloutRunStatus:
    return RunObject.from_body(body).status


def _condition(body: dict[str, Any], type_: str) -> tuple[str, str]:
    found = find_condition(_status(body).conditions, type_)
    assert found is not None, type_
    return found.status, found.reason


REWARD = "reward_fn.compute_reward:numbers_match_reward"
FETCH_URL = "https://minio.example.com:9000/rollouts/calculator/bundles/x.tar.gz?X-Amz-Signature=f"
SYNC_OK = {"ok": True, "commit": "a" * 40, "bundle": "s3://rollouts/calculator/bundles/x.tar.gz",
           "bundleFetchURL": FETCH_URL, "datasetRows": 20, "problems": []}
INSPECT_OK = {"ok": True, "version": 1, "tools": ["add", "multiply"], "scorers": [REWARD],
              "fastmcpVersion": "4.2.3", "problems": []}
AGGREGATE_OK = {
    "progress": {"total": 80, "completed": 80, "failed": 0, "masked": 0},
    "summary": {REWARD: {
        "mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0, "passAtK": {"1": 1.0, "4": 1.0}}},
    "samples": [{"rowIndex": 0, "sampleIndex": 0, "reward": 1.0, "answer": "#### 96"}],
    "artifacts": {"results": "s3://rollouts/calculator/team/calculator-01234567/results.json"},
}


def _components(manifests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((m["kind"], m["metadata"]["labels"]["rollouts.dev/component"])
                  for m in manifests)


def _run_config(job: dict[str, Any]) -> RunConfig:
    container = job["spec"]["template"]["spec"]["containers"][0]
    value = next(e["value"] for e in container["env"] if e["name"] == RUN_CONFIG_ENV)
    return RunConfig.from_env({RUN_CONFIG_ENV: value})


def _synced(body: dict[str, Any], cluster: Cluster, now: datetime = NOW) -> None:
    """Sync, then inspection, both successful: the run is Synced and starts its servers."""
    _step(body, cluster, now)
    cluster.finish_job("sync", {0: SYNC_OK})
    _step(body, cluster, now)
    cluster.finish_job("inspect", {0: INSPECT_OK})
    _step(body, cluster, now)
    assert _condition(body, ConditionType.SYNCED) == ("True", Reason.SYNCED)


def test_synced_says_how_many_dataset_rows_cannot_be_used() -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    cluster.finish_job("sync", {0: {**SYNC_OK, "invalidRows": 3}})
    _step(body, cluster)
    cluster.finish_job("inspect", {0: INSPECT_OK})
    _step(body, cluster)
    found = find_condition(_status(body).conditions, ConditionType.SYNCED)
    assert found is not None and found.status == "True"
    assert found.message.endswith(
        "3 dataset row(s) cannot be used: their rollouts are recorded as invalid.")


def _started(body: dict[str, Any], cluster: Cluster) -> None:
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)


def test_a_run_from_creation_to_completion_and_cleanup() -> None:
    body, cluster = _body(), Cluster()

    first = _step(body, cluster)
    assert _components(first.create) == [("Job", "sync")]
    assert _status(body).phase == Phase.SYNCING
    assert _condition(body, ConditionType.SYNCED) == ("False", Reason.SYNCING)
    assert _status(body).spec_hash and _status(body).start_time == NOW

    again = _step(body, cluster)
    assert again.create == [] and again.status is None  # nothing new: level-based, idempotent

    cluster.finish_job("sync", {0: SYNC_OK})
    inspecting = _step(body, cluster)
    assert _components(inspecting.create) == [("Job", "inspect"), ("NetworkPolicy", "inspect")]
    assert inspecting.create[0]["kind"] == "NetworkPolicy"  # the policy before its pod
    assert _condition(body, ConditionType.SYNCED) == ("False", Reason.INSPECTING)
    assert _status(body).phase == Phase.SYNCING
    assert _status(body).commit == "a" * 40 and _status(body).tools == []
    inspect_pod = cluster.component("Job", "inspect")["spec"]["template"]
    assert inspect_pod["metadata"]["labels"]["rollouts.dev/user-code"] == "true"
    fetch = inspect_pod["spec"]["initContainers"][0]
    assert {"name": "ROLLOUT_BUNDLE_FETCH_URL", "value": FETCH_URL} in fetch["env"]
    assert FETCH_URL not in json.dumps(body["status"])  # the signed URL never goes to status
    assert _step(body, cluster).create == []

    cluster.finish_job("inspect", {0: INSPECT_OK})
    synced = _step(body, cluster)
    assert _condition(body, ConditionType.SYNCED) == ("True", Reason.SYNCED)
    status = _status(body)
    assert status.commit == "a" * 40 and status.tools == ["add", "multiply"]
    assert status.scorers == [REWARD] and status.fastmcp_version == "4.2.3"
    assert _components(synced.create) == [
        ("Deployment", "scorers"), ("Deployment", "tools"),
        ("NetworkPolicy", "scorers"), ("NetworkPolicy", "tools"),
        ("Service", "scorers"), ("Service", "tools")]
    for server in ("tools", "scorers"):
        pod = cluster.component("Deployment", server)["spec"]["template"]["spec"]
        assert {"name": "ROLLOUT_BUNDLE_FETCH_URL", "value": FETCH_URL} in pod[
            "initContainers"][0]["env"]
    assert _status(body).phase == Phase.STARTING
    assert any(e.reason == Reason.SYNCED for e in synced.events)
    assert FETCH_URL not in json.dumps(body["status"])

    cluster.make_ready("tools")
    waiting = _step(body, cluster)
    assert waiting.create == [] and _status(body).phase == Phase.STARTING
    assert _condition(body, ConditionType.TOOLS_READY) == ("False", Reason.TOOLS_STARTING)
    ready = find_condition(_status(body).conditions, ConditionType.TOOLS_READY)
    assert ready is not None and "the scorer servers" in ready.message

    cluster.make_ready("scorers")
    started = _step(body, cluster)
    assert _condition(body, ConditionType.TOOLS_READY) == ("True", Reason.TOOLS_AVAILABLE)
    assert [m["kind"] for m in started.create] == ["Job"]
    worker_job = started.create[0]
    assert worker_job["spec"]["completionMode"] == "Indexed"
    assert _condition(body, ConditionType.INFERENCE_READY) == ("True", Reason.EXTERNAL_ENDPOINT)
    assert _status(body).phase == Phase.RUNNING

    scorer_service = cluster.component("Service", "scorers")["metadata"]["name"]
    assert _run_config(worker_job).scorer_url == f"http://{scorer_service}.team.svc:8081"

    cluster.finish_job("workers", {0: {"shard": 0, "done": 40}, 1: {"shard": 1, "done": 40}})
    aggregating = _step(body, cluster)
    assert [m["metadata"]["labels"]["rollouts.dev/component"] for m in aggregating.create] == [
        "aggregate"]
    assert _status(body).phase == Phase.AGGREGATING
    assert _status(body).progress is not None and _status(body).progress.completed == 80

    cluster.finish_job("aggregate", {0: AGGREGATE_OK})
    completed = _step(body, cluster)
    status = _status(body)
    assert _condition(body, ConditionType.COMPLETE) == ("True", Reason.COMPLETED)
    assert status.phase == Phase.SUCCEEDED and status.score == "1.000"
    assert status.summary is not None and status.completion_time == NOW

    deleted = sorted((kind, name) for _, kind, name in completed.delete)
    assert [kind for kind, _ in deleted] == [
        "Deployment", "Deployment", "NetworkPolicy", "NetworkPolicy", "Service", "Service"]
    assert all(name.startswith(("calculator-tools-", "calculator-scorers-"))
               for _, name in deleted), deleted
    assert not completed.delete_run
    left = {child["metadata"]["labels"]["rollouts.dev/component"]
            for child in cluster.children.values()}
    assert left == {"sync", "inspect", "workers", "aggregate"}
    settled = _step(body, cluster)
    assert settled.delete == [] and settled.create == [] and not settled.delete_run
    ttl = _step(body, cluster, NOW + timedelta(seconds=86400))
    assert ttl.delete_run


def test_the_policy_version_is_in_status_from_the_start_and_in_the_workers_config() -> None:
    body, cluster = _body(), Cluster()
    body["spec"]["model"]["policyVersion"] = "step-120"
    _step(body, cluster)
    assert _status(body).policy_version == "step-120"
    assert status_patch(_status(body))["policyVersion"] == "step-120"
    _started(body, cluster)
    workers = cluster.component("Job", "workers")
    assert _run_config(workers).policy_version == "step-120"
    assert _status(body).policy_version == "step-120"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"repo": {"url": "ftp://example.com/repo.git"}}, "spec.repo.url"),
        ({"repo": {"url": "https://example.com/r.git", "path": "../secrets"}}, "spec.repo.path"),
        ({"workers": {"shards": -2}}, "spec.workers.shards"),
        ({"scoring": {"functions": ["not a ref"]}}, "spec.scoring.functions"),
        ({"workers": {"resources": {"limits": {"memory": "2Pi"}}}},
         "spec.workers.resources.limits.memory: 2Pi is more than 1Pi"),
        ({"sandbox": {"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}}}},
         "spec.sandbox.resources.requests.cpu: 4 is more than its limit 2"),
        ({"model": {"name": "m", "apiKeySecret": {"name": "nope", "key": "k"}}},
         "Secret 'nope' does not exist"),
    ],
)
def test_invalid_specs_become_a_failed_condition(change: dict[str, Any], expected: str) -> None:
    body, cluster = _body(**change), Cluster()
    decision = _step(body, cluster)
    assert decision.create == []
    status, reason = _condition(body, ConditionType.FAILED)
    assert (status, reason) == ("True", Reason.INVALID_SPEC)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and expected in failed.message
    assert _status(body).phase == Phase.FAILED
    assert any(e.type == "Warning" for e in decision.events)


def _running(body: dict[str, Any], cluster: Cluster) -> None:
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    assert _status(body).phase == Phase.RUNNING


def test_a_spec_edit_after_start_is_refused_until_reverted() -> None:
    """The refusal is a condition of its own: the run keeps its phase and the children it
    has, and builds nothing from the edited spec until the edit is reverted."""
    body, cluster = _body(), Cluster()
    _running(body, cluster)
    body["spec"]["agent"]["maxTurns"] = 3
    edited = _step(body, cluster)
    assert _condition(body, ConditionType.SPEC_REFUSED) == ("True", Reason.SPEC_CHANGED)
    assert "revert the edit" in _message(body, ConditionType.SPEC_REFUSED)
    assert find_condition(_status(body).conditions, ConditionType.FAILED) is None
    assert _status(body).phase == Phase.RUNNING and edited.create == []
    assert [(e.type, e.reason) for e in edited.events] == [("Warning", Reason.SPEC_CHANGED)]

    cluster.finish_job("workers", {0: {"shard": 0, "done": 10}, 1: {"shard": 1, "done": 10}})
    waiting = _step(body, cluster)
    assert waiting.create == []  # the aggregate Job would be built from the edited spec
    assert _condition(body, ConditionType.SPEC_REFUSED)[0] == "True"

    body["spec"]["agent"]["maxTurns"] = 10
    body["spec"]["ttlSecondsAfterFinished"] = 60  # a field that may change
    reverted = _step(body, cluster)
    assert _condition(body, ConditionType.SPEC_REFUSED) == ("False", Reason.RESUMED)
    assert [m["metadata"]["labels"]["rollouts.dev/component"] for m in reverted.create] == [
        "aggregate"]
    assert _status(body).phase == Phase.AGGREGATING


def test_a_secret_gone_after_start_is_refused_not_a_failure() -> None:
    body, cluster = _body(), Cluster()
    _running(body, cluster)
    decision = decide(RunObject.from_body(body), cluster.observed(secrets=("rollout-storage",)),
                      SETTINGS, NOW)
    assert decision.status is not None
    body["status"] = status_patch(decision.status)
    assert _condition(body, ConditionType.SPEC_REFUSED) == ("True", Reason.INVALID_SPEC)
    assert "llm-api-key" in _message(body, ConditionType.SPEC_REFUSED)
    assert _status(body).phase == Phase.RUNNING
    _step(body, cluster)
    assert _condition(body, ConditionType.SPEC_REFUSED) == ("False", Reason.RESUMED)


def test_a_failed_run_stays_failed_whatever_its_spec_does() -> None:
    body, cluster = _body(), Cluster()
    _running(body, cluster)
    cluster.finish_job("workers", {0: {"shard": 0, "done": 3}}, ok=False)
    _step(body, cluster)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.WORKERS_FAILED)
    for turns in (3, 10):  # edited, then reverted
        body["spec"]["agent"]["maxTurns"] = turns
        _step(body, cluster)
        assert _condition(body, ConditionType.FAILED) == ("True", Reason.WORKERS_FAILED)
        assert _status(body).phase == Phase.FAILED
    assert _condition(body, ConditionType.SPEC_REFUSED) == ("False", Reason.RESUMED)


def test_a_run_starts_once_its_missing_secret_appears() -> None:
    body, cluster = _body(ttlSecondsAfterFinished=0), Cluster()
    decision = decide(RunObject.from_body(body), cluster.observed(secrets=("rollout-storage",)),
                      SETTINGS, NOW)
    assert decision.status is not None
    body["status"] = status_patch(decision.status)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.INVALID_SPEC)
    fixed = _step(body, cluster, NOW + timedelta(seconds=5))
    assert _condition(body, ConditionType.FAILED) == ("False", Reason.RESUMED)
    assert not fixed.delete_run
    assert [m["kind"] for m in fixed.create] == ["Job"]
    status = _status(body)
    assert status.phase == Phase.SYNCING and status.completion_time is None


CRASH_LOOP = {"name": "tool-server", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
              "lastState": {"terminated": {"exitCode": 1,
                                           "message": "ModuleNotFoundError: No module named 'x'"}}}


def test_a_tool_server_that_never_comes_up_is_explained_then_fails_the_run() -> None:
    body, cluster = _body(), Cluster()
    _synced(body, cluster)
    cluster.make_ready("scorers")
    scorers = cluster.component("Deployment", "scorers")
    tools = cluster.component("Deployment", "tools")
    tools["metadata"]["creationTimestamp"] = NOW.isoformat().replace("+00:00", "Z")
    cluster.pods.append({
        "metadata": {"name": "tools-abc", "labels": dict(
            tools["spec"]["template"]["metadata"]["labels"])},
        "status": {"phase": "Running", "containerStatuses": [CRASH_LOOP]},
    })
    waiting = _step(body, cluster, NOW + timedelta(seconds=60))
    assert _condition(body, ConditionType.TOOLS_READY) == ("False", Reason.TOOLS_STARTING)
    ready = find_condition(_status(body).conditions, ConditionType.TOOLS_READY)
    assert ready is not None and ready.message == (
        "Waiting for the tool servers to become ready: pod tools-abc, container tool-server: "
        "CrashLoopBackOff (last exit code 1): ModuleNotFoundError: No module named 'x'")
    assert _status(body).phase == Phase.STARTING and waiting.delete == []

    late = _step(body, cluster, NOW + timedelta(seconds=SETTINGS.tools_start_deadline_seconds))
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.TOOLS_FAILED)
    assert _condition(body, ConditionType.TOOLS_READY) == ("False", Reason.TOOLS_FAILED)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and "did not become ready within 900 s" in failed.message
    assert "CrashLoopBackOff" in failed.message
    assert _status(body).phase == Phase.FAILED
    deleted = {(k, n) for _, k, n in late.delete}
    assert ("Deployment", tools["metadata"]["name"]) in deleted
    assert ("Deployment", scorers["metadata"]["name"]) in deleted
    assert any(e.type == "Warning" and e.reason == Reason.TOOLS_FAILED for e in late.events)


SCORER_CRASH = {"name": "scorer-server", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1,
                                             "message": "ImportError: cannot import 'judge'"}}}


def test_scorer_servers_that_never_come_up_fail_the_run_like_tool_servers() -> None:
    body, cluster = _body(), Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    scorers = cluster.component("Deployment", "scorers")
    scorers["metadata"]["creationTimestamp"] = NOW.isoformat().replace("+00:00", "Z")
    cluster.pods.append({
        "metadata": {"name": "scorers-abc", "labels": dict(
            scorers["spec"]["template"]["metadata"]["labels"])},
        "status": {"phase": "Running", "containerStatuses": [SCORER_CRASH]},
    })
    waiting = _step(body, cluster, NOW + timedelta(seconds=60))
    assert waiting.create == [] and _status(body).phase == Phase.STARTING
    ready = find_condition(_status(body).conditions, ConditionType.TOOLS_READY)
    assert ready is not None and ready.reason == Reason.TOOLS_STARTING
    assert ready.message == (
        "Waiting for the scorer servers to become ready: pod scorers-abc, container "
        "scorer-server: CrashLoopBackOff (last exit code 1): ImportError: cannot import 'judge'")

    _step(body, cluster, NOW + timedelta(seconds=SETTINGS.tools_start_deadline_seconds))
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.TOOLS_FAILED
    assert failed.message.startswith("The scorer servers did not become ready within 900 s")
    assert _status(body).phase == Phase.FAILED


def test_a_tool_outage_after_rollouts_started_is_waited_out() -> None:
    body, cluster = _body(), Cluster()
    _started(body, cluster)
    assert _status(body).phase == Phase.RUNNING
    tools = cluster.component("Deployment", "tools")
    tools["metadata"]["creationTimestamp"] = NOW.isoformat().replace("+00:00", "Z")
    tools["status"] = {"availableReplicas": 0}
    cluster.pods.append({
        "metadata": {"name": "tools-abc", "labels": dict(
            tools["spec"]["template"]["metadata"]["labels"])},
        "status": {"phase": "Running", "containerStatuses": [CRASH_LOOP]},
    })
    later = NOW + timedelta(seconds=10 * SETTINGS.tools_start_deadline_seconds)
    outage = _step(body, cluster, later)
    assert _condition(body, ConditionType.TOOLS_READY) == ("False", Reason.TOOLS_STARTING)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is None or failed.status != "True", failed
    assert _status(body).phase != Phase.FAILED and outage.delete == []


@pytest.mark.parametrize(("pod_status", "expected"), [
    ({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]},
     "pod p cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
    ({"initContainerStatuses": [{"name": "unpack-bundle", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image \"r/x:1\""}}}]},
     "pod p, container unpack-bundle: ImagePullBackOff: Back-off pulling image \"r/x:1\""),
    ({"containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
     ""),
    ({"containerStatuses": [{"name": "c", "state": {"running": {}}}]}, ""),
])
def test_pod_problems_in_one_line(pod_status: dict[str, Any], expected: str) -> None:
    assert pod_problem({"metadata": {"name": "p"}, "status": pod_status}) == expected


@pytest.mark.parametrize(("component", "value"), [
    ("sync", "config.syncDeadlineSeconds"), ("inspect", "config.syncDeadlineSeconds"),
    ("workers", "config.workerDeadlineSeconds"),
    ("aggregate", "config.aggregateDeadlineSeconds"),
])
def test_a_job_past_its_deadline_says_which_value_gives_more_time(component: str,
                                                                    value: str) -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    if component == "inspect":
        cluster.finish_job("sync", {0: SYNC_OK})
        _step(body, cluster)
    elif component != "sync":
        _started(body, cluster)
    if component == "aggregate":
        cluster.finish_job("workers", {0: {"shard": 0, "done": 40}, 1: {"shard": 1, "done": 40}})
        _step(body, cluster)
    cluster.finish_job(component, {}, ok=False, reason="DeadlineExceeded",
                       message="Job was active longer than specified deadline")
    _step(body, cluster)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.DEADLINE_EXCEEDED)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and value in failed.message
    assert "Job was active longer than specified deadline" in failed.message
    assert _status(body).phase == Phase.FAILED


def test_sync_problems_name_the_file() -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    cluster.finish_job("sync", {0: {"ok": False, "problems": [
        {"file": "mcp/main.py", "message": "missing: a repo needs mcp/main.py"}]}}, ok=False)
    failing = _step(body, cluster)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.SYNC_FAILED
    assert "mcp/main.py" in failed.message
    # Synced=False and Failed=True move for one cause: one Warning Event tells it.
    assert [(e.type, e.reason) for e in failing.events
            if e.reason == Reason.SYNC_FAILED] == [("Warning", Reason.SYNC_FAILED)]
    assert not _step(body, cluster).events  # and the next pass repeats nothing


def test_inspection_problems_name_the_file_and_fail_the_run() -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    cluster.finish_job("sync", {0: SYNC_OK})
    _step(body, cluster)
    report = {**INSPECT_OK, "ok": False, "tools": [], "problems": [
        {"file": "reward_fn/compute_reward.py",
         "message": "ModuleNotFoundError: No module named 'numpyy'"}]}
    cluster.finish_job("inspect", {0: report}, ok=False)
    failed_step = _step(body, cluster)
    assert _condition(body, ConditionType.SYNCED) == ("False", Reason.SYNC_FAILED)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.SYNC_FAILED
    assert "reward_fn/compute_reward.py: ModuleNotFoundError" in failed.message
    assert _status(body).phase == Phase.FAILED and _status(body).tools == []
    assert failed_step.create == []
    assert not any(kind == "Deployment" for kind, _ in cluster.children)


def test_a_sync_report_without_a_signed_url_cannot_be_inspected() -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    cluster.finish_job("sync", {0: {k: v for k, v in SYNC_OK.items() if k != "bundleFetchURL"}})
    decision = _step(body, cluster)
    assert decision.create == []
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.SYNC_FAILED
    assert "Cannot inspect the repository" in failed.message
    assert "no signed bundle URL" in failed.message


@pytest.mark.parametrize("report", [
    {**INSPECT_OK, "version": 2},  # another version of the operator wrote it
    {"raw": "Traceback (most recent call last): ..."},  # the container's log, not JSON
])
def test_a_finished_inspection_without_a_readable_report_fails_the_run(
        report: dict[str, Any]) -> None:
    body, cluster = _body(), Cluster()
    _step(body, cluster)
    cluster.finish_job("sync", {0: SYNC_OK})
    _step(body, cluster)
    job = cluster.component("Job", "inspect")
    cluster.finish_job("inspect", {0: {}})
    pod = cluster.pods[-1]
    text = report["raw"] if "raw" in report else json.dumps(report)
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = text
    _step(body, cluster)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.SYNC_FAILED, _status(body)
    assert f"inspection Job {job['metadata']['name']} finished without a report" in \
        failed.message
    assert ("version 2" in failed.message) if "version" in report else "not JSON" in \
        failed.message


def test_servers_that_exist_need_no_signed_url_once_the_sync_pod_is_gone() -> None:
    body, cluster = _body(), Cluster()
    _started(body, cluster)
    assert _condition(body, ConditionType.TOOLS_READY) == ("True", Reason.TOOLS_AVAILABLE)
    sync_pod = cluster.component("Job", "sync")["metadata"]["name"]
    cluster.pods = [p for p in cluster.pods if not p["metadata"]["name"].startswith(sync_pod)]
    decision = _step(body, cluster)
    assert _condition(body, ConditionType.TOOLS_READY) == ("True", Reason.TOOLS_AVAILABLE)
    assert decision.create == [] or _components(decision.create) == [("Job", "workers")]


def test_a_run_without_scorers_starts_without_scorer_servers() -> None:
    body, cluster = _body(), Cluster()
    del body["spec"]["scoring"]["functions"]  # every scorer found: here, none
    _step(body, cluster)
    cluster.finish_job("sync", {0: SYNC_OK})
    inspecting = _step(body, cluster)
    inspect = inspecting.create[-1]["spec"]["template"]["spec"]["containers"][0]
    assert inspect["command"] == ["rolloutctl", "inspect", "--repo", "/workspace/repo"]
    cluster.finish_job("inspect", {0: {**INSPECT_OK, "scorers": []}})
    synced = _step(body, cluster)
    assert _condition(body, ConditionType.SYNCED) == ("True", Reason.SYNCED)
    assert _components(synced.create) == [
        ("Deployment", "tools"), ("NetworkPolicy", "tools"), ("Service", "tools")]
    cluster.make_ready("tools")
    started = _step(body, cluster)
    assert _condition(body, ConditionType.TOOLS_READY) == ("True", Reason.TOOLS_AVAILABLE)
    assert _components(started.create) == [("Job", "workers")]
    assert _run_config(started.create[0]).scorer_url is None


@pytest.mark.parametrize(("text", "indexes"), [
    ("", set()), (None, set()), ("0", {0}), ("0,2-3", {0, 2, 3}), ("1-2, 5", {1, 2, 5}),
    ("x,4", {4}), ("3-1", set()),
])
def test_job_indexes_are_read_as_the_job_status_writes_them(
        text: str | None, indexes: set[int]) -> None:
    assert parse_indexes(text) == indexes


def _message(body: dict[str, Any], type_: str) -> str:
    found = find_condition(_status(body).conditions, type_)
    assert found is not None, type_
    return found.message


def test_shards_done_are_the_completed_indexes_the_job_reports() -> None:
    """`status.succeeded` counts pods and may lag; completedIndexes / failedIndexes say which
    shards are done and which exhausted their retries."""
    body, cluster = _body(workers={"shards": 4}), Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    job = cluster.component("Job", "workers")
    job["status"] = {"active": 1, "succeeded": 0, "completedIndexes": "0,2", "failed": 4,
                     "failedIndexes": "3"}
    _step(body, cluster)
    assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.ROLLOUTS_RUNNING)
    assert _message(body, ConditionType.COMPLETE) == "2 of 4 shards done; shard 3 failed."

    cluster.finish_job("workers", {0: {"shard": 0, "done": 3}}, ok=False,
                       reason="FailedIndexes", message="Job has failed indexes")
    job["status"].update(completedIndexes="0-1", failedIndexes="2-3")
    finished = _step(body, cluster)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.WORKERS_FAILED)
    assert _message(body, ConditionType.FAILED) == (
        f"Worker Job {job['metadata']['name']} failed (2 of 4 shards done; shards 2-3 failed): "
        "Job has failed indexes")
    assert _message(body, ConditionType.COMPLETE) == "2 of 4 shards done; shards 2-3 failed."
    assert [e.reason for e in finished.events if e.type == "Warning"] == [Reason.WORKERS_FAILED]


def test_suspend_holds_the_workers_and_a_failed_shard_fails_the_run() -> None:
    body, cluster = _body(suspend=True), Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    held = _step(body, cluster)
    assert held.create == [] and _status(body).phase == Phase.SUSPENDED
    body["spec"]["suspend"] = False
    resumed = _step(body, cluster)
    assert [m["kind"] for m in resumed.create] == ["Job"]
    body["spec"]["suspend"] = True
    suspended = _step(body, cluster)
    assert suspended.patch_jobs and suspended.patch_jobs[0][1] == {"spec": {"suspend": True}}
    body["spec"]["suspend"] = False
    cluster.finish_job("workers", {0: {"shard": 0, "done": 3}}, ok=False)
    _step(body, cluster)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.WORKERS_FAILED)


def test_a_failed_job_says_what_its_pods_said() -> None:
    """The Job's own condition only says it reached its backoff limit; the cause is in the
    pods' termination messages."""
    body, cluster = _body(), Cluster()
    _started(body, cluster)
    cause = "Cannot list s3://rollouts/calculator/ after 6 retries: connection refused"
    cluster.finish_job("workers", {0: {"shard": 0, "error": cause}}, ok=False)
    _step(body, cluster)
    failed = find_condition(_status(body).conditions, ConditionType.FAILED)
    assert failed is not None and failed.reason == Reason.WORKERS_FAILED
    assert "reached the specified backoff limit" in failed.message
    assert f"the pods said: {cause}" in failed.message


@pytest.mark.parametrize(("masked", "limit", "failed"), [
    (16, None, True),     # 20% masked, above the default 5%
    (4, None, False),     # exactly 5%: within it
    (16, 0.25, False),    # the spec allows a quarter
])
def test_a_run_with_too_many_masked_rollouts_completes_but_fails(
        masked: int, limit: float | None, failed: bool) -> None:
    body = _body(**({"faults": {"maxMaskedFraction": limit}} if limit is not None else {}))
    cluster = Cluster()
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    cluster.finish_job("workers", {0: {"shard": 0, "done": 40, "masked": masked // 2},
                                   1: {"shard": 1, "done": 40, "masked": masked - masked // 2}})
    _step(body, cluster)
    message = dict(AGGREGATE_OK, progress={"total": 80, "completed": 80 - masked, "failed": 0,
                                           "masked": masked, "invalid": 0})
    cluster.finish_job("aggregate", {0: message})
    finished = _step(body, cluster)
    status = _status(body)
    assert _condition(body, ConditionType.COMPLETE) == ("True", Reason.COMPLETED)
    assert status.summary is not None and status.artifacts is not None  # results are there
    if not failed:
        assert _condition(body, ConditionType.FAILED) == ("False", Reason.COMPLETED)
        assert status.phase == Phase.SUCCEEDED
        return
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.TOO_MANY_MASKED)
    assert status.phase == Phase.FAILED
    condition = find_condition(status.conditions, ConditionType.FAILED)
    assert condition is not None
    assert condition.message.startswith("16 of 80 rollouts (20.0%) remain masked after retries, "
                                        "more than spec.faults.maxMaskedFraction (0.05)")
    assert "model endpoint" in condition.message and "category sandbox" in condition.message
    assert [e.reason for e in finished.events if e.type == "Warning"] == [
        Reason.TOO_MANY_MASKED]
    assert finished.delete  # the servers are torn down as for any finished run


def _aggregating(body: dict[str, Any], cluster: Cluster) -> None:
    """Workers done (having waited out some outages): the aggregate Job is created."""
    _synced(body, cluster)
    cluster.make_ready("tools")
    cluster.make_ready("scorers")
    _step(body, cluster)
    cluster.finish_job("workers", {
        0: {"shard": 0, "done": 40, "outageSeconds": {"storage": 12.5, "model": 3.0}},
        1: {"shard": 1, "done": 40, "outageSeconds": {"storage": 11.0}}})
    _step(body, cluster)
    assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.AGGREGATING)


STORAGE_GONE = {"error": "Cannot list s3://rollouts/calculator/team/shards/: error sending "
                         "request", "storageOutage": True}


def test_an_aggregate_that_could_not_reach_storage_runs_again_later_and_completes() -> None:
    body, cluster = _body(), Cluster()
    _aggregating(body, cluster)
    assert _status(body).outage_seconds is not None
    assert _status(body).outage_seconds.model_dump() == {"model": 3.0, "tools": 0.0,
                                                         "storage": 23.5}
    name = cluster.component("Job", "aggregate")["metadata"]["name"]
    cluster.finish_job("aggregate", {0: STORAGE_GONE}, ok=False)
    retrying = _step(body, cluster)
    assert ("batch/v1", "Job", name) in retrying.delete
    status = _status(body)
    assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.AGGREGATE_RETRYING)
    assert find_condition(status.conditions, ConditionType.FAILED) is None
    assert status.phase == Phase.AGGREGATING
    complete = find_condition(status.conditions, ConditionType.COMPLETE)
    assert complete is not None
    assert "error sending request" in complete.message and "in 60 s (retry 1 of 3)" in \
        complete.message
    assert status.aggregate_retries is not None and status.aggregate_retries.count == 1

    assert _step(body, cluster, NOW + timedelta(seconds=30)).create == []  # not yet
    again = _step(body, cluster, NOW + timedelta(seconds=60))
    assert _components(again.create) == [("Job", "aggregate")]
    assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.AGGREGATING)

    cluster.finish_job("aggregate", {0: dict(AGGREGATE_OK, outageSeconds={"storage": 4.0})})
    _step(body, cluster, NOW + timedelta(seconds=90))
    status = _status(body)
    assert _condition(body, ConditionType.COMPLETE) == ("True", Reason.COMPLETED)
    assert status.phase == Phase.SUCCEEDED
    assert status.outage_seconds is not None and status.outage_seconds.storage == 27.5


def test_an_aggregate_fails_the_run_past_its_retries_or_for_another_cause() -> None:
    body, cluster = _body(), Cluster()
    _aggregating(body, cluster)
    now = NOW
    for retry in range(1, 4):
        cluster.finish_job("aggregate", {0: STORAGE_GONE}, ok=False)
        _step(body, cluster, now)
        assert _condition(body, ConditionType.COMPLETE) == ("False", Reason.AGGREGATE_RETRYING)
        now += timedelta(seconds=60 * 2 ** (retry - 1))
        assert _components(_step(body, cluster, now).create) == [("Job", "aggregate")]
    cluster.finish_job("aggregate", {0: STORAGE_GONE}, ok=False)
    _step(body, cluster, now)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.AGGREGATE_FAILED)

    body, cluster = _body(), Cluster()
    _aggregating(body, cluster)
    cluster.finish_job("aggregate", {0: {"error": "Cannot read s3://rollouts/x: permission "
                                                  "denied"}}, ok=False)
    _step(body, cluster)
    assert _condition(body, ConditionType.FAILED) == ("True", Reason.AGGREGATE_FAILED)
