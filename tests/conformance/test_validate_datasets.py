"""`rolloutctl validate` finds datasets where Osmosis repos keep them: the root and `data/`."""

from __future__ import annotations

import json
from pathlib import Path

from rollout_operator.runtime.repo_loader import find_datasets, inspect_repo
from tests.support.cli import run_cli

ROW = {"system_prompt": "s", "user_prompt": "What is 2 * 3?", "ground_truth": "6"}


def _jsonl(path: Path, rows: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(ROW) + "\n" for _ in range(rows)))
    return path


def test_datasets_at_the_root_and_under_data_are_found(tmp_path: Path) -> None:
    root = _jsonl(tmp_path / "test_data.jsonl")
    train = _jsonl(tmp_path / "data" / "train.jsonl")
    nested = _jsonl(tmp_path / "data" / "splits" / "eval.jsonl")
    _jsonl(tmp_path / "data" / ".cache" / "hidden.jsonl")  # hidden folders are skipped
    _jsonl(tmp_path / "other" / "elsewhere.jsonl")  # only the root and data/ are searched
    (tmp_path / "data" / "notes.txt").write_text("not a dataset")
    assert find_datasets(tmp_path) == sorted([root, train, nested])
    assert inspect_repo(tmp_path).datasets == sorted([root, train, nested])


def test_validate_checks_a_bad_dataset_under_data(tmp_path: Path) -> None:
    _jsonl(tmp_path / "data" / "train.jsonl")
    bad = tmp_path / "data" / "broken.jsonl"
    bad.write_text('{"system_prompt": "s", "user_prompt": "u"}\n')
    result = run_cli(["validate", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 1
    assert "broken.jsonl" in result.stdout + result.stderr
    assert "Missing required columns: ['ground_truth']" in result.stdout + result.stderr
    assert "train.jsonl" in result.stdout
