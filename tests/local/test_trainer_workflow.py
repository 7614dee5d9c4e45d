"""What a trainer does with a local run, end to end: `spec.model.policyVersion` on every
record, the client streaming records while the run goes on and resuming from a cursor, and
`rolloutctl export` of the finished run in the formats trainers load."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_operator.client import LocalBackend, open_run, submit
from tests.local.support import EXAMPLE, file_path, local_env, manifest, records
from tests.support.cli import run_cli
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

ROWS, SAMPLES = 4, 2
HELD = "70 * 14"
"""Row 3's prompt: its rollouts wait for the gate, so the run cannot end before it opens."""
SPLIT = "12 * 8"
"""Row 0's prompt: one of its two samples answers wrong, so its rewards differ."""


@pytest.fixture
def gated_model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        try:
            yield server
        finally:
            server.model.gate.set()


def test_a_trainer_streams_a_running_local_run_then_exports_it(
        gated_model: ScriptedModelServer, tmp_path: Path) -> None:
    model = f"scripted:gated-on-{HELD.split()[0]}:alternate-on-{SPLIT.split()[0]}"
    document = manifest("trainer", str(EXAMPLE), gated_model.base_url,
                        (tmp_path / "out").as_uri(), model=model, rows=ROWS, samples=SAMPLES,
                        shards=2)
    document["spec"]["model"]["policyVersion"] = "step-120"
    backend = LocalBackend(cwd=tmp_path, sandbox=False, environ=local_env(
        {"ROLLOUT_PART_SIZE": "2", "ROLLOUT_COMMIT_INTERVAL_SECONDS": "0.5"}))
    run = submit(document, backend=backend)

    # Records of rows 0-2 are committed while row 3 waits: the stream yields them before the
    # run can finish.
    first = run.stream(poll_s=0.2)
    seen = []
    for item in first:
        seen.append(item)
        if len(seen) == 3:
            break
    assert not asyncio.run(run.finished()), "the run ended while row 3 was held"
    assert all(r.row_index != 3 for r in seen)
    cursor = str(first.cursor)

    gated_model.model.gate.set()
    rest = list(run.stream(cursor, poll_s=0.2))
    outcome = run.wait(timeout_s=180)
    assert outcome.ok, outcome.details
    assert outcome.details["policyVersion"] == "step-120"

    streamed = Counter((r.row_index, r.sample_index, r.attempt) for r in seen + rest)
    assert set(streamed.values()) == {1}, "a record was streamed twice"
    assert set(streamed) == {(row, s, 0) for row in range(ROWS) for s in range(SAMPLES)}
    run_dir = file_path(run.run_prefix)
    committed = records(run_dir)
    assert len(committed) == ROWS * SAMPLES
    assert {r["policy_version"] for r in committed} == {"step-120"}
    assert all(r.policy_version == "step-120" for r in seen + rest)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["policy_version"] == "step-120"
    assert len(list(open_run(run.run_prefix))) == ROWS * SAMPLES

    rewards = {(r["row_index"], r["sample_index"]): r["reward"] for r in committed}
    assert sorted(rewards[(0, s)] for s in range(SAMPLES)) == [0.0, 1.0]
    assert all(rewards[(row, s)] == 1.0 for row in range(1, ROWS) for s in range(SAMPLES))

    sft = tmp_path / "sft.jsonl"
    done = run_cli(["export", run.run_prefix, "--format", "sft", "-o", str(sft)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    passing = [r for r in committed if r["status"] == "completed" and r["reward"] >= 1.0]
    assert sorted(json.dumps(r["messages"]) for r in rows) == sorted(
        json.dumps(r["messages"]) for r in passing)
    assert len(rows) == ROWS * SAMPLES - 1
    # the tools' schemas, as the workers wrote them to tools.json beside run.json
    assert (run_dir / "tools.json").is_file()
    tools = {t["function"]["name"]: t["function"] for t in rows[0]["tools"]}
    assert set(tools) == {"add", "multiply"}
    assert set(tools["multiply"]["parameters"]["properties"]) == {"first_val", "second_val"}

    dpo = tmp_path / "dpo.jsonl"
    done = run_cli(["export", run.run_prefix, "--format", "dpo", "-o", str(dpo)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (pair,) = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert SPLIT in pair["prompt"][-1]["content"]
    assert pair["chosen"][-1]["content"].endswith("#### 96.0")
    assert pair["rejected"][-1]["content"].endswith("#### -1")

    atif = tmp_path / "atif"
    done = run_cli(["export", run.run_prefix, "--format", "atif", "-o", str(atif)],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    documents = [json.loads(p.read_text()) for p in sorted(atif.glob("*.json"))]
    assert len(documents) == ROWS * SAMPLES
    assert {d["extra"]["osmosis"]["rollout_id"] for d in documents} == {
        r["rollout_id"] for r in committed}
    assert {d["extra"]["rollout_operator"]["policy_version"] for d in documents} == {"step-120"}

    done = run_cli(["export", run.run_prefix, "--format", "tokens", "-o",
                    str(tmp_path / "tokens.parquet")], cwd=tmp_path)
    assert done.returncode == 2
    assert "has token ids" in done.stderr and "return_token_ids" in done.stderr
