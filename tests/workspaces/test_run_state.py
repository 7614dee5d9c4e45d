"""The pure parts of a run: dataset selection, the summary and pass@k, the journal's replay,
the source digest and ATIF validation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.workspaces import atif
from rollout_operator.workspaces.dataset import format_selection, load_rows, parse_rows_selector
from rollout_operator.workspaces.errors import WorkspaceError
from rollout_operator.workspaces.source_digest import source_digest
from rollout_operator.workspaces.state import Journal
from rollout_operator.workspaces.summary import ItemOutcome, summarize


def test_rows_selector_and_its_manifest_form() -> None:
    assert parse_rows_selector("3,7,10-12") == [3, 7, 10, 11, 12]
    assert format_selection([0, 1, 2, 3, 4]) == "0-4"
    assert format_selection([3, 7, 10, 11, 12]) == "3,7,10-12"
    with pytest.raises(WorkspaceError, match="is not a row index"):
        parse_rows_selector("3-1")


def test_dataset_rules(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in [
        {"user_prompt": "a", "ground_truth": 4, "extra": "ignored"},
        {"system_prompt": "s", "user_prompt": "b", "label": "x"},
        {"metadata": {"task": "t"}},
        {"user_prompt": "c", "ground_truth": "y", "metadata": "{}"},
    ]) + "\n")
    rows, total = load_rows(data, limit=None, rows=[1, 2, 3])
    assert total == 4
    assert [(row.row_index, row.source_row_index) for row in rows] == [(0, 1), (1, 2), (2, 3)]
    assert rows[0].messages == [{"role": "system", "content": "s"},
                                {"role": "user", "content": "b"}]
    assert (rows[1].messages, rows[1].label, rows[1].metadata) == ([], None, {"task": "t"})
    assert rows[2].metadata is None  # {} counts as absent
    first, _ = load_rows(data, limit=1, rows=None)
    assert first[0].label == "4"
    data.write_text(json.dumps({"user_prompt": "no label"}) + "\n")
    with pytest.raises(WorkspaceError, match="ground_truth"):
        load_rows(data, limit=None, rows=None)


def _item(row: int, run: int, status: str, reward: float | None, tokens: int = 10
          ) -> ItemOutcome:
    return ItemOutcome(row, run, status, reward, tokens)


def test_summary_counts_failed_against_the_pass_rate_not_the_rewards() -> None:
    summary = summarize([_item(0, 0, "success", 1.0), _item(1, 0, "failed", None),
                         _item(2, 0, "skipped", None), _item(3, 0, "success", 0.5)],
                        pass_threshold=1.0, n=1)
    assert summary["completed_samples"] == 3 and summary["graded"] == 2
    assert summary["pass_rate"] == pytest.approx(1 / 3)
    assert summary["reward_stats"] == {"mean": 0.75, "median": 0.75, "std": 0.25,
                                       "min": 0.5, "max": 1.0}
    assert "pass_at_k" not in summary


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    items = [_item(0, k, "success", reward) for k, reward in enumerate([1.0, 0.0, 0.0, 0.0])]
    items += [_item(1, k, "success", 1.0) for k in range(4)]
    summary = summarize(items, pass_threshold=1.0, n=4)
    assert summary["n_runs"] == 4
    expected = [(k, (1 - math.comb(3, k) / math.comb(4, k) + 1.0) / 2) for k in (1, 2, 4)]
    assert [p["k"] for p in summary["pass_at_k"]] == [k for k, _ in expected]
    assert [p["value"] for p in summary["pass_at_k"]] == pytest.approx([v for _, v in expected])


def test_the_journal_keeps_the_last_record_and_drops_a_torn_tail(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "events.jsonl")
    journal.append({"row_index": 0, "run_index": 0, "rollout_id": "a", "status": "failed",
                    "reward": None})
    journal.append({"row_index": 0, "run_index": 0, "rollout_id": "b", "status": "success",
                    "reward": 1.0})
    with journal.path.open("a") as handle:
        handle.write('{"row_index": 1, "run_index": 0, "status": "succ')
    replayed = journal.replay()
    assert list(replayed) == [(0, 0)] and replayed[(0, 0)]["rollout_id"] == "b"
    assert "reward" not in json.loads(journal.path.read_text().splitlines()[0])  # no nulls
    journal.append({"row_index": 1, "run_index": 0, "rollout_id": "c", "status": "skipped"})
    assert sorted(journal.replay()) == [(0, 0), (1, 0)]


def test_the_source_digest_ignores_environments_and_sees_edits(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    before = source_digest(tmp_path)
    for ignored in (".venv/lib/x.py", "__pycache__/m.pyc", "pkg.egg-info/PKG-INFO"):
        (tmp_path / ignored).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / ignored).write_text("x")
    (tmp_path / "uv.lock").write_text("lock")
    assert source_digest(tmp_path) == before
    (tmp_path / "main.py").write_text("print(2)\n")
    assert source_digest(tmp_path) != before
    (tmp_path / "link").symlink_to(tmp_path / ".venv", target_is_directory=True)
    with pytest.raises(WorkspaceError, match="directory symlink"):
        source_digest(tmp_path)


def _trajectory(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema_version": "ATIF-v1.7", "session_id": "r1", "trajectory_id": "r1",
        "agent": {"name": "osmosis-rollout-sdk", "version": "0.3.8"},
        "steps": [{"step_id": 1, "source": "user", "message": "What is 2 * 3?"},
                  {"step_id": 2, "source": "agent", "message": "",
                   "tool_calls": [{"tool_call_id": "c1", "function_name": "multiply",
                                   "arguments": {"first_val": 2, "second_val": 3}}],
                   "observation": {"results": [{"source_call_id": "c1", "content": "6"}]}}],
        "final_metrics": {"total_steps": 2},
        "extra": {"osmosis": {"rollout_id": "r1", "label": "6", "reward": 1.0}},
    }
    document.update(changes)
    return document


def test_atif_validation() -> None:
    assert atif.validate(_trajectory()) == []
    assert atif.trajectory_rollout_id(_trajectory()) == "r1"
    assert atif.validate(_trajectory(schema_version="ATIF-v1.6"))
    assert atif.validate(_trajectory(unknown=1))
    bad_steps = _trajectory()
    bad_steps["steps"][1]["step_id"] = 3
    assert any("step ids" in problem for problem in atif.validate(bad_steps))
    user_with_tools = _trajectory()
    user_with_tools["steps"][0]["tool_calls"] = []
    assert any("may not carry tool_calls" in problem
               for problem in atif.validate(user_with_tools))
    nan = _trajectory()
    nan["final_metrics"]["total_cost_usd"] = float("nan")
    assert atif.validate(nan)


def test_csv_rows_and_limit(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("user_prompt,ground_truth,notes\nWhat is 2 * 3?,6,x\nWhat is 4 * 5?,20,y\n"
                    "What is 1 * 1?,1,z\n")
    rows, total = load_rows(data, limit=2, rows=None)
    assert total == 3
    assert [(row.source_row_index, row.label) for row in rows] == [(0, "6"), (1, "20")]
    assert rows[1].messages == [{"role": "user", "content": "What is 4 * 5?"}]
    with pytest.raises(WorkspaceError, match="Unsupported dataset format"):
        load_rows(tmp_path / "d.txt", limit=None, rows=None)
