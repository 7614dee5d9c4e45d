"""The 0.3 test workspace as a RolloutRun (`spec.rollout`) through `rolloutctl run`: the
rollout server built and run under bubblewrap, the workers serving the gateway; the same
per-row rewards as `eval run` and osmosis-ai 0.3.8 (tests/workspaces/reference.py), and an
ATIF file per trajectory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.workspaces import atif
from tests.local.support import (
    file_path,
    records,
    result_json,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.workspaces.conftest import Workspace
from tests.workspaces.reference import CALCULATOR_ROWS, FAULTS_ROWS

pytestmark = pytest.mark.slow


def rollout_run(workspace: Workspace, out: Path, *, dataset: str = "data/calculator.jsonl",
                timeout: float = 30) -> dict[str, Any]:
    return {
        "apiVersion": "rollouts.dev/v1alpha1", "kind": "RolloutRun",
        "metadata": {"name": "calc03"},
        "spec": {
            "repo": {"url": str(workspace.path), "revision": "HEAD"},
            "dataset": {"path": dataset},
            "model": {"name": "openai/scripted", "baseURL": workspace.model.base_url},
            "agent": {"rolloutTimeoutSeconds": timeout},
            "scoring": {"timeoutSeconds": 10},
            "rollout": {"name": "calculator", "env": {"CALCULATOR_LOG_LEVEL": "WARNING"}},
            "workers": {"shards": 2, "concurrency": 4},
            "output": {"url": out.as_uri()},
        },
    }


needs_sandbox = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not "
                                   "installed or cannot create sandboxes here")


@needs_sandbox
def test_sandboxed_run_gives_the_reference_rewards(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_manifest(tmp_path / "run.yaml", rollout_run(workspace, out))
    done = run_local(path, "--json", cwd=tmp_path, env=workspace.env, timeout=600)
    result = result_json(done)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert result["ok"] and result["state"] == "Succeeded" and result["sandbox"] is True

    run_dir = file_path(result["runPrefix"])
    found = sorted(records(run_dir), key=lambda r: r["row_index"])
    assert [(r["row_index"], r["status"], r["reward"]) for r in found] == [
        (row, "completed", reward) for row, _, reward, _ in CALCULATOR_ROWS]
    for record in found:
        assert record["scores"] == {"grader": record["reward"]}
        assert record["usage"]["total_tokens"] > 0
        assert record["messages"][-1]["role"] == "assistant"
        document = json.loads((run_dir / "atif" / f"{record['rollout_id']}.json").read_text())
        assert atif.validate(document) == []
        assert document["extra"]["osmosis"]["reward"] == record["reward"]
        assert document["extra"]["osmosis"]["request_extra_fields"] == {
            "row_index": record["row_index"], "run_index": 0}


@needs_sandbox
def test_faults_are_recorded_as_the_contract_says(workspace: Workspace, tmp_path: Path) -> None:
    """configs/eval/faults.toml's rows as a RolloutRun: osmosis' success / timeout /
    validation_error / skipped become completed / failed (timeout) / failed (reward) /
    invalid, and the run still succeeds."""
    out = tmp_path / "out"
    path = write_manifest(tmp_path / "run.yaml", rollout_run(
        workspace, out, dataset="data/faults.jsonl", timeout=2))
    done = run_local(path, "--json", cwd=tmp_path, env=workspace.env, timeout=600)
    result = result_json(done)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert result["state"] == "Succeeded"
    found = sorted(records(file_path(result["runPrefix"])), key=lambda r: r["row_index"])
    expected = {"success": "completed", "failed": "failed", "skipped": "invalid"}
    assert [(r["row_index"], r["status"], r["reward"]) for r in found] == [
        (row, expected[status], reward) for row, status, reward, *_ in FAULTS_ROWS]
    categories = [(r["error"] or {}).get("category") for r in found]
    assert categories == [None, "timeout", "reward", "dataset"]
    assert "remove_sample" in found[3]["error"]["message"]
