"""Streaming reader for prompt datasets (`.jsonl`, `.csv`, `.parquet`).

Rows are read one at a time (Parquet batch by batch), so a million-row file never sits in memory
whole. The columns, messages and errors follow the Osmosis SDK's local dataset reader:

- `system_prompt`, `user_prompt` and `ground_truth` are required, matched case-insensitively, and
  must be non-blank strings; every other column is kept unchanged (original spelling) in `extra`.
- `offset` skips raw rows and `limit` caps how many are read after that. Row indices are absolute
  (`offset + i`), and the `Row {i}: ...` validation messages use the same absolute index, so an
  error message, a record's `row_index` and `--row N` all name the same row.
- Every message that names a place in a JSONL or CSV file names its 1-based line, the line
  the row starts on, header included, the same in every command: `Row 1: ... (line 3)` from
  `test` and `eval`, `line 3: ...` from `validate` and a run's records, `Invalid JSON at line
  3`, `Invalid CSV at line 3`.
- Blank JSONL lines are not rows; a JSONL line that is not valid JSON (or not UTF-8) still
  occupies a row index, so indices agree with `count_rows`. Rows skipped by `offset` are not
  parsed.

`iter_rows` (what `rolloutctl test` and `eval` read with) raises at the first bad row, with the
messages above. `iter_rows_lenient` (runs: `rolloutctl run`, the workers, sync's check) turns a
bad row into a `BadRow` and goes on; its messages name the file and the 1-based line of the file
where the row starts (a Parquet row has no line: its row index is named instead). A JSONL line
that is not UTF-8 is a bad row there; so is a CSV row with bytes that are not.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import xxhash

from rollout_operator.runtime.errors import DatasetParseError, DatasetValidationError

REQUIRED_COLUMNS: tuple[str, ...] = ("ground_truth", "user_prompt", "system_prompt")
"""In the order upstream reports them in `Missing required columns: [...]`."""

_REQUIRED_SET = frozenset(REQUIRED_COLUMNS)

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".parquet", ".jsonl", ".csv")

_PARQUET_BATCH_ROWS = 1024
_HASH_CHUNK_BYTES = 1 << 20
_CSV_FIELD_LIMIT = 2**31 - 1

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class DatasetRow:
    """One validated row; `row_index` is absolute in the file (offset included)."""

    row_index: int
    system_prompt: str
    user_prompt: str
    ground_truth: str
    extra: dict[str, Any]

    def messages(self) -> list[dict[str, Any]]:
        """The prompt as OpenAI chat messages: `[system, user]`."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.user_prompt},
        ]

    def as_dict(self) -> dict[str, Any]:
        """The normalised row scorers get as `extra_info` / `metadata`.

        The three required columns under their canonical names, then every extra column as
        written in the file; no `row_index` or execution mode.
        """
        row: dict[str, Any] = {
            "ground_truth": self.ground_truth,
            "user_prompt": self.user_prompt,
            "system_prompt": self.system_prompt,
        }
        row.update(self.extra)
        return row


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that cannot be used: what is wrong with it, and where it is in the file."""

    row_index: int
    problem: str
    line: int | None = None
    """The 1-based line of the file where the row starts (JSONL, CSV); None in Parquet."""
    source: str = ""
    """The file as its user names it (a repo-relative path, a URL), for `message`."""

    @property
    def location(self) -> str:
        """`line N` of the file, or `row N` (the row index) in a Parquet file."""
        return f"line {self.line}" if self.line is not None else f"row {self.row_index}"

    @property
    def message(self) -> str:
        """`<source> line N: <problem>`."""
        where = f"{self.source} {self.location}" if self.source else self.location
        return f"{where}: {self.problem}"


class _Invalid(ValueError):
    """What is wrong with a row, without saying which row (callers add that)."""


def validate_row(raw: Any, row_index: int, line: int | None = None) -> DatasetRow:
    """Check one raw row (a mapping of column to value) and build a `DatasetRow`.

    Raises `DatasetValidationError` with the upstream message for the first problem found,
    followed by the row's 1-based `line` in the file when it has one.
    """
    try:
        return _validated(raw, row_index)
    except _Invalid as exc:
        where = f" (line {line})" if line is not None else ""
        raise DatasetValidationError(f"Row {row_index}: {exc}{where}") from None


def _validated(raw: Any, row_index: int) -> DatasetRow:
    if not isinstance(raw, dict):
        if not isinstance(raw, Mapping):
            raise _Invalid(f"Expected object, got {type(raw).__name__}")
        raw = dict(raw)
    found: dict[str, str] = {}  # canonical name -> the spelling used in the file
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        lowered = key.lower() if isinstance(key, str) else str(key).lower()
        if lowered not in _REQUIRED_SET:
            extra[key] = value
        elif lowered in found:
            raise _Invalid(
                f"column '{lowered}' appears more than once "
                f"({found[lowered]!r} and {key!r}); keep one of them"
            )
        else:
            found[lowered] = key

    if len(found) < len(REQUIRED_COLUMNS):
        missing = [name for name in REQUIRED_COLUMNS if name not in found]
        raise _Invalid(f"Missing required columns: {missing}")

    values: dict[str, str] = {}
    for name in REQUIRED_COLUMNS:
        value = raw[found[name]]
        if value is None:
            raise _Invalid(f"'{name}' cannot be null")
        if not isinstance(value, str):
            raise _Invalid(f"'{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise _Invalid(f"'{name}' cannot be empty")
        values[name] = value

    return DatasetRow(
        row_index=row_index,
        system_prompt=values["system_prompt"],
        user_prompt=values["user_prompt"],
        ground_truth=values["ground_truth"],
        extra=extra,
    )


def iter_rows(path: PathLike, *, offset: int = 0, limit: int | None = None) -> Iterator[DatasetRow]:
    """Yield the validated rows of the window `[offset, offset + limit)`, one at a time.

    A missing file or an unsupported extension raises at once; a row's error is raised when
    that row is reached.
    """
    raw_rows = _open_window(path, offset, limit)
    return _strict(raw_rows)


def iter_rows_lenient(
    path: PathLike, *, offset: int = 0, limit: int | None = None, source: str | None = None
) -> Iterator[DatasetRow | BadRow]:
    """Like `iter_rows`, but a row that cannot be used comes back as a `BadRow`.

    Per-row problems (a missing, blank or wrongly typed column, a JSONL line that is not JSON
    or not UTF-8, a CSV row with too many fields or bytes that are not UTF-8) become `BadRow`s
    whose messages name `source` (default: `path`) and the row's line; errors that make the
    rest of the file unreadable (a broken Parquet file, a CSV header that is not UTF-8,
    malformed CSV quoting) still raise `DatasetParseError`.
    """
    raw_rows = _open_window(path, offset, limit)
    return _lenient(raw_rows, str(path) if source is None else source)


def validate_dataset(path: PathLike, offset: int = 0, limit: int | None = None) -> int:
    """Read and validate the whole window before a batch starts; returns its row count."""
    count = 0
    for _ in iter_rows(path, offset=offset, limit=limit):
        count += 1
    return count


def count_rows(path: PathLike) -> int:
    """Number of rows in the file, without validating them.

    Parquet answers from its metadata, JSONL counts non-blank lines without parsing JSON, CSV
    counts records (quoted fields may span lines, so it is tokenised but no dicts are built).
    """
    file = _checked_path(path)
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        return _parquet_file(file).metadata.num_rows  # type: ignore[no-any-return]
    if suffix == ".jsonl":
        count = 0
        with file.open("rb") as handle:
            for line in handle:
                if line.strip():
                    count += 1
        return count
    with _open_text(file) as handle:
        reader = _csv_reader(handle)
        try:
            records = sum(1 for record in reader if record)
        except csv.Error as exc:
            raise DatasetParseError(f"Invalid CSV at line {reader.line_num}: {exc}") from exc
    return max(records - 1, 0)


def dataset_fingerprint(path: PathLike) -> str:
    """xxh3-128 hex digest of the file's bytes, read in chunks: changes when the content does."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Dataset file not found: {path}")
    hasher = xxhash.xxh3_128()
    with file.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


class _RowProblem:
    """A per-row parse problem carried through the raw stream (a JSONL line that is not JSON or
    not UTF-8, a CSV row too wide or not UTF-8): what `iter_rows` raises, and the problem a
    `BadRow` names."""

    __slots__ = ("problem", "strict_message")

    def __init__(self, strict_message: str, problem: str) -> None:
        self.strict_message = strict_message
        self.problem = problem


_RawItem = tuple[int, int | None, Any]
"""A row index, the line the row starts on (None in Parquet), and either the raw row or a
`_RowProblem`."""


def _strict(raw_rows: Iterator[_RawItem]) -> Iterator[DatasetRow]:
    for row_index, line, raw in raw_rows:
        if isinstance(raw, _RowProblem):
            raise DatasetParseError(raw.strict_message)
        yield validate_row(raw, row_index, line)


def _lenient(raw_rows: Iterator[_RawItem], source: str) -> Iterator[DatasetRow | BadRow]:
    for row_index, line, raw in raw_rows:
        if isinstance(raw, _RowProblem):
            yield BadRow(row_index, raw.problem, line, source)
            continue
        try:
            yield _validated(raw, row_index)
        except _Invalid as exc:
            yield BadRow(row_index, str(exc), line, source)


def _open_window(path: PathLike, offset: int, limit: int | None) -> Iterator[_RawItem]:
    if offset < 0:
        raise ValueError(f"offset must be 0 or more, got {offset}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    file = _checked_path(path)
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(file, offset)
    elif suffix == ".jsonl":
        rows = _jsonl_rows(file, offset)
    else:
        rows = _csv_rows(file, offset)
    if limit is None:
        return rows
    return itertools.islice(rows, limit)


def _checked_path(path: PathLike) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"Dataset file not found: {path}")
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DatasetParseError(
            f"Unsupported file format: {suffix}. "
            "Supported formats: .parquet (recommended), .jsonl, .csv"
        )
    if file.is_dir():
        raise DatasetParseError(f"Dataset path is a directory, not a file: {path}")
    return file


def _open_text(file: Path) -> TextIO:
    # utf-8-sig: a byte-order mark written by spreadsheet tools is not part of the first header.
    # Bytes that are not UTF-8 are kept as lone surrogates, so that one bad row does not make
    # the whole file unreadable: `_has_bad_bytes` finds them in the row's values.
    return file.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")


def _has_bad_bytes(values: list[str]) -> bool:
    """Whether CSV values hold bytes that were not UTF-8 (read as lone surrogates)."""
    for value in values:
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _not_utf8(file: Path, where: str) -> str:
    return f"Dataset file is not valid UTF-8: {file} ({where}); save it as UTF-8 and try again"


_NOT_UTF8_ROW = "not valid UTF-8 (byte {byte} of the line); save the file as UTF-8"


def _jsonl_rows(file: Path, offset: int) -> Iterator[_RawItem]:
    # Lines are read as bytes and decoded one by one: a line that is not UTF-8 is one bad row.
    row_index = 0
    position = 0
    with file.open("rb") as handle:
        for line_number, data in enumerate(handle, start=1):
            start, position = position, position + len(data)
            if line_number == 1 and data.startswith(codecs.BOM_UTF8):
                data, start = data[len(codecs.BOM_UTF8):], start + len(codecs.BOM_UTF8)
            if not data.strip():
                continue
            if row_index < offset:
                row_index += 1
                continue
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield row_index, line_number, _RowProblem(
                    _not_utf8(file, f"line {line_number}, byte offset {start + exc.start}"),
                    _NOT_UTF8_ROW.format(byte=exc.start + 1),
                )
                row_index += 1
                continue
            try:
                raw: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                yield row_index, line_number, _RowProblem(
                    f"Invalid JSON at line {line_number}: {exc}",
                    f"not valid JSON: {exc.msg} (column {exc.colno})",
                )
            else:
                yield row_index, line_number, raw
            row_index += 1


def _csv_reader(handle: TextIO) -> Any:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        # Prompts can be longer than the csv module's 128 KiB default.
        csv.field_size_limit(min(_CSV_FIELD_LIMIT, sys.maxsize))
    return csv.reader(handle)


def _csv_rows(file: Path, offset: int) -> Iterator[_RawItem]:
    with _open_text(file) as handle:
        reader = _csv_reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                return
            if _has_bad_bytes(header):
                raise DatasetParseError(_not_utf8(file, "the header, line 1"))
            width = len(header)
            row_index = 0
            end = reader.line_num  # the last line read so far: the next record starts after it
            for record in reader:
                line, end = end + 1, reader.line_num
                if not record:  # a blank line is not a row
                    continue
                if row_index < offset:
                    row_index += 1
                    continue
                if len(record) > width:
                    too_wide = (f"has more columns than the header ({len(record)} values for "
                                f"{width} columns; quote values that contain commas)")
                    yield row_index, line, _RowProblem(
                        f"Invalid CSV at line {line}: the row {too_wide}", too_wide)
                elif _has_bad_bytes(record):
                    yield row_index, line, _RowProblem(
                        _not_utf8(file, f"line {line}"),
                        "not valid UTF-8; save the file as UTF-8")
                else:
                    # Missing trailing values read as null, as with csv.DictReader.
                    raw: dict[str, Any] = dict.fromkeys(header)
                    raw.update(zip(header, record, strict=False))
                    yield row_index, line, raw
                row_index += 1
        except csv.Error as exc:
            raise DatasetParseError(f"Invalid CSV at line {reader.line_num}: {exc}") from exc


def _parquet_file(file: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DatasetParseError(f"Error reading Parquet file: {exc}") from exc


def _parquet_rows(file: Path, offset: int) -> Iterator[_RawItem]:
    parquet = _parquet_file(file)
    metadata = parquet.metadata
    # Start at the row group holding `offset` instead of decoding the groups before it.
    first_group = 0
    skipped = 0
    while first_group < metadata.num_row_groups:
        group_rows = metadata.row_group(first_group).num_rows
        if skipped + group_rows > offset:
            break
        skipped += group_rows
        first_group += 1
    if first_group >= metadata.num_row_groups:
        return
    to_skip = offset - skipped
    row_index = offset
    groups = list(range(first_group, metadata.num_row_groups))
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=groups):
            if to_skip:
                if to_skip >= batch.num_rows:
                    to_skip -= batch.num_rows
                    continue
                batch = batch.slice(to_skip)
                to_skip = 0
            for raw in batch.to_pylist():
                yield row_index, None, raw
                row_index += 1
    except DatasetParseError:
        raise
    except Exception as exc:
        raise DatasetParseError(f"Error reading Parquet file: {exc}") from exc
