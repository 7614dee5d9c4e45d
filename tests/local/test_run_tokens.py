"""`spec.model.captureTokens` end to end: `rolloutctl run` against the scripted model speaking
vLLM's token fields, every turn's ids in the records, then `rolloutctl export --format tokens`
joining them into one sequence per record with the loss mask over the sampled tokens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.local.support import (
    EXAMPLE,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    write_manifest,
)
from tests.support.cli import run_cli
from tests.support.scripted_model import (
    IM_END,
    ScriptedModelServer,
    chat_prompt_ids,
    reply_ids,
)

pytestmark = pytest.mark.slow

ROWS, SAMPLES = 3, 2


def capture_run(server: ScriptedModelServer, tmp_path: Path,
                model: str) -> subprocess.CompletedProcess[str]:
    document = manifest("tokens", str(EXAMPLE), server.base_url, (tmp_path / "out").as_uri(),
                        model=model, rows=ROWS, samples=SAMPLES, shards=1)
    document["spec"]["model"]["captureTokens"] = True
    path = write_manifest(tmp_path / "run.yaml", document)
    return run_local(path, "--json", "--no-sandbox", cwd=tmp_path)



def test_a_capturing_run_records_every_turn_and_exports_its_tokens(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    before = len(scripted_model.requests)  # the server is shared with earlier tests
    done = capture_run(scripted_model, tmp_path, "scripted")
    result = result_json(done)
    assert done.returncode == 0 and result["ok"], done.stderr
    run_dir = file_path(result["runPrefix"])
    found = records(run_dir)
    assert len(found) == ROWS * SAMPLES
    asked = [b for b in scripted_model.requests[before:] if b.get("model") == "scripted"]
    assert asked and all(b["return_token_ids"] is True and b["logprobs"] is True for b in asked)
    with (run_dir / "tools.json").open() as handle:
        tools = json.load(handle)

    for record in found:
        assert record["status"] == "completed" and record["reward"] == 1.0
        messages = record["messages"]
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        assert [t["message_index"] for t in record["turns"]] == assistant == [2, 4]
        for turn in record["turns"]:
            index = turn["message_index"]
            assert turn["prompt_token_ids"] == chat_prompt_ids(messages[:index], tools)
            assert turn["token_ids"] == reply_ids(messages[index])
            assert turn["token_ids"][-1] == IM_END
            assert len(turn["logprobs"]) == len(turn["token_ids"])
            assert all(value <= 0 for value in turn["logprobs"])
        assert record["usage"]["prompt_tokens"] == sum(
            len(t["prompt_token_ids"]) for t in record["turns"])

    out = tmp_path / "tokens.parquet"
    exported = run_cli(["export", result["runPrefix"], "--format", "tokens", "-o", str(out),
                        "--json"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["written"] == ROWS * SAMPLES and summary["leftOut"] == {}
    assert summary["notes"] == []
    rows = {r["rollout_id"]: r for r in pq.read_table(out).to_pylist()}
    for record in found:
        row = rows[record["rollout_id"]]
        first, last = record["turns"]
        # the last prompt and reply; the first reply sits in it right after the first prompt
        assert row["input_ids"] == last["prompt_token_ids"] + last["token_ids"]
        start, end = len(first["prompt_token_ids"]), len(last["prompt_token_ids"])
        assert row["input_ids"][start:start + len(first["token_ids"])] == first["token_ids"]
        expected_mask = [0] * len(row["input_ids"])
        for turn in (first, last):
            at = len(turn["prompt_token_ids"])
            expected_mask[at:at + len(turn["token_ids"])] = [1] * len(turn["token_ids"])
        assert row["loss_mask"] == expected_mask
        assert sum(row["loss_mask"]) == len(first["token_ids"]) + len(last["token_ids"])
        assert row["logprobs"][start:start + len(first["token_ids"])] == first["logprobs"]
        assert row["logprobs"][end:] == last["logprobs"]
        assert [v for v, m in zip(row["logprobs"], row["loss_mask"], strict=True) if not m] == [
            None] * (len(row["input_ids"]) - sum(row["loss_mask"]))
        assert row["reward"] == 1.0 and row["advantage"] == 0.0


def test_a_template_that_re_renders_history_trains_only_the_last_turn(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    done = capture_run(scripted_model, tmp_path, "scripted:template-drift")
    result = result_json(done)
    assert done.returncode == 0 and result["ok"], done.stderr
    found = records(file_path(result["runPrefix"]))
    out = tmp_path / "tokens.parquet"
    exported = run_cli(["export", result["runPrefix"], "--format", "tokens", "-o", str(out),
                        "--json"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["written"] == ROWS * SAMPLES
    assert summary["notes"][0] == f"{ROWS * SAMPLES} record(s) train only some of their turns"
    rows = {r["rollout_id"]: r for r in pq.read_table(out).to_pylist()}
    for record in found:
        row = rows[record["rollout_id"]]
        last = record["turns"][-1]
        assert row["input_ids"] == last["prompt_token_ids"] + last["token_ids"]
        assert row["loss_mask"] == [0] * len(last["prompt_token_ids"]) + [1] * len(
            last["token_ids"])


def test_an_endpoint_that_ignores_the_fields_fails_the_run_saying_so(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    # `sglang-meta` knows only SGLang 0.5.13's spelling; an endpoint of unknown make is asked
    # in vLLM's
    done = capture_run(scripted_model, tmp_path, "scripted:sglang-meta")
    assert done.returncode != 0
    assert "captureTokens is set" in done.stderr + done.stdout
    assert "without prompt_token_ids and token_ids" in done.stderr + done.stdout
