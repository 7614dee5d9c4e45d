"""Eval datasets under 0.3 rules: `user_prompt` (+ optional `system_prompt`), the label from
`ground_truth` or `label`, an optional `metadata` object; other columns are ignored. Rows are
selected by `evaluation.limit` or a `--rows` selector of source offsets."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_operator.runtime.dataset import BadRow
from rollout_operator.workspaces.errors import WorkspaceError

FORMATS = (".jsonl", ".csv", ".parquet")


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One selected row: its position in the selection and its offset in the file."""

    row_index: int
    source_row_index: int
    messages: list[dict[str, str]]
    label: str | None
    metadata: dict[str, Any] | None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_rows_selector(text: str) -> list[int]:
    """`"3,7,10-20"` as sorted unique source offsets."""
    picked: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(item) for item in part.split("-", 1))
                if first > last or first < 0:
                    raise ValueError
                picked.update(range(first, last + 1))
            else:
                value = int(part)
                if value < 0:
                    raise ValueError
                picked.add(value)
        except ValueError:
            raise WorkspaceError(f"--rows: {part!r} is not a row index or a range like 10-20"
                                 ) from None
    if not picked:
        raise WorkspaceError("--rows selects no rows")
    return sorted(picked)


def format_selection(offsets: list[int]) -> str:
    """Source offsets as ranges (`0-4`, `3,7,10-20`): what the manifest records."""
    parts: list[str] = []
    start = previous = None
    for value in offsets:
        if start is None:
            start = previous = value
        elif previous is not None and value == previous + 1:
            previous = value
        else:
            parts.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = previous = value
    if start is not None:
        parts.append(f"{start}" if start == previous else f"{start}-{previous}")
    return ",".join(parts)


def load_rows(path: Path, *, limit: int | None, rows: list[int] | None
              ) -> tuple[list[EvalRow], int]:
    """The selected rows and the number of rows in the file."""
    if path.suffix.lower() not in FORMATS:
        raise WorkspaceError(f"Unsupported dataset format {path.suffix!r}: use .jsonl, .csv or "
                             ".parquet")
    if not path.is_file():
        raise WorkspaceError(f"Dataset file not found: {path}")
    raw = list(_raw_rows(path))
    total = len(raw)
    if rows is not None:
        out_of_range = [index for index in rows if index >= total]
        if out_of_range:
            raise WorkspaceError(f"--rows: row {out_of_range[0]} is out of range (the dataset "
                                 f"has {total} rows, 0-{total - 1})")
        offsets = rows
    else:
        offsets = list(range(total if limit is None else min(limit, total)))
    selected = [_row(position, offset, raw[offset]) for position, offset in enumerate(offsets)]
    return selected, total


def iter_window(path: Path, *, offset: int, limit: int | None, source: str
                ) -> Iterator[EvalRow | BadRow]:
    """The rows of a RolloutRun's dataset window read as `eval run` reads them (the 0.3 rules:
    optional system prompt, `ground_truth` or `label`, `metadata`); a row that breaks them is a
    `BadRow` naming `source` and its position. `row_index` is the row's offset in the file."""
    for index, raw in enumerate(_raw_rows(path)):
        if index < offset:
            continue
        if limit is not None and index >= offset + limit:
            return
        try:
            yield _row(index, index, raw)
        except WorkspaceError as exc:
            yield BadRow(index, str(exc).removeprefix(f"row {index}: "), source=source)


def _raw_rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise WorkspaceError(f"{path.name} line {number}: not JSON ({exc})"
                                         ) from None
                if not isinstance(value, dict):
                    raise WorkspaceError(f"{path.name} line {number}: a row must be an object")
                yield value
    elif suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield from csv.DictReader(handle)
    else:
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()


def _row(position: int, offset: int, raw: dict[str, Any]) -> EvalRow:
    where = f"row {offset}"
    metadata = raw.get("metadata")
    if isinstance(metadata, str) and metadata.strip():
        try:
            metadata = json.loads(metadata)
        except ValueError:
            raise WorkspaceError(f"{where}: metadata is not a JSON object") from None
    if metadata in (None, "", {}):
        metadata = None
    elif not isinstance(metadata, dict):
        raise WorkspaceError(f"{where}: metadata must be an object")
    user = raw.get("user_prompt")
    system = raw.get("system_prompt")
    label_value = raw.get("ground_truth")
    if label_value in (None, ""):
        label_value = raw.get("label")
    label = None if label_value in (None, "") else str(label_value)
    if metadata is None:
        if user in (None, ""):
            raise WorkspaceError(f"{where}: user_prompt is required")
        if label is None:
            raise WorkspaceError(f"{where}: ground_truth (or label) is required")
    messages: list[dict[str, str]] = []
    if system not in (None, ""):
        messages.append({"role": "system", "content": str(system)})
    if user not in (None, ""):
        messages.append({"role": "user", "content": str(user)})
    if not messages and metadata is None:
        raise WorkspaceError(f"{where}: a row needs a prompt or metadata")
    return EvalRow(position, offset, messages, label, metadata)
