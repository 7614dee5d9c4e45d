"""Faults in user code are recorded on their run and never stop the batch."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import REPO_ROOT, run_cli
from tests.support.scripted_model import ScriptedModelServer

FAULTY = REPO_ROOT / "tests" / "fixtures" / "repos" / "faulty"
FNS = [f"reward_fn.rewards:{name}" for name in ("exact", "crashes_on_big", "returns_int")]


def test_raising_and_hanging_tools_and_scorers(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["eval", "--mcp", "mcp", "-d", "data.jsonl", "--model", "scripted", "--base-url",
            scripted_model.base_url, "--tool-timeout", "0.5", "--batch-size", "4", "-o", str(out),
            "--log-samples"]
    for fn in FNS:
        args += ["--eval-fn", fn]
    # The hanging tool sleeps ten minutes in a worker thread: the command must not wait for it
    # (run_cli raises TimeoutExpired after two).
    done = run_cli(args, cwd=FAULTY, env={"OSMOSIS_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    document = json.loads(next(out.rglob("results_*.json")).read_text())
    runs = {r["row_index"]: r for r in document["runs"]}
    assert all(r["success"] for r in runs.values())
    exact = {i: r["scores"]["reward_fn.rewards:exact"] for i, r in runs.items()}
    assert exact == {0: 1.0, 1: 0.0, 2: 0.0, 3: 1.0}
    crashes = {i: r["scores"]["reward_fn.rewards:crashes_on_big"] for i, r in runs.items()}
    assert crashes == {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0}  # raises when ground_truth > 50
    assert all(r["scores"]["reward_fn.rewards:returns_int"] == 0.0 for r in runs.values())

    samples = {json.loads(line)["row_index"]: json.loads(line)["messages"]
               for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()}
    tool_text = {i: next(m["content"] for m in msgs if m["role"] == "tool")
                 for i, msgs in samples.items()}
    assert tool_text[0] == "96.0"
    assert tool_text[1].startswith("Error: ") and "thirteen is unlucky" in tool_text[1]
    assert tool_text[2] == "Error: Tool 'multiply' timed out after 0.5s"
