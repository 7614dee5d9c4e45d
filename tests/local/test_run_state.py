"""What `rolloutctl runs` and `describe` read from run folders: the state `rolloutctl run`
records, the committed parts and results.json (folders written here the way a run writes them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from rollout_operator.cli.describe_cmd import describe_command
from rollout_operator.cli.runs_cmd import age, runs_command
from rollout_operator.local.run_state import list_runs

REF = "reward_fn.compute_reward:numbers_match_reward"


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _record(row: int, status: str, *, score: float | None = None,
            category: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"row_index": row, "sample_index": 0, "status": status,
                              "attempt": 0, "finish_reason": "stop",
                              "scores": {REF: score} if score is not None else {}}
    if category:
        record["error"] = {"category": category, "message": "broke"}
    return record


def _run_folder(out: Path, name: str, *, state: dict[str, Any] | None,
                records: list[dict[str, Any]], total: int, results: bool = False) -> Path:
    folder = out / "default" / name
    (folder / "shards" / "0").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "namespace": "default", "name": name.rsplit("-", 1)[0], "commit": "abc123",
        "workItems": total, "syncedAt": "2025-12-31T00:00:00Z",
        "spec": {"model": {"name": "scripted"}, "repo": {"url": "/repo"}}}))
    if state is not None:
        (folder / "local-run.json").write_text(json.dumps(state))
    (folder / "shards" / "0" / "part-000000.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    if results:
        (folder / "results.json").write_text("{}")
    return folder


def _fixture(out: Path) -> None:
    _run_folder(out, "calc-aaaaaaaa", state={
        "state": "Running", "phase": "work", "pid": _dead_pid(), "host": socket.gethostname(),
        "startedAt": "2026-01-01T00:00:00Z", "generation": 0},
        records=[_record(0, "completed", score=1.0), _record(1, "failed", category="model"),
                 _record(2, "masked", category="sandbox")], total=6)
    _run_folder(out, "calc-bbbbbbbb", state={
        "state": "Running", "phase": "work", "pid": os.getpid(), "host": socket.gethostname(),
        "startedAt": "2026-01-02T00:00:00Z", "generation": 1},
        records=[_record(0, "completed", score=0.5)], total=2)
    _run_folder(out, "cluster-cccccccc", state=None,
                records=[_record(0, "completed", score=1.0)], total=1, results=True)


async def test_states_counts_and_failures_by_category(tmp_path: Path) -> None:
    _fixture(tmp_path)
    views = {v.folder.rsplit("/", 1)[-1]: v for v in await list_runs(str(tmp_path), {})}
    stopped, running, cluster = (views["calc-aaaaaaaa"], views["calc-bbbbbbbb"],
                                 views["cluster-cccccccc"])
    assert stopped.state == "Stopped"  # its process is gone without saying how it ended
    assert running.state == "Running" and running.phase == "work"
    assert cluster.state == "Succeeded"  # no state file, results.json written
    assert stopped.failures == {"model": 1, "sandbox": 1}
    assert (stopped.progress["done"], stopped.total, stopped.mean) == (3, 6, 1.0)
    assert stopped.finish_reasons == {"stop": 2}
    assert [c["type"] for c in stopped.conditions if c["status"] == "True"] == ["Synced"]
    assert [c["type"] for c in cluster.conditions if c["status"] == "True"] == [
        "Synced", "WorkDone", "Aggregated", "Succeeded"]
    assert "results" in cluster.outputs and "results" not in stopped.outputs


def test_runs_and_describe_commands(tmp_path: Path) -> None:
    _fixture(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(runs_command, ["--output", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines()]
    assert rows[0] == ["NAMESPACE", "NAME", "STATUS", "PROGRESS", "MEAN", "AGE"]
    # newest first; the running one says its phase
    assert [row[1] for row in rows[1:]] == ["calc-bbbbbbbb", "calc-aaaaaaaa", "cluster-cccccccc"]
    assert rows[1][2:6] == ["Running", "(work)", "1/2", "0.500"]
    assert rows[2][2:5] == ["Stopped", "3/6", "1.000"]
    described = runner.invoke(describe_command, ["calc-aaaaaaaa", "--output", str(tmp_path)])
    assert described.exit_code == 0, described.output
    text = described.output
    assert "Status:        Stopped" in text
    assert "Failures by category:\n  model:       1\n  sandbox:     1" in text
    assert "  WorkDone     False    3/6 rollouts committed" in text
    newest = runner.invoke(describe_command, ["calc", "--output", str(tmp_path), "--json"])
    assert json.loads(newest.output)["folder"].endswith("/calc-bbbbbbbb")
    assert "1 older run(s)" in runner.invoke(describe_command, [
        "calc", "--output", str(tmp_path)]).output


def test_ages_read_like_kubectl() -> None:
    assert [age(s) for s in (None, 5, 59, 61, 3600, 7200, 86400 * 3)] == [
        "-", "5s", "59s", "1m", "60m", "2h", "3d"]


def test_preflight_names_the_storage_keys_a_referenced_secret_stands_for() -> None:
    from rollout_operator.api.spec import RolloutRunSpec
    from rollout_operator.local.preflight import secret_problems

    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://example.com/r.git"},
        "model": {"name": "served", "baseURL": "http://127.0.0.1:9/v1"},
        "output": {"url": "s3://bucket/runs", "credentialsSecret": "storage"}})
    [problem] = secret_problems(spec, {"AWS_ACCESS_KEY_ID": "AKIA"})
    assert problem.message.startswith("spec.output.credentialsSecret: AWS_SECRET_ACCESS_KEY "
                                      "not set")
    assert secret_problems(spec, {"AWS_ACCESS_KEY_ID": "AKIA",
                                  "AWS_SECRET_ACCESS_KEY": "x"}) == []
    local = spec.model_copy(update={"output": spec.output.model_copy(
        update={"url": "file:///tmp/out"})})
    assert secret_problems(local, {}) == []  # a folder needs no storage key
