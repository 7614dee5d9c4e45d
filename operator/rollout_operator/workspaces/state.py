"""A named run's directory, `<root>/<run-name>/`: the lock, `manifest.json` (the resolved inputs
a resume must match), the append-only `events.jsonl` journal and its replay, and the files
written from it (`index.jsonl` = `summary.jsonl`, `progress.json`, `metrics.json`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout_operator.workspaces.errors import WorkspaceError

STATE_VERSIONS = {"rollout_protocol": "0.4", "dataset_normalization": 1, "state_schema": 1}
TERMINAL_STATUSES = frozenset({"success", "failed", "skipped"})
ItemKey = tuple[int, int]


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json(path: Path, value: Any) -> None:
    """Write `value` as indented JSON, atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


@contextlib.contextmanager
def run_lock(root: Path, name: str) -> Iterator[None]:
    """Hold `<root>/.locks/<name>.lock` for the block; refuse if another process holds it."""
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkspaceError(f"run '{name}' is in use by another `eval run`; wait for it "
                                 "to finish or pick another --name", code="RUN_LOCKED") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def changed_inputs(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The top-level input names whose values differ (`dataset`, `rollout`, `model_path`...)."""
    names = sorted(set(recorded) | set(current))
    return [name for name in names if recorded.get(name) != current.get(name)]


def refuse_changed(name: str, changed: list[str]) -> WorkspaceError:
    return WorkspaceError(
        f"run '{name}' was created with different resolved inputs, so resuming it would mix "
        f"versions inside one set of metrics. Changed: {', '.join(changed)}. Restart under the "
        "same name with --fresh (the previous results are archived, never deleted).")


def archive(run_dir: Path) -> Path:
    """Move a run directory aside as `<run>.archive-<stamp>`; the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = run_dir.with_name(f"{run_dir.name}.archive-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = run_dir.with_name(f"{run_dir.name}.archive-{stamp}-{suffix}")
    run_dir.rename(target)
    return target


class Journal:
    """`events.jsonl`: one line per terminal attempt (sorted keys, no nulls), appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def replay(self) -> dict[ItemKey, dict[str, Any]]:
        """The last record per `(row_index, run_index)`; a torn last line is dropped."""
        records: dict[ItemKey, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] and not data.endswith(b"\n"):
            lines = lines[:-1]  # an unfinished write
            with self.path.open("r+b") as handle:  # cut it off, so appends start clean
                handle.truncate(len(b"\n".join(lines)) + (1 if lines else 0))
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (isinstance(record, dict) and record.get("status") in TERMINAL_STATUSES
                    and isinstance(record.get("row_index"), int)
                    and isinstance(record.get("run_index"), int)):
                records[(record["row_index"], record["run_index"])] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        clean = {key: value for key, value in record.items() if value is not None}
        line = json.dumps(clean, sort_keys=True, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def index_line(record: dict[str, Any], *, trajectory: bool, resumed: bool) -> dict[str, Any]:
    """An `index.jsonl` row from a journal record, in the file's key order."""
    row: dict[str, Any] = {"row_index": record["row_index"], "run_index": record["run_index"],
                           "rollout_id": record["rollout_id"]}
    if trajectory:
        row["trajectory_filename"] = "trajectory.json"
    row["status"] = record["status"]
    for key in ("reward", "tokens", "duration_ms", "error_type"):
        if record.get(key) is not None:
            row[key] = record[key]
    if resumed:
        row["resumed"] = True
    return row


def write_index(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in sorted(
        rows, key=lambda row: (row["row_index"], row["run_index"])))
    for name in ("index.jsonl", "summary.jsonl"):
        temporary = run_dir / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, run_dir / name)
