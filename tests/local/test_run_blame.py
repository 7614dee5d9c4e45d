"""`rolloutctl run` puts the blame for a passed rollout deadline where it belongs: a model that
hangs is infrastructure (masked, category inference, never scored), a tool that is too slow is
the rollout timing out (failed, category timeout)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.support.scripted_model import start_process

pytestmark = pytest.mark.slow

SLOW_MULTIPLY = '''
import asyncio

from server import mcp


@mcp.tool
async def multiply(first_val: float, second_val: float) -> float:
    """Calculate the product of two numbers (slowly when the first one is 9)"""
    if first_val == 9:
        await asyncio.sleep(30)
    return round(first_val * second_val, 6)


@mcp.tool
def add(first_val: float, second_val: float) -> float:
    """Calculate the sum of two numbers"""
    return round(first_val + second_val, 6)
'''


@pytest.fixture
def own_model() -> Iterator[str]:
    """A scripted model of this test's own: the hung requests die with its process."""
    process, url = start_process()
    try:
        yield url
    finally:
        process.kill()
        process.wait(10)


def test_hanging_model_is_masked_and_slow_tool_times_out(own_model: str,
                                                          tmp_path: Path) -> None:
    # Rows 3 and 4 ("70 * 14", "48 * 76") hang at the model, row 5 ("9 * 66") at its tool.
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "mcp" / "tools" / "math.py").write_text(SLOW_MULTIPLY, encoding="utf-8")
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "blame", str(repo), own_model, (tmp_path / "out").as_uri(), rows=6, samples=2,
        shards=2, model="scripted:hang-on-7",
        agent={"maxTurns": 4, "toolTimeoutSeconds": 60, "rolloutTimeoutSeconds": 3},
        faults={"maskedRetries": 0, "maxMaskedFraction": 0.5}))  # a third stays masked
    done = run_local(path, "--json", *([] if sandbox_available() else ["--no-sandbox"]),
                     cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert "Shard" not in done.stderr, "a worker failed and was retried:\n" + done.stderr

    found = {(r["row_index"], r["sample_index"]): r for r in records(
        file_path(result["runPrefix"]))}
    assert sorted(found) == [(row, s) for row in range(6) for s in range(2)]
    for (row, _), record in found.items():
        if row in (3, 4):
            assert record["status"] == "masked", record
            assert record["error"]["category"] == "inference"
            assert "did not answer within the rollout deadline of 3s" in record["error"]["message"]
        elif row == 5:
            assert record["status"] == "failed", record
            assert record["error"] == {"category": "timeout",
                                       "message": "Rollout exceeded its deadline of 3.0s"}
        else:
            assert record["status"] == "completed" and record["scores"] == {REWARD: 1.0}
            continue
        assert record["finish_reason"] == "timeout"
        assert record["scores"] == {} and record["reward"] is None

    progress = result["progress"]
    assert (progress["total"], progress["completed"], progress["failed"],
            progress["masked"]) == (12, 6, 2, 4)
    # Masked rollouts are left out of the statistics; a failed one counts 0, as in osmosis eval.
    assert result["summary"][REWARD]["mean"] == 0.75
    assert result["summary"][REWARD]["min"] == 0.0 and result["summary"][REWARD]["max"] == 1.0
    results = json.loads((file_path(result["runPrefix"]) / "results.json").read_text())
    assert results["summary"]["eval_fns"][REWARD]["mean"] == 0.75
    assert len(results["runs"]) == 12


def test_a_run_where_the_model_always_hangs_scores_nothing(own_model: str,
                                                             tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "hung", str(EXAMPLE), own_model, (tmp_path / "out").as_uri(), rows=2, samples=2,
        shards=1, model="scripted:hang-on-What",
        agent={"maxTurns": 4, "toolTimeoutSeconds": 10, "rolloutTimeoutSeconds": 2},
        faults={"maskedRetries": 0, "maxMaskedFraction": 1.0}))
    done = run_local(path, "--json", *([] if sandbox_available() else ["--no-sandbox"]),
                     cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["progress"] == {"total": 4, "completed": 0, "failed": 0, "masked": 4,
                                  "invalid": 0}
    # Nothing was scored, so there is no mean at all: not a mean of 0.
    assert result["summary"] == {REWARD: {"mean": None, "std": None, "min": None, "max": None,
                                          "prompts": 0, "rollouts": 0}}
    assert all(r["status"] == "masked" and r["error"]["category"] == "inference"
               for r in records(file_path(result["runPrefix"])))


def test_scripted_model_hang_on_text(own_model: str) -> None:
    """The test's hanging model: only the prompts holding the text hang."""
    def ask(prompt: str, timeout: float) -> dict[str, Any]:
        body = {"model": "scripted:hang-on-7", "messages": [{"role": "user", "content": prompt}]}
        request = urllib.request.Request(f"{own_model}/chat/completions",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    assert ask("What is 12 * 8?", 10)["choices"][0]["message"]["tool_calls"]
    with pytest.raises(TimeoutError):
        ask("What is 70 * 14?", 1)
