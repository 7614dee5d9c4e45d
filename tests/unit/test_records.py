"""Trajectory records: validation, JSONL and Parquet round trips, crash-truncated files."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from rollout_operator.runtime.records import (
    JsonlRecordWriter,
    RecordError,
    RecordReadError,
    Timing,
    TrajectoryRecord,
    TurnTokens,
    Usage,
    read_parquet_records,
    read_records,
    records_to_parquet,
)

SYSTEM = {"role": "system", "content": "You are a calculator assistant."}
USER = {"role": "user", "content": "What is 12 * 8?"}
TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "multiply", "arguments": '{"first_val": 12, "second_val": 8}'},
        }
    ],
}
TOOL_RESULT = {"role": "tool", "content": "96.0", "tool_call_id": "call_1"}
ANSWER = {"role": "assistant", "content": "12 * 8 = 96\n#### 96"}
SCORE = "reward_fn.compute_reward:numbers_match_reward"


def completed(row_index: int = 0, sample_index: int = 0) -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=f"eval-{row_index}-run-{sample_index}",
        row_index=row_index,
        sample_index=sample_index,
        status="completed",
        finish_reason="stop",
        messages=[SYSTEM, USER, TOOL_CALL, TOOL_RESULT, ANSWER],
        scores={SCORE: 1.0, "reward_rubric.judge:score": 0.25},
        reward=0.625,
        advantage=0.5,
        ground_truth="96",
        metadata={"difficulty": "easy", "tags": ["math", None], "nested": {"n": 1.5}},
        usage=Usage(
            prompt_tokens=800,
            completion_tokens=60,
            total_tokens=860,
            num_llm_calls=2,
            num_tool_calls=1,
        ),
        timing=Timing(total_ms=210.5, llm_ms=180.25, tool_ms=3.5, scoring_ms=0.75),
        turns=[
            TurnTokens(token_ids=[1, 2, 3], logprobs=[-0.1, -0.2, float("-inf")], message_index=2),
            TurnTokens(token_ids=[4], logprobs=[-0.5], message_index=4, prompt_token_ids=[9, 8]),
        ],
        tools=["multiply"],
        fastmcp_version="4.2.3",
        policy_version="step-120",
    )


def masked(row_index: int = 1) -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=f"eval-{row_index}-run-0-baseline",
        row_index=row_index,
        model_tag="baseline",
        status="masked",
        finish_reason="error",
        error=RecordError(category="sandbox", message="tool server unreachable"),
        messages=[SYSTEM, USER],
    )


def invalid_row(row_index: int = 2) -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=f"test-{row_index}",
        row_index=row_index,
        status="invalid",
        error=RecordError(category="dataset",
                          message="data.jsonl line 3: 'ground_truth' cannot be empty"),
    )


def sample_records() -> list[TrajectoryRecord]:
    return [completed(0), masked(1), invalid_row(2), completed(3, 1)]


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "part-0.jsonl"
    records = sample_records()
    with JsonlRecordWriter(path) as writer:
        writer.write_many(records[:2])
    with JsonlRecordWriter(path) as writer:  # appends
        writer.write_many(records[2:])
        assert writer.written == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0].replace("-Infinity", "null"))
    assert first["messages"][2]["content"] is None
    assert first["scores"] == {SCORE: 1.0, "reward_rubric.judge:score": 0.25}
    back = list(read_records(path))
    assert back == records
    assert back[0].turns[0].logprobs == [-0.1, -0.2, float("-inf")]
    assert list(back[0].scores) == [SCORE, "reward_rubric.judge:score"]


def test_writer_flushes_each_record_and_accepts_an_open_stream(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with JsonlRecordWriter(path) as writer:
        writer.write(completed())
        # Visible to another reader before the writer closes.
        assert [r.rollout_id for r in read_records(path)] == ["eval-0-run-0"]
    stream = io.StringIO()
    writer = JsonlRecordWriter(stream)
    writer.write(masked())
    writer.close()
    assert not stream.closed
    stream.seek(0)
    assert list(read_records(stream)) == [masked()]


def test_truncated_last_line_is_skipped_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "records.jsonl"
    with JsonlRecordWriter(path) as writer:
        writer.write_many([completed(0), masked(1)])
    partial = completed(2).model_dump_json()[:150]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(partial)
    reported: list[tuple[int, str]] = []
    with caplog.at_level(logging.WARNING, logger="rollout_operator.runtime.records"):
        back = list(read_records(path, on_truncated=lambda n, why: reported.append((n, why))))
    assert [r.row_index for r in back] == [0, 1]
    assert [n for n, _ in reported] == [3]
    assert "truncated last line" in reported[0][1]
    assert "line 3" in caplog.text


def test_appending_after_a_crash_cuts_the_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with JsonlRecordWriter(path) as writer:
        writer.write(completed(0))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(completed(1).model_dump_json()[:200])
    with JsonlRecordWriter(path) as writer:
        writer.write(completed(2))
    assert [r.row_index for r in read_records(path)] == [0, 2]


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(completed(0).model_dump_json() + "\n" + masked(1).model_dump_json(), "utf-8")
    assert [r.row_index for r in read_records(path)] == [0, 1]
    with JsonlRecordWriter(path) as writer:
        writer.write(invalid_row(2))
    assert [r.row_index for r in read_records(path)] == [0, 1, 2]


def test_a_bad_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(
        completed(0).model_dump_json()
        + "\n"
        + '{"rollout_id": "x"}\n'
        + masked(1).model_dump_json()
        + "\n",
        encoding="utf-8",
    )
    records = read_records(path)
    assert next(records).row_index == 0
    with pytest.raises(RecordReadError, match=r"line 2 is not a valid trajectory record"):
        next(records)


def test_parquet_round_trip(tmp_path: Path) -> None:
    records = [*sample_records(), *(completed(i, i % 3) for i in range(4, 11))]
    path = tmp_path / "trajectories.parquet"
    assert records_to_parquet(iter(records), path, batch_rows=4) == len(records)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 3
    assert parquet.schema_arrow.field("messages").type == "string"
    scores_type = parquet.schema_arrow.field("scores").type
    assert pa.types.is_map(scores_type)
    assert pa.types.is_float64(scores_type.item_type)
    back = list(read_parquet_records(path, batch_rows=5))
    assert back == records
    # Messages keep exactly their own keys: no nulls added for keys other messages have.
    assert back[0].messages[3] == TOOL_RESULT
    assert "tool_calls" not in back[0].messages[4]
    assert not (tmp_path / ".trajectories.parquet.partial").exists()


def test_parquet_written_before_policy_versions_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "old.parquet"
    records_to_parquet([completed(0)], path)
    table = pq.read_table(path)
    old = table.drop_columns(["policy_version"])
    pq.write_table(old.replace_schema_metadata(table.schema.metadata), path)
    (back,) = read_parquet_records(path)
    assert back.policy_version is None
    assert back == completed(0).model_copy(update={"policy_version": None})


def test_parquet_of_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert records_to_parquet([], path) == 0
    assert list(read_parquet_records(path)) == []


def test_parquet_written_by_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"rollout_id": ["x"]}), path)
    with pytest.raises(RecordReadError, match="not written by records_to_parquet"):
        list(read_parquet_records(path))


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> Iterator[TrajectoryRecord]:
        yield completed(0)
        raise RuntimeError("source failed")

    path = tmp_path / "trajectories.parquet"
    with pytest.raises(RuntimeError, match="source failed"):
        records_to_parquet(broken(), path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "done"},
        {"status": "failed", "error": {"category": "network", "message": "x"}},
        {"finish_reason": "aborted"},
        {"status": "masked"},  # a masked record must say why
        {"status": "invalid"},  # so must an invalid one
        {"row_index": -1},
        {"reward": float("nan")},
        {"scores": {SCORE: float("inf")}},
        {"unknown_field": 1},
    ],
)
def test_validation_rejects_bad_values(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"rollout_id": "r", "row_index": 0, "status": "completed"}
    fields.update(changes)
    with pytest.raises(ValidationError):
        TrajectoryRecord.model_validate(fields)


def test_every_error_category_is_accepted() -> None:
    for category in ("tool", "sandbox", "inference", "reward", "timeout", "dataset"):
        record = TrajectoryRecord(
            rollout_id="r",
            row_index=0,
            status="failed",
            error=RecordError(category=category, message="m"),
        )
        assert record.error is not None and record.error.category == category


def test_eval_views() -> None:
    record = completed(3, 2)
    assert record.to_eval_run() == {
        "row_index": 3,
        "run_index": 2,
        "success": True,
        "scores": {SCORE: 1.0, "reward_rubric.judge:score": 0.25},
        "duration_ms": 210.5,
        "tokens": 860,
        "model_tag": None,
        "error": None,
    }
    failed = masked(1).to_eval_run()
    assert (failed["success"], failed["error"], failed["model_tag"]) == (
        False,
        "tool server unreachable",
        "baseline",
    )
    invalid = invalid_row().to_eval_run()
    assert (invalid["success"], invalid["scores"], invalid["error"]) == (
        False, {}, "data.jsonl line 3: 'ground_truth' cannot be empty")
    sample = record.to_eval_sample()
    assert sample == {
        "row_index": 3,
        "run_index": 2,
        "model_tag": None,
        "messages": record.messages,
    }
