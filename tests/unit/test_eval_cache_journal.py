"""The eval cache's run journal reaches the disk in batches, before each save and on close."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rollout_operator.cli.eval_cache import _JOURNAL_FLUSH_RUNS, EvalCache, run_key


def _run(row: int, run: int = 0) -> dict[str, Any]:
    return {"row_index": row, "run_index": run, "model_tag": None, "success": True,
            "scores": {"f": 1.0}, "duration_ms": 1.0, "tokens": 3, "error": None}


def _open(root: Path) -> EvalCache:
    return EvalCache.open(root, "scripted", "data.jsonl", "abc123", "hash", {"model": "scripted"},
                          lock_timeout=1)


def _journal_keys(cache: EvalCache) -> list[tuple[int, int, str | None]]:
    lines = cache.journal_path.read_text(encoding="utf-8").splitlines()
    return [run_key(json.loads(line)) for line in lines]


def test_a_full_batch_is_on_disk_without_waiting_for_close(tmp_path: Path) -> None:
    with _open(tmp_path) as cache:
        for row in range(_JOURNAL_FLUSH_RUNS):
            cache.add(_run(row))
        assert _journal_keys(cache) == [(row, 0, None) for row in range(_JOURNAL_FLUSH_RUNS)]


def test_a_save_and_the_close_flush_what_is_left(tmp_path: Path) -> None:
    with _open(tmp_path) as cache:
        cache.add(_run(0))
        cache.add(_run(1), messages=[{"role": "user", "content": "é"}])
        cache.save()
        assert _journal_keys(cache) == [(0, 0, None), (1, 0, None)]
        assert len(cache.samples_path.read_text(encoding="utf-8").splitlines()) == 1
        cache.add(_run(2))
        path = cache.path
    assert _journal_keys(cache) == [(0, 0, None), (1, 0, None), (2, 0, None)]
    document = json.loads(path.read_text(encoding="utf-8"))
    assert [r["row_index"] for r in document["runs"]] == [0, 1]
    assert "\n" not in path.read_text(encoding="utf-8")  # compact, as osmosis eval writes it


def test_a_reopened_cache_resumes_from_the_journal(tmp_path: Path) -> None:
    with _open(tmp_path) as cache:
        cache.add(_run(0))
        cache.save()
        cache.add(_run(1))
    with _open(tmp_path) as again:
        assert sorted(again.runs) == [(0, 0, None), (1, 0, None)]
        assert again.is_done((1, 0, None), retry_failed=False)
