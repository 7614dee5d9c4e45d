"""The trajectory record, and reading and writing it as JSONL and Parquet.

One record per (row, sample) and attempt. Infrastructure failures are `masked`, never scored:
training must not learn from a dead sandbox; a masked rollout may be run again, as a record
with the next `attempt` number. A dataset row that cannot be used (not JSON, wrong types, a
missing column, bytes that are not UTF-8) gives `invalid` records, never run and never scored.
A `failed`, `masked` or `invalid` record always carries an `error`; a `completed` one may carry
one too (a scorer that raised, for instance).

Scores, rewards, advantages and timings must be finite numbers: NaN is not standard JSON, and a
NaN reward would poison a training batch, so it is rejected when the record is built (logprobs
are the exception, see `TurnTokens`).

Parquet layout: `messages` and `metadata` are stored as JSON text columns, because their shapes
vary from row to row (content that is a string, a list of parts or null; tool calls present or
not) and Arrow structs would add null-filled keys that were never there. `scores` is a
`map<string, double>` (key order kept), `usage`, `timing` and `error` are structs, `turns` a list
of structs, `tools` a list of strings. Reading a Parquet file back gives records equal to the
ones written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_json

logger = logging.getLogger(__name__)

RecordStatus = Literal["completed", "failed", "masked", "invalid"]
FinishReason = Literal["stop", "max_turns", "length", "timeout", "error"]
ErrorCategory = Literal["tool", "sandbox", "inference", "reward", "timeout", "dataset"]

PARQUET_BATCH_ROWS = 1024
PARQUET_FORMAT_KEY = b"rollouts.dev/trajectory-record"
PARQUET_FORMAT_VERSION = b"1"

_MODEL_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecordError(BaseModel):
    """Why a trajectory failed, was masked or is invalid, by the part that failed."""

    model_config = _MODEL_CONFIG

    category: ErrorCategory
    message: str


class Usage(BaseModel):
    """Token and call counts of one trajectory."""

    model_config = _MODEL_CONFIG

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    num_llm_calls: int = Field(default=0, ge=0)
    num_tool_calls: int = Field(default=0, ge=0)


class Timing(BaseModel):
    """Wall-clock milliseconds spent in the whole trajectory and in each part of it."""

    model_config = _MODEL_CONFIG

    total_ms: float = 0.0
    llm_ms: float = 0.0
    tool_ms: float = 0.0
    scoring_ms: float = 0.0


class TurnTokens(BaseModel):
    """Token ids and logprobs of one assistant turn, when the endpoint returned them.

    A logprob may be -inf (a token the sampler could not have drawn); it is kept, and written to
    JSON as `-Infinity` so that it reads back unchanged.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    message_index: int | None = None
    """Index in `messages` of the assistant message these tokens produced."""
    prompt_token_ids: list[int] | None = None


class TrajectoryRecord(BaseModel):
    """One rollout of one dataset row: the conversation, its scores and how it went."""

    model_config = _MODEL_CONFIG

    rollout_id: str
    row_index: int = Field(ge=0)
    sample_index: int = Field(default=0, ge=0)
    model_tag: str | None = None
    status: RecordStatus
    finish_reason: FinishReason | None = None
    error: RecordError | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    reward: float | None = None
    advantage: float | None = None
    ground_truth: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    timing: Timing = Field(default_factory=Timing)
    turns: list[TurnTokens] = Field(default_factory=list)
    tools: list[str] | None = None
    fastmcp_version: str | None = None
    attempt: int = Field(default=0, ge=0)
    """0 for the first run of this (row, sample); a masked rollout run again gets a new record
    with the next number. Readers keep one record per (row, sample): see `runtime.shards`."""
    policy_version: str | None = None
    """The run's `spec.model.policyVersion`: which policy produced this trajectory."""

    @model_validator(mode="after")
    def _error_explains_failure(self) -> Self:
        if self.status != "completed" and self.error is None:
            raise ValueError(
                f"a {self.status} record needs an error saying why (category and message)"
            )
        return self

    def to_eval_run(self) -> dict[str, Any]:
        """This record as an entry of an eval results JSON's `runs` list.

        As `osmosis eval` writes them: a successful run has its scores and no error (a scorer
        that failed scored 0.0); a failed, masked or invalid run has its error and no scores.
        """
        success = self.status == "completed"
        return {
            "row_index": self.row_index,
            "run_index": self.sample_index,
            "success": success,
            "scores": dict(self.scores) if success else {},
            "duration_ms": round(self.timing.total_ms, 1),
            "tokens": self.usage.total_tokens,
            "model_tag": self.model_tag,
            "error": None if success or self.error is None else self.error.message,
        }

    def to_eval_sample(self) -> dict[str, Any]:
        """This record as a line of an eval `samples_*.jsonl` file."""
        return {
            "row_index": self.row_index,
            "run_index": self.sample_index,
            "model_tag": self.model_tag,
            "messages": self.messages,
        }


class RecordReadError(ValueError):
    """A record file holds a line that is not a valid record (other than a truncated last one)."""


class JsonlRecordWriter:
    """Appends records to a JSONL file, one per line, flushed after each write.

    Give it a path (opened in append mode; a partial last line left by a crashed writer is cut
    off first, so the next record starts on a line of its own) or an already open text stream
    (left open on close).
    """

    def __init__(self, target: str | os.PathLike[str] | TextIO) -> None:
        if isinstance(target, str | os.PathLike):
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            _drop_partial_last_line(path)
            self._stream: TextIO = path.open("a", encoding="utf-8")
            self._owns_stream = True
        else:
            self._stream = target
            self._owns_stream = False
        self.written = 0

    def write(self, record: TrajectoryRecord) -> None:
        self._stream.write(record.model_dump_json() + "\n")
        self._stream.flush()
        self.written += 1

    def write_many(self, records: Iterable[TrajectoryRecord]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        if self._owns_stream and not self._stream.closed:
            self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_records(
    source: str | os.PathLike[str] | TextIO,
    *,
    on_truncated: Callable[[int, str], None] | None = None,
) -> Iterator[TrajectoryRecord]:
    """Yield the records of a JSONL file (or open text stream), in order.

    A last line without a newline that does not parse is what a crashed writer leaves: it is
    skipped and reported (a warning in the log, and `on_truncated(line_number, reason)` if
    given). Any other bad line raises `RecordReadError` naming the line.
    """
    if isinstance(source, str | os.PathLike):
        with Path(source).open("r", encoding="utf-8") as stream:
            yield from _read_stream(stream, str(source), on_truncated)
    else:
        yield from _read_stream(source, getattr(source, "name", "<stream>"), on_truncated)


def _read_stream(
    stream: TextIO, name: str, on_truncated: Callable[[int, str], None] | None
) -> Iterator[TrajectoryRecord]:
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = TrajectoryRecord.model_validate_json(line)
        except ValidationError as exc:
            if not line.endswith("\n"):
                reason = (
                    f"truncated last line skipped ({len(line)} characters): {_first_error(exc)}"
                )
                logger.warning("%s line %d: %s", name, line_number, reason)
                if on_truncated is not None:
                    on_truncated(line_number, reason)
                return
            raise RecordReadError(
                f"{name} line {line_number} is not a valid trajectory record: {_first_error(exc)}"
            ) from exc
        yield record


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else str(first["msg"])


def _drop_partial_last_line(path: Path) -> None:
    """Cut an unterminated, unparsable last line so that appends start on a fresh line."""
    if not path.exists():
        return
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Find the start of the last line by scanning back in blocks.
        start = size
        block = 64 * 1024
        while start > 0:
            step = min(block, start)
            handle.seek(start - step)
            chunk = handle.read(step)
            newline = chunk.rfind(b"\n")
            if newline != -1:
                start = start - step + newline + 1
                break
            start -= step
        handle.seek(start)
        tail = handle.read()
        try:
            TrajectoryRecord.model_validate_json(tail)
        except ValidationError:
            logger.warning(
                "%s: removing a truncated last line (%d bytes) left by an interrupted writer",
                path,
                len(tail),
            )
            handle.truncate(start)
        else:
            handle.write(b"\n")


def _parquet_schema() -> Any:
    import pyarrow as pa

    error = pa.struct([("category", pa.string()), ("message", pa.string())])
    usage = pa.struct([(name, pa.int64()) for name in Usage.model_fields])
    timing = pa.struct([(name, pa.float64()) for name in Timing.model_fields])
    turn = pa.struct(
        [
            ("token_ids", pa.list_(pa.int64())),
            ("logprobs", pa.list_(pa.float64())),
            ("message_index", pa.int64()),
            ("prompt_token_ids", pa.list_(pa.int64())),
        ]
    )
    fields = [
        ("rollout_id", pa.string()),
        ("row_index", pa.int64()),
        ("sample_index", pa.int64()),
        ("model_tag", pa.string()),
        ("status", pa.string()),
        ("finish_reason", pa.string()),
        ("error", error),
        ("messages", pa.string()),
        ("scores", pa.map_(pa.string(), pa.float64())),
        ("reward", pa.float64()),
        ("advantage", pa.float64()),
        ("ground_truth", pa.string()),
        ("metadata", pa.string()),
        ("usage", usage),
        ("timing", timing),
        ("turns", pa.list_(turn)),
        ("tools", pa.list_(pa.string())),
        ("fastmcp_version", pa.string()),
        ("attempt", pa.int64()),
        ("policy_version", pa.string()),
    ]
    if [name for name, _ in fields] != list(TrajectoryRecord.model_fields):
        raise RuntimeError("the Parquet layout no longer matches TrajectoryRecord's fields")
    metadata = {PARQUET_FORMAT_KEY: PARQUET_FORMAT_VERSION, b"json_columns": b"messages,metadata"}
    return pa.schema(fields, metadata=metadata)


def _to_parquet_row(record: TrajectoryRecord) -> dict[str, Any]:
    row = record.model_dump(exclude={"messages", "metadata", "scores"})
    row["messages"] = to_json(record.messages).decode()
    row["metadata"] = to_json(record.metadata).decode()
    row["scores"] = list(record.scores.items())
    return row


def _from_parquet_row(row: dict[str, Any]) -> TrajectoryRecord:
    if row.get("attempt") is None:  # written before records had attempts
        row.pop("attempt", None)
    row["messages"] = json.loads(row["messages"])
    row["metadata"] = json.loads(row["metadata"])
    row["scores"] = dict(row["scores"] or ())
    return TrajectoryRecord.model_validate(row)


def records_to_parquet(
    records: Iterable[TrajectoryRecord],
    path: str | os.PathLike[str],
    *,
    batch_rows: int = PARQUET_BATCH_ROWS,
) -> int:
    """Write records to a Parquet file `batch_rows` at a time (one row group each).

    The file is written under a temporary name and renamed when complete, so a reader never
    sees half a file. Returns the number of records written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    schema = _parquet_schema()
    written = 0
    try:
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            batch: list[dict[str, Any]] = []
            for record in records:
                batch.append(_to_parquet_row(record))
                if len(batch) >= batch_rows:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    written += len(batch)
                    batch = []
            if batch:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                written += len(batch)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def read_parquet_records(
    path: str | os.PathLike[str], *, batch_rows: int = PARQUET_BATCH_ROWS
) -> Iterator[TrajectoryRecord]:
    """Yield the records of a Parquet file written by `records_to_parquet`, batch by batch."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    metadata = parquet.schema_arrow.metadata or {}
    if metadata.get(PARQUET_FORMAT_KEY) != PARQUET_FORMAT_VERSION:
        raise RecordReadError(
            f"{path} was not written by records_to_parquet (no "
            f"{PARQUET_FORMAT_KEY.decode()}={PARQUET_FORMAT_VERSION.decode()} schema metadata)"
        )
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            yield _from_parquet_row(row)
