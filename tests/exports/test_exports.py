"""`rolloutctl export`: each format from committed records, what is left out, and that each
loads with `datasets.load_dataset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from rollout_operator.cli.export_cmd import export_command
from rollout_operator.exports.atif import to_atif
from rollout_operator.exports.tokens import token_sequence
from rollout_operator.runtime.records import TurnTokens
from tests.exports.records import TOOL_SCHEMA, commit, record, sample_run


def export(run: Path, fmt: str, out: Path, *args: str) -> Result:
    result = CliRunner().invoke(export_command,
                                [str(run), "--format", fmt, "-o", str(out), "--json", *args])
    return result


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sft_rows_are_exactly_the_passing_completed_records(tmp_path: Path) -> None:
    run = commit(tmp_path / "run", sample_run())
    result = export(run, "sft", tmp_path / "sft.jsonl")
    assert result.exit_code == 0, result.output
    rows = lines(tmp_path / "sft.jsonl")
    passing = [r for r in sample_run() if r.status == "completed" and (r.reward or 0) >= 1.0]
    assert sorted(json.dumps(r["messages"]) for r in rows) == sorted(
        json.dumps(r.messages) for r in passing)
    assert len(rows) == 4 and all(set(row) == {"messages", "tools"} for row in rows)
    assert all(row["tools"] == [TOOL_SCHEMA] for row in rows)
    summary = json.loads(result.output)
    assert summary["written"] == 4 and summary["leftOut"] == {"masked": 1, "invalid": 1}

    lower = export(run, "sft", tmp_path / "half.jsonl", "--threshold", "0.5")
    assert lower.exit_code == 0, lower.output
    assert len(lines(tmp_path / "half.jsonl")) == 6


def test_sft_threshold_defaults_to_the_runs_pass_threshold(tmp_path: Path) -> None:
    run = commit(tmp_path / "run", sample_run(), pass_threshold=0.5, tool_schemas=False)
    assert export(run, "sft", tmp_path / "sft.jsonl").exit_code == 0
    rows = lines(tmp_path / "sft.jsonl")
    assert len(rows) == 6
    # a run without tools.json: the tools by name
    assert rows[0]["tools"][0]["function"]["name"] == "multiply"


def test_dpo_pairs_exactly_the_prompts_whose_rewards_differ(tmp_path: Path) -> None:
    run = commit(tmp_path / "run", sample_run())
    result = export(run, "dpo", tmp_path / "dpo.jsonl")
    assert result.exit_code == 0, result.output
    rows = lines(tmp_path / "dpo.jsonl")
    # rows 1 (1.0 vs 0.0) and 2 (0.5 vs 0.0); not row 0 (equal), row 3 (one completed beside a
    # masked one), row 4 (invalid) or row 5 (a failed record has no reward)
    assert [row["prompt"][1]["content"] for row in rows] == ["What is 1 * 2?", "What is 2 * 2?"]
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in rows)
    first, second = rows
    assert first["prompt"] == record(1, 0, 1.0).messages[:2]
    assert first["chosen"] == record(1, 0, 1.0).messages[2:]
    assert first["rejected"] == record(1, 1, 0.0).messages[2:]
    # the tie between samples 1 and 2 of row 2 goes to the lower sample index
    assert second["chosen"][0]["tool_calls"][0]["id"] == "call_2_1"
    assert second["rejected"][0]["tool_calls"][0]["id"] == "call_2_0"


def test_tokens_rows_carry_ids_mask_logprobs_reward_and_advantage(tmp_path: Path) -> None:
    run = commit(tmp_path / "run", sample_run())
    out = tmp_path / "tokens.parquet"
    result = export(run, "tokens", out)
    assert result.exit_code == 0, result.output
    rows = {(r["row_index"], r["sample_index"]): r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0), (5, 1)}
    row = rows[(1, 1)]
    assert row["input_ids"] == [1, 2, 1, 11, 11, 3, 2, 20, 22]
    assert row["loss_mask"] == [0, 0, 0, 1, 1, 0, 0, 1, 1]
    assert row["logprobs"] == [None, None, None, -0.5, -0.25, None, None, -1.0, float("-inf")]
    assert row["reward"] == 0.0 and row["policy_version"] == "step-120"
    assert (rows[(1, 0)]["advantage"], row["advantage"]) == (0.5, -0.5)
    assert [rows[(2, s)]["advantage"] for s in range(3)] == pytest.approx([-1 / 3, 1 / 6, 1 / 6])
    assert rows[(0, 0)]["advantage"] == 0.0 and rows[(3, 0)]["advantage"] == 0.0

    scaled = export(run, "tokens", tmp_path / "scaled.parquet", "--scale-by-std")
    assert scaled.exit_code == 0, scaled.output
    by_item = {(r["row_index"], r["sample_index"]): r["advantage"]
               for r in pq.read_table(tmp_path / "scaled.parquet").to_pylist()}
    assert by_item[(1, 0)] == pytest.approx(1.0, abs=1e-5)


def test_tokens_without_token_ids_is_an_error_saying_how_to_capture_them(
        tmp_path: Path) -> None:
    run = commit(tmp_path / "run", [record(0, 0, 1.0, tokens=False),
                                    record(0, 1, 0.0, tokens=False)])
    result = export(run, "tokens", tmp_path / "tokens.parquet")
    assert result.exit_code == 2
    assert "none of the 2 completed records has token ids" in result.output
    assert "return_token_ids" in result.output
    assert not (tmp_path / "tokens.parquet").exists()


def test_an_earlier_turn_the_last_prompt_re_renders_is_context_only_and_said(
        tmp_path: Path) -> None:
    drifted = record(0, 1, 0.0)
    drifted.turns[1].prompt_token_ids = [1, 2, 0, 99, 11, 3, 0]  # turn 1 re-rendered
    run = commit(tmp_path / "run", [record(0, 0, 1.0), drifted])
    out = tmp_path / "tokens.parquet"
    result = export(run, "tokens", out)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["written"] == 2 and summary["leftOut"] == {}
    assert summary["notes"] == [
        "1 record(s) train only some of their turns",
        "calc-0-1: turn(s) 1 of 2 are context only (the last prompt does not hold them as "
        "sampled)"]
    row = {r["sample_index"]: r for r in pq.read_table(out).to_pylist()}[1]
    assert row["input_ids"] == [1, 2, 0, 99, 11, 3, 0, 20, 22]
    assert row["loss_mask"] == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert row["logprobs"] == [None] * 7 + [-1.0, float("-inf")]


def test_the_sequence_is_the_last_prompt_and_reply_with_each_turn_masked_as_sampled() -> None:
    def turn(prompt: list[int], reply: list[int], index: int) -> TurnTokens:
        return TurnTokens(prompt_token_ids=prompt, token_ids=reply, message_index=index,
                          logprobs=[-0.5] * len(reply))

    base = record(0, 0, 1.0)
    messages = [*base.messages[:4], {"role": "assistant", "content": "again"},
                {"role": "user", "content": "more"}, base.messages[4]]
    lined_up = base.model_copy(update={"messages": messages, "turns": [
        turn([1, 2], [10, 11], 2), turn([1, 2, 10, 11, 3], [20], 4),
        turn([1, 2, 10, 11, 3, 20, 4], [30, 31], 6)]})
    sequence = token_sequence(lined_up)
    assert sequence.input_ids == [1, 2, 10, 11, 3, 20, 4, 30, 31]
    assert sequence.loss_mask == [0, 0, 1, 1, 0, 1, 0, 1, 1]
    assert sequence.logprobs == [None, None, -0.5, -0.5, None, -0.5, None, -0.5, -0.5]
    assert sequence.untrained_turns == []

    # turn 2's reply is in the last prompt token for token, but after a re-rendered turn 1:
    # its context is not what the sampler saw, so neither turn is trained
    drifted = lined_up.model_copy(update={"turns": [
        turn([1, 2], [10, 11], 2), turn([1, 2, 10, 11, 3], [20], 4),
        turn([1, 2, 10, 12, 3, 20, 4], [30, 31], 6)]})
    sequence = token_sequence(drifted)
    assert sequence.loss_mask == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert sequence.untrained_turns == [1, 2]

    # the turns are taken in message order, whatever order they were stored in
    shuffled = lined_up.model_copy(update={"turns": list(reversed(lined_up.turns))})
    assert token_sequence(shuffled).loss_mask == [0, 0, 1, 1, 0, 1, 0, 1, 1]

    with pytest.raises(ValueError, match="assistant message 4 has no token ids"):
        token_sequence(lined_up.model_copy(update={"turns": [lined_up.turns[0],
                                                            lined_up.turns[2]]}))
    with pytest.raises(ValueError, match="turn 1 has no prompt token ids"):
        token_sequence(record(0, 0, 1.0).model_copy(update={"turns": [
            record(0, 0, 1.0).turns[0].model_copy(update={"prompt_token_ids": None}),
            record(0, 0, 1.0).turns[1]]}))


def test_a_record_with_a_turn_without_ids_is_left_out_and_said(tmp_path: Path) -> None:
    bare = record(0, 1, 0.0)
    bare.turns[0].token_ids = None
    run = commit(tmp_path / "run", [record(0, 0, 1.0), bare])
    result = export(run, "tokens", tmp_path / "tokens.parquet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["written"] == 1
    assert summary["leftOut"] == {"turns without token ids": 1}
    assert summary["notes"] == ["calc-0-1: turn 1 has no token ids"]


def test_atif_writes_one_document_per_exportable_record(tmp_path: Path) -> None:
    run = commit(tmp_path / "run", sample_run())
    out = tmp_path / "atif"
    result = export(run, "atif", out)
    assert result.exit_code == 0, result.output
    exportable = [r for r in sample_run() if r.status not in ("masked", "invalid")]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"row_{r.row_index}_run_{r.sample_index}.json" for r in exportable)
    document = json.loads((out / "row_1_run_1.json").read_text())
    assert document["schema_version"] == "ATIF-v1.7"
    assert document["session_id"] == document["trajectory_id"] == "calc-1-1"
    assert document["agent"]["model_name"] == "openai/policy"
    assert document["agent"]["tool_definitions"] == [TOOL_SCHEMA]
    assert [s["source"] for s in document["steps"]] == ["system", "user", "agent", "agent"]
    assert [s["step_id"] for s in document["steps"]] == [1, 2, 3, 4]
    call_step = document["steps"][2]
    assert call_step["tool_calls"] == [{"tool_call_id": "call_1_1", "function_name": "multiply",
                                        "arguments": {"first_val": 1, "second_val": 2}}]
    assert call_step["observation"] == {"results": [{"content": "2",
                                                     "source_call_id": "call_1_1"}]}
    assert call_step["metrics"]["completion_token_ids"] == [11, 11]
    assert document["steps"][3]["metrics"]["logprobs"] == [-1.0, None]  # -inf is not JSON
    assert document["final_metrics"]["total_steps"] == 4
    osmosis = document["extra"]["osmosis"]
    assert osmosis["reward"] == 0.0 and osmosis["rollout_id"] == "calc-1-1"
    assert osmosis["request_extra_fields"] == {"row_index": 1, "run_index": 1}
    assert document["extra"]["rollout_operator"]["policy_version"] == "step-120"

    # exporting again replaces the files: no stale ones from an earlier export stay
    (out / "row_99_run_0.json").write_text("{}")
    assert export(run, "atif", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == names


def test_atif_maps_odd_messages_without_losing_them() -> None:
    odd = record(0, 0, 1.0).model_copy(update={"messages": [
        {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "tool", "content": "orphan result", "tool_call_id": "x"},
        {"role": "assistant", "content": "thinking", "reasoning_content": "hm",
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "multiply", "arguments": "not json"}}]},
        {"role": "tool", "content": "late", "tool_call_id": "other"},
    ], "turns": []})
    steps = to_atif(odd)["steps"]
    assert steps[0] == {"step_id": 1, "source": "system",
                        "message": [{"type": "text", "text": "be brief"}]}
    assert steps[1]["source"] == "user"
    assert steps[1]["extra"] == {"original_role": "tool", "tool_call_id": "x"}
    assert steps[2]["reasoning_content"] == "hm"
    assert steps[2]["tool_calls"][0]["arguments"] == {"_raw": "not json"}
    assert steps[2]["observation"] == {"results": [{"content": "late"}]}
    assert "model_name" not in steps[2]


def test_a_folder_without_records_is_refused_with_what_to_give(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = export(tmp_path / "empty", "sft", tmp_path / "sft.jsonl")
    assert result.exit_code == 2
    assert "holds no trajectory records" in result.output and "runPrefix" in result.output


def test_every_format_loads_with_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    run = commit(tmp_path / "run", sample_run())
    cache = str(tmp_path / "hf-cache")
    for fmt, name in (("sft", "sft.jsonl"), ("dpo", "dpo.jsonl"), ("tokens", "t.parquet"),
                      ("atif", "atif")):
        assert export(run, fmt, tmp_path / name).exit_code == 0
    sft = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train",
                                cache_dir=cache)
    assert sft.num_rows == 4 and sft[0]["messages"][1]["role"] == "user"
    assert sft[0]["tools"][0]["function"]["name"] == "multiply"
    dpo = datasets.load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"), split="train",
                                cache_dir=cache)
    assert dpo.num_rows == 2 and dpo.column_names == ["prompt", "chosen", "rejected"]
    tokens = datasets.load_dataset("parquet", data_files=str(tmp_path / "t.parquet"),
                                   split="train", cache_dir=cache)
    assert tokens.num_rows == 9 and len(tokens[0]["input_ids"]) == len(tokens[0]["loss_mask"])
    # datasets takes one schema from the first file: trajectories of one shape (here the
    # completed ones) load as one dataset
    completed = commit(tmp_path / "completed", [r for r in sample_run()
                                                 if r.status == "completed"])
    assert export(completed, "atif", tmp_path / "atif-completed").exit_code == 0
    atif = datasets.load_dataset("json", data_files=str(tmp_path / "atif-completed" / "*.json"),
                                 split="train", cache_dir=cache)
    assert atif.num_rows == 9
    assert set(atif["schema_version"]) == {"ATIF-v1.7"}
    assert atif[0]["steps"][2]["tool_calls"][0]["function_name"] == "multiply"
