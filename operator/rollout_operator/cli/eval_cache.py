"""The eval result cache: resume an interrupted `rolloutctl eval` without redoing finished runs.

Layout, as `osmosis eval` keeps it: `<cache>/<model>/<dataset-stem>/<unix_ts>_<task_id>.json` in the
results schema (status `in_progress` or `completed`), compact JSON as 0.2.17 writes it. Beside
it, `<same>.runs.jsonl` is an append-only journal of finished runs, flushed every
`_JOURNAL_FLUSH_RUNS` runs or `_JOURNAL_FLUSH_S` seconds, before every rewrite of the JSON file and
when the cache is closed (Ctrl-C and SIGTERM close it), so an interrupted eval loses nothing and a
killed process at most the last half second. The JSON file is rewritten at most every few seconds
(less often while a rewrite costs more, so its cost stays a small share of the run) and at the
end, which keeps long evals O(n).
Task ids, fingerprints and folder names are computed exactly as 0.2.17 does
(`eval_task_identity`), the lock is `<task_id>.lock` in the same folder and logged conversations
go to `<same>.jsonl`, so `osmosis eval` and `rolloutctl eval` resume each other's tasks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from rollout_operator.cli.eval_task_identity import sanitize_path_part

RunKey = tuple[int, int, str | None]
"""(row_index, run_index, model_tag)"""

RESULTS_VERSION = 1
_WRITE_INTERVAL_S = 2.0
_WRITE_SHARE = 0.02
"""Periodic rewrites of the JSON file take at most this share of the wall time."""
_JOURNAL_FLUSH_RUNS = 64
_JOURNAL_FLUSH_S = 0.5


def cache_root(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """`$OSMOSIS_CACHE_DIR/eval`, else `$XDG_CACHE_HOME/osmosis/eval`, else the home cache."""
    if environ.get("OSMOSIS_CACHE_DIR"):
        return Path(environ["OSMOSIS_CACHE_DIR"]).expanduser().resolve() / "eval"
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]).expanduser().resolve() / "osmosis" / "eval"
    return Path.home() / ".cache" / "osmosis" / "eval"


def now_iso() -> str:
    """UTC time to the second, as `osmosis eval` stamps `created_at` and `updated_at`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def task_directory(root: Path, model: str, dataset: str) -> Path:
    """`<root>/<model>/<dataset stem>`, each part named by `sanitize_path_part`."""
    return root / sanitize_path_part(model) / sanitize_path_part(Path(dataset).stem)


class CacheError(RuntimeError):
    """The task's cache cannot be used (say which file and what to do)."""


class CacheLockedError(CacheError):
    """Another eval of the same task holds the lock."""


@dataclass
class EvalCache:
    """One task's cache files, locked for the lifetime of the object (use as a context manager)."""

    directory: Path
    task_id: str
    config_hash: str
    config: dict[str, Any]
    stamp: int = field(default_factory=lambda: int(time.time()))
    created_at: str = field(default_factory=now_iso)
    runs: dict[RunKey, dict[str, Any]] = field(default_factory=dict)
    status: str = "in_progress"
    _lock: FileLock | None = None
    _journal: Any = None
    _samples: Any = None
    _last_write: float = 0.0
    _write_interval: float = _WRITE_INTERVAL_S
    _unflushed: int = 0
    _last_flush: float = 0.0

    @property
    def path(self) -> Path:
        return self.directory / f"{self.stamp}_{self.task_id}.json"

    @property
    def journal_path(self) -> Path:
        return self.path.with_suffix(".runs.jsonl")

    @property
    def samples_path(self) -> Path:
        return self.path.with_suffix(".jsonl")

    @classmethod
    def open(
        cls,
        root: Path,
        model: str,
        dataset: str,
        task_id: str,
        config_hash: str,
        config: dict[str, Any],
        fresh: bool = False,
        lock_timeout: float | None = None,
    ) -> EvalCache:
        directory = task_directory(root, model, dataset)
        directory.mkdir(parents=True, exist_ok=True)
        if lock_timeout is None:
            lock_timeout = lock_timeout_from_env()
        lock = FileLock(str(directory / f"{task_id}.lock"))
        try:
            lock.acquire(timeout=lock_timeout)
        except Timeout:
            raise CacheLockedError(
                "Another eval with the same config is already running.\n"
                f"       Lock file: {lock.lock_file}\n"
                f"       Timeout: {lock_timeout:g}s "
                "(override with OSMOSIS_EVAL_LOCK_TIMEOUT env var)\n"
                "       Wait for it to finish, or change a config parameter."
            ) from None
        existing = sorted(directory.glob(f"*_{task_id}.json"))
        if fresh:
            backup_suffix = f".backup.{int(time.time())}"
            for old in existing:
                for part in task_files(old):
                    if part.exists():
                        part.rename(part.with_name(part.name + backup_suffix))
            existing = []
        cache = cls(directory, task_id, config_hash, config, _lock=lock)
        try:
            if existing:
                cache._load(existing[-1])
        except BaseException:
            lock.release()
            raise
        return cache

    def _load(self, path: Path) -> None:
        document = json.loads(path.read_text(encoding="utf-8"))
        version = document.get("version", 0)
        if isinstance(version, int) and version > RESULTS_VERSION:
            raise CacheError(
                f"Cache file created by a newer version of osmosis (v{version}). "
                "Upgrade osmosis or use --fresh."
            )
        collision = document.get("config_hash") != self.config_hash
        if document.get("status") != "completed" and collision:
            raise CacheError(
                "Cache file belongs to a different eval configuration\n"
                "  that happens to share the same short ID (hash collision).\n"
                f"  Cached config: {str(document.get('config_hash', ''))[:16]}...\n"
                f"  Current config: {self.config_hash[:16]}...\n"
                "  This is extremely rare. Please re-run with a slightly\n"
                "  different config (e.g. add --temperature 0.7), or manually\n"
                f"  delete: {path}"
            )
        self.stamp = int(path.name.split("_", 1)[0])
        self.created_at = document.get("created_at", self.created_at)
        self.status = document.get("status", "in_progress")
        for run in document.get("runs", []):
            self.runs[run_key(run)] = run
        if self.journal_path.exists():
            for run in _read_jsonl(self.journal_path):
                self.runs[run_key(run)] = run

    def __enter__(self) -> EvalCache:
        self._journal = self.journal_path.open("a", encoding="utf-8", buffering=1 << 16)
        self._last_flush = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.flush()
        for handle in (self._journal, self._samples):
            if handle is not None:
                handle.close()
        self._journal = self._samples = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def is_done(self, key: RunKey, retry_failed: bool) -> bool:
        run = self.runs.get(key)
        return run is not None and (run["success"] or not retry_failed)

    def add(self, run: dict[str, Any], messages: list[dict[str, Any]] | None = None) -> None:
        """Record a finished run (and its conversation when samples are logged)."""
        self.runs[run_key(run)] = run
        self._journal.write(json.dumps(run) + "\n")
        self._unflushed += 1
        if messages is not None:
            if self._samples is None:
                self._samples = self.samples_path.open("a", encoding="utf-8")
            sample = {
                "row_index": run["row_index"],
                "run_index": run["run_index"],
                "model_tag": run["model_tag"],
                "messages": messages,
            }
            self._samples.write(json.dumps(sample) + "\n")
        if self._unflushed >= _JOURNAL_FLUSH_RUNS or (
            time.monotonic() - self._last_flush >= _JOURNAL_FLUSH_S
        ):
            self.flush()

    def flush(self) -> None:
        """Hand the journal and the logged conversations written so far to the OS."""
        for handle in (self._journal, self._samples):
            if handle is not None:
                handle.flush()
        self._unflushed = 0
        self._last_flush = time.monotonic()

    def ordered_runs(self) -> list[dict[str, Any]]:
        tag_order = {None: 0, "primary": 0, "baseline": 1}
        return sorted(
            self.runs.values(),
            key=lambda r: (r["row_index"], r["run_index"], tag_order.get(r["model_tag"], 2)),
        )

    def document(self, summary: dict[str, Any] | None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": RESULTS_VERSION,
            "task_id": self.task_id,
            "config_hash": self.config_hash,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": now_iso(),
            "config": self.config,
            "runs": self.ordered_runs(),
            "summary": summary,
        }
        return document

    def save(self, summary: dict[str, Any] | None = None, force: bool = True) -> None:
        """Rewrite the JSON file atomically; unforced saves are throttled."""
        now = time.monotonic()
        if not force and now - self._last_write < self._write_interval:
            return
        self.flush()
        write_json_atomic(self.path, self.document(summary))
        self._last_write = time.monotonic()
        self._write_interval = max(_WRITE_INTERVAL_S, (self._last_write - now) / _WRITE_SHARE)

    def samples(self) -> Iterator[dict[str, Any]]:
        """Logged conversations, last one per run key, in run order."""
        self.flush()
        if not self.samples_path.exists():
            return iter(())
        latest: dict[RunKey, dict[str, Any]] = {}
        for sample in _read_jsonl(self.samples_path):
            latest[run_key(sample)] = sample
        return (latest[run_key(run)] for run in self.ordered_runs() if run_key(run) in latest)


def task_files(path: Path) -> tuple[Path, Path, Path]:
    """A task's results JSON, our run journal and the logged conversations."""
    return path, path.with_suffix(".runs.jsonl"), path.with_suffix(".jsonl")


def lock_timeout_from_env() -> float:
    """`OSMOSIS_EVAL_LOCK_TIMEOUT` seconds (a positive integer), else 30."""
    raw = os.environ.get("OSMOSIS_EVAL_LOCK_TIMEOUT")
    if raw is not None:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value > 0:
            return float(value)
    return 30.0


def run_key(run: dict[str, Any]) -> RunKey:
    return (int(run["row_index"]), int(run["run_index"]), run.get("model_tag"))


def write_json_atomic(path: Path, document: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that run is simply redone


def list_cache_files(root: Path) -> Iterator[Path]:
    if root.exists():
        yield from sorted(
            p for p in root.glob("*/*/*_*.json") if not p.name.startswith(".")
        )


def read_cache_header(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    runs = document.get("runs", [])
    journal = path.with_suffix(".runs.jsonl")
    keys = {run_key(r) for r in runs}
    if journal.exists():
        keys |= {run_key(r) for r in _read_jsonl(journal)}
    return {
        "task_id": document.get("task_id"),
        "created_at": document.get("created_at"),
        "status": document.get("status"),
        "model": document.get("config", {}).get("model"),
        "dataset": document.get("config", {}).get("dataset"),
        "runs": len(keys),
        "updated_at": document.get("updated_at"),
        "path": str(path),
    }
