"""`rolloutctl eval run` on the 0.3 test workspace against osmosis-ai 0.3.8's figures
(tests/workspaces/reference.py): summary, per-row results, files, resume, refusal, --fresh,
failure paths and --retry-failed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.workspaces import atif
from tests.support.cli import cli_env, rolloutctl_argv, run_cli
from tests.workspaces import reference
from tests.workspaces.conftest import PROVIDER_KEY, Workspace

DATASET = ("--dataset-file", "data/calculator.jsonl")
pytestmark = pytest.mark.slow  # about 45 s: a uv sync, then seven runs of a real rollout server


@pytest.fixture(scope="module")
def calculator(workspace: Workspace) -> dict[str, Any]:
    """The reference's sequence: a run, the same run again, a refused resume after an edit,
    then --fresh."""
    results: dict[str, Any] = {}
    results["first"] = workspace.eval_run("configs/eval/calculator.toml", *DATASET,
                                          "--name", "ref")
    results["first_index"] = _lines(workspace.run_dir("ref") / "index.jsonl")
    results["first_files"] = _files(workspace.run_dir("ref"))
    results["again"] = workspace.eval_run("configs/eval/calculator.toml", *DATASET,
                                          "--name", "ref")
    results["console"] = run_cli(["eval", "run", "configs/eval/calculator.toml", *DATASET,
                                  "--name", "ref", "--yes"], cwd=workspace.path,
                                 env=workspace.env)
    tools = workspace.path / "rollouts" / "calculator" / "calculator_tools.py"
    original = tools.read_text()
    tools.write_text(original + "# edited\n")
    try:
        results["edited"] = workspace.eval_run("configs/eval/calculator.toml", *DATASET,
                                               "--name", "ref")
        results["fresh"] = workspace.eval_run("configs/eval/calculator.toml", *DATASET,
                                              "--name", "ref", "--fresh")
    finally:
        tools.write_text(original)
    return results


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _files(run_dir: Path) -> set[str]:
    return {re.sub(r"[0-9a-f]{32}", "ID", path.relative_to(run_dir).as_posix())
            for path in run_dir.rglob("*") if path.is_file()}


def test_the_summary_and_rows_are_the_references(calculator: dict[str, Any]) -> None:
    code, envelope = calculator["first"]
    assert code == 0, envelope
    assert (envelope["status"], envelope["operation"]) == ("success", "eval.run")
    resource = envelope["resource"]
    assert {key: resource[key] for key in reference.CALCULATOR_COUNTS} == \
        reference.CALCULATOR_COUNTS
    assert resource["metrics"] == reference.CALCULATOR_SUMMARY
    assert resource["failed_rows"] == []
    rows = [(row["row_index"], row["status"], row["reward"], row["tokens"])
            for row in calculator["first_index"]]
    assert rows == reference.CALCULATOR_ROWS


def test_the_run_directory_holds_the_references_files(calculator: dict[str, Any],
                                                      workspace: Workspace) -> None:
    assert calculator["first_files"] == reference.RUN_FILES
    run_dir = sorted(workspace.path.glob(".osmosis/evals/ref.archive-*"))[0]  # the first run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    inputs = manifest["inputs"]
    digest = inputs["rollout"].pop("source_digest")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert inputs == reference.MANIFEST_INPUTS_WITHOUT_DIGEST
    assert manifest["provenance"]["sdk_version"] == "0.3.8"  # the rollout's own pin
    assert manifest["provenance"]["git_dirty"] is False
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert list(record) == sorted(record) and None not in record.values()
    assert (run_dir / "summary.jsonl").read_text() == (run_dir / "index.jsonl").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_run"]["status"] == "finished"
    assert metrics["summary"] == reference.CALCULATOR_SUMMARY


def test_trajectories_are_atif_with_observations_and_rewards(calculator: dict[str, Any],
                                                             workspace: Workspace) -> None:
    archived = sorted(workspace.path.glob(".osmosis/evals/ref.archive-*"))
    run_dir = archived[0]  # the first run, as it was before --fresh
    for row in _lines(run_dir / "index.jsonl"):
        path = run_dir / "trajectories" / f"row_{row['row_index']}_run_0.json"
        document = json.loads(path.read_text())
        assert atif.validate(document) == []
        assert atif.trajectory_rollout_id(document) == row["rollout_id"]
        assert document["extra"]["osmosis"]["reward"] == row["reward"]
        calls = {call["tool_call_id"] for step in document["steps"]
                 for call in step.get("tool_calls") or []}
        observed = {result.get("source_call_id") for step in document["steps"]
                    if step.get("observation") for result in step["observation"]["results"]}
        assert calls == observed
        if row["row_index"] in (0, 1, 2, 4):
            assert calls  # a multiplication: the workflow ran its tool


def test_a_second_identical_run_dispatches_nothing(calculator: dict[str, Any]) -> None:
    code, envelope = calculator["again"]
    assert code == 0
    resource = envelope["resource"]
    assert {key: resource[key] for key in reference.RESUMED_COUNTS} == reference.RESUMED_COUNTS
    assert envelope["message"] == reference.RESUMED_MESSAGE
    assert resource["metrics"] == reference.CALCULATOR_SUMMARY


def test_the_console_summary(calculator: dict[str, Any]) -> None:
    done = calculator["console"]
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == reference.RESUMED_MESSAGE
    assert "  succeeded: 5  failed: 0  skipped: 0" in lines
    assert "  pass rate: 0.600 (threshold 1.0)  tokens: 540" in lines
    assert ("  reward mean 0.600  median 1.000  std 0.490  min 0.000  max 1.000" in lines)


def test_an_edited_rollout_is_refused(calculator: dict[str, Any]) -> None:
    code, envelope = calculator["edited"]
    assert code == 1
    assert envelope["command"] == "eval run"
    assert envelope["error"] == reference.CHANGED_ROLLOUT_ERROR


def test_fresh_archives_and_reruns(calculator: dict[str, Any], workspace: Workspace) -> None:
    code, envelope = calculator["fresh"]
    assert code == 0, envelope
    assert envelope["resource"]["dispatched"] == 5
    assert envelope["resource"]["resumed"] == 0
    archives = sorted(workspace.path.glob(".osmosis/evals/ref.archive-*"))
    assert len(archives) == 1
    assert len(_lines(archives[0] / "index.jsonl")) == 5


def test_the_provider_key_stays_out_of_the_run_directory(calculator: dict[str, Any],
                                                         workspace: Workspace) -> None:
    for path in (workspace.path / ".osmosis").rglob("*"):
        if path.is_file():
            assert PROVIDER_KEY.encode() not in path.read_bytes(), path


def test_failure_paths_are_the_references(workspace: Workspace) -> None:
    code, envelope = workspace.eval_run("configs/eval/faults.toml", "--dataset-file",
                                        "data/faults.jsonl", "--name", "faults")
    assert code == 0, envelope
    resource = envelope["resource"]
    assert resource["metrics"] == reference.FAULTS_SUMMARY
    assert [(row["row_index"], row["error_type"]) for row in resource["failed_rows"]] == \
        reference.FAULTS_FAILED_ROWS
    index = _lines(workspace.run_dir("faults") / "index.jsonl")
    assert [(row["row_index"], row["status"], row.get("reward"), row.get("tokens"),
             row.get("error_type"), "trajectory_filename" in row) for row in index] == \
        reference.FAULTS_ROWS

    code, envelope = workspace.eval_run("configs/eval/faults.toml", "--dataset-file",
                                        "data/faults.jsonl", "--name", "faults",
                                        "--retry-failed")
    assert code == 0, envelope
    resource = envelope["resource"]
    assert (resource["dispatched"], resource["resumed"]) == (3, 1)
    assert resource["metrics"] == reference.FAULTS_SUMMARY
    events = _lines(workspace.run_dir("faults") / "events.jsonl")
    assert sorted(event["row_index"] for event in events) == [0, 1, 1, 2, 2, 3, 3]


def test_repeated_runs_give_the_references_pass_at_k(workspace: Workspace) -> None:
    code, envelope = workspace.eval_run("configs/eval/repeated.toml", *DATASET,
                                        "--rows", "0,2-3", "--name", "repeated")
    assert code == 0, envelope
    assert envelope["resource"]["metrics"] == reference.REPEATED_SUMMARY
    manifest = json.loads((workspace.run_dir("repeated") / "manifest.json").read_text())
    assert manifest["inputs"]["dataset"]["selected_source_rows"] == reference.REPEATED_SELECTION
    index = _lines(workspace.run_dir("repeated") / "index.jsonl")
    assert [(row["row_index"], row["run_index"]) for row in index] == [
        (row, run) for row in range(3) for run in range(3)]


def test_a_rollout_server_that_dies_is_restarted_and_the_run_goes_on(
    workspace: Workspace,
) -> None:
    code, envelope = workspace.eval_run("configs/eval/faults.toml", "--dataset-file",
                                        "data/crash.jsonl", "--name", "crash",
                                        "--max-in-flight", "1")
    assert code == 0, envelope
    index = _lines(workspace.run_dir("crash") / "index.jsonl")
    assert [(row["row_index"], row["status"], row.get("reward"), row.get("error_type"))
            for row in index] == [(0, "success", 1.0, None),
                                  (1, "failed", None, "rollout_server_died"),
                                  (2, "success", 1.0, None),  # answered by a new server
                                  (3, "success", 1.0, None)]
    # faults.toml names no secret: the rollout server holds no provider key, though this
    # process's environment has OPENAI_API_KEY (the gateway's)
    trajectory = json.loads((workspace.run_dir("crash") / "trajectories" /
                             "row_3_run_0.json").read_text())
    assert trajectory["extra"]["osmosis"]["sample_metrics"]["api_key_variables"] == 0.0


def test_an_interrupted_run_is_partial_and_resumes(workspace: Workspace) -> None:
    run_dir = workspace.run_dir("interrupted")
    process = subprocess.Popen(
        rolloutctl_argv(["eval", "run", "configs/eval/faults.toml", "--dataset-file",
                         "data/faults.jsonl", "--name", "interrupted", "--max-in-flight", "1",
                         "--yes", "--json"]),
        cwd=workspace.path, env=cli_env(workspace.env), stdout=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    events = run_dir / "events.jsonl"
    while not (events.exists() and events.read_text().count("\n") >= 1):
        assert process.poll() is None, "the run ended before its first result"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    envelope = json.loads(out)
    assert envelope["status"] == "partial"
    assert envelope["message"] == ("Interrupted. Resume the pending work items: rolloutctl eval "
                                   "run configs/eval/faults.toml --name interrupted")
    resource = envelope["resource"]
    assert resource["cancelled"] is True
    assert resource["dispatched"] == len(_lines(run_dir / "index.jsonl")) < 4
    code, envelope = workspace.eval_run("configs/eval/faults.toml", "--dataset-file",
                                        "data/faults.jsonl", "--name", "interrupted")
    assert code == 0
    assert envelope["resource"]["resumed"] + envelope["resource"]["dispatched"] == 4
    assert envelope["resource"]["metrics"] == reference.FAULTS_SUMMARY
