"""The fake controllers: Jobs carried out as local processes, Deployments becoming available."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.k8s.controllers import _now as controllers_now
from tests.k8s.controllers import compress_indexes
from tests.k8s.job_runner import ContainerRun, SubprocessRunner
from tests.k8s.server import EmulatedCluster, wait_for

WORKER = """
import os, pathlib, sys, time
index = os.environ["JOB_COMPLETION_INDEX"]
out, message_path = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
if index == "1" and not (out / "tried-1").exists():
    (out / "tried-1").write_text("x")
    message_path.write_text("first try fails")
    sys.exit(3)
(out / f"index-{index}").write_text(f"{index}:{os.environ['TOKEN']}:{os.environ['MODE']}")
message_path.write_text(f"done {index}")
print("worker", index, "finished")
"""


def _job(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "worker", "image": "rollout-operator:test", "command": command,
                 **spec.pop("container", {})}
    return {"metadata": {"name": name}, "spec": {
        **spec, "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}}}


def _job_status(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    job = cluster.emulator.get_object("batch/v1/jobs", name, "default")
    assert job is not None
    return dict(job.get("status") or {})


def _finished(cluster: EmulatedCluster, name: str) -> dict[str, Any] | None:
    status = _job_status(cluster, name)
    kinds = {c["type"] for c in status.get("conditions") or [] if c["status"] == "True"}
    return status if kinds & {"Complete", "Failed"} else None


def test_indexed_job_runs_each_index_as_a_process_and_retries_a_failure(
        k8s_cluster: EmulatedCluster, tmp_path: Path) -> None:
    emulator = k8s_cluster.emulator
    emulator.create_object("v1/secrets", {"metadata": {"name": "creds"},
                                          "stringData": {"token": "s3cret"}}, "default")
    emulator.create_object("batch/v1/jobs", _job(
        "shards", ["python", "-c", WORKER], completions=3, parallelism=2,
        completionMode="Indexed", backoffLimitPerIndex=1,
        container={"args": [str(tmp_path), "/run/message"],
                   "terminationMessagePath": "/run/message",
                   "env": [{"name": "MODE", "value": "eval"},
                           {"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                               "name": "creds", "key": "token"}}}]}), "default")

    status = wait_for(lambda: _finished(k8s_cluster, "shards"), timeout=20, message="the job")

    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert all(c["reason"] == "CompletionsReached" for c in status["conditions"])
    assert (status["succeeded"], status["failed"]) == (3, 1)
    assert status["completedIndexes"] == "0-2" and status["failedIndexes"] == ""
    assert "active" not in status and status["completionTime"]
    written = sorted(p.read_text() for p in tmp_path.glob("index-*"))
    assert written == ["0:s3cret:eval", "1:s3cret:eval", "2:s3cret:eval"]

    pods = emulator.list_objects("v1/pods", "default", labels="job-name=shards")
    outcomes = sorted(
        (p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], p["status"]["phase"],
         p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
         p["status"]["containerStatuses"][0]["state"]["terminated"].get("message"))
        for p in pods)
    assert outcomes == [("0", "Succeeded", 0, "done 0"), ("1", "Failed", 3, "first try fails"),
                        ("1", "Succeeded", 0, "done 1"), ("2", "Succeeded", 0, "done 2")]
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Job" for p in pods)
    succeeded = next(p for p in pods if p["metadata"]["name"].startswith("shards-2-"))
    assert emulator.pod_logs[("default", succeeded["metadata"]["name"])] == "worker 2 finished\n"


def test_an_index_out_of_retries_fails_the_job(k8s_cluster: EmulatedCluster) -> None:
    command = [sys.executable, "-c",
               "import os, sys; sys.exit(int(os.environ['JOB_COMPLETION_INDEX'] == '2'))"]
    k8s_cluster.emulator.create_object("batch/v1/jobs", _job(
        "broken", command, completions=3, parallelism=3, completionMode="Indexed",
        backoffLimitPerIndex=0), "default")

    status = wait_for(lambda: _finished(k8s_cluster, "broken"), timeout=20, message="the job")

    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "FailedIndexes"), ("Failed", "FailedIndexes")]
    assert (status["completedIndexes"], status["failedIndexes"]) == ("0-1", "2")


def test_a_job_past_its_backoff_limit_fails(k8s_cluster: EmulatedCluster) -> None:
    k8s_cluster.emulator.create_object("batch/v1/jobs", _job(
        "flaky", [sys.executable, "-c", "raise SystemExit(1)"], backoffLimit=1), "default")

    status = wait_for(lambda: _finished(k8s_cluster, "flaky"), timeout=20, message="the job")

    assert status["failed"] == 2 and "succeeded" not in status
    assert status["conditions"][-1]["reason"] == "BackoffLimitExceeded"


def test_a_killed_pod_is_retried(k8s_cluster: EmulatedCluster, tmp_path: Path) -> None:
    script = ("import pathlib, sys, time\n"
              "marker = pathlib.Path(sys.argv[1])\n"
              "if not marker.exists():\n"
              "    marker.write_text('started')\n"
              "    time.sleep(60)\n")
    k8s_cluster.emulator.create_object("batch/v1/jobs", _job(
        "victim", [sys.executable, "-c", script, str(tmp_path / "marker")], completions=1,
        completionMode="Indexed"), "default")
    wait_for(lambda: (tmp_path / "marker").exists(), message="the first attempt to start")
    assert k8s_cluster.controllers.jobs.running_pods("default", "victim", index=1) == []

    killed_name = k8s_cluster.kill_job_pod("default", "victim", index=0)

    status = wait_for(lambda: _finished(k8s_cluster, "victim"), timeout=20, message="the job")
    assert (status["succeeded"], status["failed"]) == (1, 1)
    killed = k8s_cluster.emulator.get_object("v1/pods", killed_name, "default")
    assert killed is not None
    terminated = killed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (killed["status"]["phase"], terminated["exitCode"]) == ("Failed", 137)


def test_a_pod_waits_for_its_secret(k8s_cluster: EmulatedCluster, tmp_path: Path) -> None:
    emulator = k8s_cluster.emulator
    emulator.create_object("batch/v1/jobs", _job(
        "patient", [sys.executable, "-c", "import os; print(os.environ['KEY'])"],
        container={"env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {
            "name": "late", "key": "k"}}}]}), "default")

    def waiting_reason() -> str | None:
        pods = emulator.list_objects("v1/pods", "default", labels="job-name=patient")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    assert wait_for(waiting_reason) == "CreateContainerConfigError"
    emulator.create_object("v1/secrets", {"metadata": {"name": "late"},
                                          "stringData": {"k": "arrived"}}, "default")
    wait_for(lambda: _finished(k8s_cluster, "patient"), timeout=20, message="the job")
    assert "arrived\n" in emulator.pod_logs.values()


MAPPED = """
import os, sys
message, out = sys.argv[1], sys.argv[2]
open(out, "w").write("from args")
open(os.environ["OUT"], "w").write("from env")
same_dir = os.path.dirname(out) == os.path.dirname(os.environ["OUT"])
same_file = os.environ["ROLLOUT_TERMINATION_MESSAGE_PATH"] == message
open(message, "w").write(" ".join(map(str, [same_file, same_dir, os.environ["EXTRA"]])))
"""


def test_container_paths_and_extra_env_reach_the_process(k8s_cluster: EmulatedCluster) -> None:
    runner = k8s_cluster.controllers.jobs.runner
    assert isinstance(runner, SubprocessRunner)
    runner.extra_env["EXTRA"] = "added"
    job = _job("mapped", ["python", "-c", MAPPED], container={
        "args": ["/dev/termination-log", "/scratch/args.txt"],
        "env": [{"name": "OUT", "value": "/scratch/env.txt"}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]})
    job["spec"]["template"]["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    k8s_cluster.emulator.create_object("batch/v1/jobs", job, "default")

    wait_for(lambda: _finished(k8s_cluster, "mapped"), timeout=10, message="the job")
    pod = k8s_cluster.emulator.list_objects("v1/pods", "default", labels="job-name=mapped")[0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (0, "True True added")
    scratch = k8s_cluster.workdir / "pods" / "default" / pod["metadata"]["name"] / "volumes" / \
        "scratch"
    assert (scratch / "args.txt").read_text() == "from args"
    assert (scratch / "env.txt").read_text() == "from env"


def test_a_runner_can_be_plugged_in(k8s_cluster: EmulatedCluster) -> None:
    seen: list[tuple[int | None, list[str]]] = []

    class Recorder:
        async def run(self, run: ContainerRun) -> int:
            seen.append((run.index, run.command))
            run.termination_message_path.write_text(f"index {run.index}")
            return 0

    k8s_cluster.controllers.jobs.runner = Recorder()
    k8s_cluster.emulator.create_object("batch/v1/jobs", _job(
        "plugged", ["work", "$(WHAT)"], completions=2, completionMode="Indexed",
        container={"env": [{"name": "WHAT", "value": "shard"}]}), "default")

    wait_for(lambda: _finished(k8s_cluster, "plugged"), timeout=10, message="the job")
    assert sorted(seen) == [(0, ["work", "shard"]), (1, ["work", "shard"])]


def test_deployment_becomes_available_when_its_pods_are_ready(
        k8s_cluster: EmulatedCluster) -> None:
    k8s_cluster.controllers.pods.ready_delay = 0.3
    k8s_cluster.emulator.create_object("apps/v1/deployments", {
        "metadata": {"name": "tools"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "tools"}},
                 "template": {"metadata": {"labels": {"app": "tools"}}, "spec": {
                     "containers": [{"name": "mcp", "image": "tools:1"}]}}}}, "default")

    def status() -> dict[str, Any]:
        deployment = k8s_cluster.emulator.get_object("apps/v1/deployments", "tools", "default")
        return dict((deployment or {}).get("status") or {})

    wait_for(lambda: status().get("replicas") == 2, message="the pods")
    assert "availableReplicas" not in status()
    wait_for(lambda: status().get("availableReplicas") == 2, message="availability")
    conditions = {c["type"]: c["status"] for c in status()["conditions"]}
    assert conditions["Available"] == "True" and status()["readyReplicas"] == 2
    pods = k8s_cluster.emulator.list_objects("v1/pods", "default", labels="app=tools")
    assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]

    k8s_cluster.emulator.patch_object("apps/v1/deployments", "tools", {"spec": {"replicas": 1}},
                                      "default")
    wait_for(lambda: status().get("replicas") == 1, message="scaling down")


def test_compress_indexes() -> None:
    assert compress_indexes(set()) == ""
    assert compress_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def test_a_suspended_job_has_no_pods_and_resuming_restarts_its_deadline_clock(
        k8s_cluster: EmulatedCluster) -> None:
    """As Kueue uses it: a Job created suspended starts only when unsuspended, and the
    activeDeadlineSeconds clock (status.startTime) restarts when a suspended Job resumes."""
    emulator = k8s_cluster.emulator
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    emulator.create_object("batch/v1/jobs", _job("held", sleeper, suspend=True,
                                                 activeDeadlineSeconds=600), "default")

    def suspended() -> dict[str, Any] | None:
        status = _job_status(k8s_cluster, "held")
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        held = conditions.get("Suspended", {}).get("status") == "True"
        return status if held and "active" not in status else None

    status = wait_for(suspended, timeout=20, message="the job suspended")
    assert "startTime" not in status
    assert emulator.list_objects("v1/pods", "default", labels="job-name=held") == []

    def running() -> dict[str, Any] | None:
        status = _job_status(k8s_cluster, "held")
        return status if status.get("active") and status.get("startTime") else None

    emulator.patch_object("batch/v1/jobs", "held", {"spec": {"suspend": False}}, "default")
    first = wait_for(running, timeout=20, message="the job resumed")["startTime"]
    assert len(emulator.list_objects("v1/pods", "default", labels="job-name=held")) == 1

    emulator.patch_object("batch/v1/jobs", "held", {"spec": {"suspend": True}}, "default")
    wait_for(suspended, timeout=20, message="the job suspended again")
    wait_for(lambda: not emulator.list_objects("v1/pods", "default", labels="job-name=held"),
             timeout=20, message="the pod deleted")
    wait_for(lambda: controllers_now() > first, timeout=20, message="a later second")
    emulator.patch_object("batch/v1/jobs", "held", {"spec": {"suspend": False}}, "default")
    second = wait_for(running, timeout=20, message="the job resumed again")["startTime"]
    assert second > first
    conditions = {c["type"]: c for c in _job_status(k8s_cluster, "held")["conditions"]}
    assert (conditions["Suspended"]["status"], conditions["Suspended"]["reason"]) == (
        "False", "JobResumed")
    emulator.delete_object("batch/v1/jobs", "held", "default", propagation="Background")


def test_a_gated_pod_waits_until_its_gates_are_removed(k8s_cluster: EmulatedCluster) -> None:
    """As Kueue holds a Deployment's pods: the scheduling gate keeps the pod Pending."""
    emulator = k8s_cluster.emulator
    emulator.create_object("apps/v1/deployments", {
        "metadata": {"name": "server"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "server"}},
                 "template": {"metadata": {"labels": {"app": "server"}}, "spec": {
                     "schedulingGates": [{"name": "kueue.x-k8s.io/admission"}],
                     "containers": [{"name": "server", "image": "server:1"}]}}}}, "default")

    def pod() -> dict[str, Any] | None:
        pods = emulator.list_objects("v1/pods", "default", labels="app=server")
        return pods[0] if pods else None

    def gated() -> dict[str, Any] | None:
        found = pod()
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        return found if any(c.get("reason") == "SchedulingGated" for c in conditions) else None

    held = wait_for(gated, message="the gated pod")
    assert held["status"]["phase"] == "Pending"
    deployment = emulator.get_object("apps/v1/deployments", "server", "default")
    assert not (deployment or {}).get("status", {}).get("availableReplicas")

    emulator.patch_object("v1/pods", held["metadata"]["name"], {"spec": {"schedulingGates": []}},
                          "default")
    running = wait_for(lambda: (p := pod()) and p["status"].get("phase") == "Running" and p,
                       message="the pod running once ungated")
    assert running["metadata"]["uid"] == held["metadata"]["uid"]
