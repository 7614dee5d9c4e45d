"""Progress of a local run: records counted from committed parts as they land, and drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from rollout_operator.local.progress import CommitTracker, ProgressState, ProgressView
from rollout_operator.runtime.storage import open_store

REF = "reward_fn.compute_reward:numbers_match_reward"


def _record(row: int, sample: int, status: str, score: float | None = None, *,
            category: str | None = None, finish: str | None = None, attempt: int = 0) -> bytes:
    record: dict[str, Any] = {"row_index": row, "sample_index": sample, "status": status,
                              "scores": {REF: score} if score is not None else {},
                              "attempt": attempt, "finish_reason": finish}
    if category is not None:
        record["error"] = {"category": category, "message": "it broke"}
    return json.dumps(record).encode() + b"\n"


async def test_tracker_reads_each_part_once_and_counts_each_item_once(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    state = ProgressState(total=6)
    tracker = CommitTracker(store, state)
    await tracker.poll()
    assert state.done == 0
    await store.put("shards/0/part-000001.jsonl",
                    _record(0, 0, "completed", 1.0) + _record(0, 1, "completed", 0.0))
    await tracker.poll()
    assert (state.completed, state.means()) == (2, {REF: 0.5})
    await store.put("shards/1/part-000001.jsonl",
                    _record(1, 0, "failed") + _record(1, 1, "masked"))
    # a second attempt of shard 0 committed an item again: counted once, as aggregate does
    await store.put("shards/0/part-000002.jsonl",
                    _record(0, 1, "completed", 1.0) + _record(2, 0, "completed", 1.0))
    await store.put("shards/1/part-000002.jsonl", _record(3, 0, "invalid"))
    await tracker.poll()
    await tracker.poll()
    assert (state.done, state.completed, state.failed, state.masked, state.invalid) == (
        6, 3, 1, 1, 1)
    assert state.as_dict()["invalid"] == 1
    assert state.means() == {REF: 2 / 3}
    assert state.as_dict()["scoreMeans"] == {REF: 2 / 3}


async def test_tracker_counts_a_masked_rollout_run_again_once(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    state = ProgressState(total=2)
    tracker = CommitTracker(store, state)
    await store.put("shards/0/part-000001.jsonl",
                    _record(0, 0, "masked") + _record(1, 0, "masked"))
    await tracker.poll()
    assert (state.done, state.masked) == (2, 2)
    retried = json.loads(_record(0, 0, "completed", 1.0))
    again = json.loads(_record(1, 0, "masked"))
    await store.put("shards/0/part-000002.jsonl",
                    json.dumps({**retried, "attempt": 1}).encode() + b"\n"
                    + json.dumps({**again, "attempt": 1}).encode() + b"\n")
    await tracker.poll()
    assert (state.done, state.completed, state.masked) == (2, 1, 1)
    assert state.means() == {REF: 1.0}
    await store.put("shards/0/part-000003.jsonl", _record(0, 0, "masked"))  # a raced writer
    await tracker.poll()
    assert (state.done, state.completed, state.masked) == (2, 1, 1)


def test_rate_and_eta_count_only_this_invocations_items() -> None:
    state = ProgressState(total=100, completed=40, resumed=40, started=0.0)
    assert state.rate(now=10.0) is None  # nothing new yet
    state.completed = 60
    assert state.rate(now=10.0) == 2.0
    assert state.eta_s() is not None


def test_plain_lines_and_summary_table() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    view = ProgressView(console, title="calc (default/calc-1234abcd)", live=False)
    view.set_phase("sync", "using [weird] commit")
    state = ProgressState(total=4, completed=3, failed=1, score_sums={REF: 2.0},
                          score_counts={REF: 3})
    view.start_work(state)
    view.stop_work()
    view.summary({"state": "Succeeded", "summary": {
        "progress": {"total": 4, "completed": 3, "failed": 1, "masked": 0},
        "summary": {REF: {"mean": 0.5, "std": 0.5, "min": 0.0, "max": 1.0,
                          "pass_at_k": {"1": 0.5}, "prompts": 2, "rollouts": 4}},
        "artifacts": {"results": "file:///out/results.json"}}})
    text = console.export_text()
    assert "using [weird] commit" in text
    assert "2 prompts, 4 rollouts" in text
    assert "4/4 (100%) done, mean numbers_match_reward 0.667, 1 failed, 0 masked" in text
    assert "calc (default/calc-1234abcd): Succeeded" in text
    assert "0.500" in text and "@1 0.50" in text
    assert "records 4: 3 completed, 1 failed, 0 masked, 0 invalid" in text
    assert "file:///out/results.json" in text


def test_summary_table_of_a_run_with_nothing_scored() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    ProgressView(console, title="calc", live=False).summary({"state": "Succeeded", "summary": {
        "progress": {"total": 2, "completed": 0, "failed": 0, "masked": 2, "invalid": 0},
        "summary": {REF: {"mean": None, "std": None, "min": None, "max": None}}}})
    text = console.export_text()
    assert "0.000" not in text and "records 2: 0 completed, 0 failed, 2 masked" in text


def test_live_panel_renders() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    view = ProgressView(console, title="calc", live=True)
    view.phase = "work"
    view.start_work(ProgressState(total=10, completed=5, score_sums={REF: 5.0},
                                  score_counts={REF: 5}))
    view.stop_work()
    text = console.export_text()
    assert "5/10 (50%)" in text and "mean 1.000" in text and "work" in text


async def test_tracker_counts_failures_by_category_and_finish_reasons(tmp_path: Path) -> None:
    store = open_store(tmp_path.as_uri())
    state = ProgressState(total=5)
    tracker = CommitTracker(store, state)
    await store.put("shards/0/part-000001.jsonl",
                    _record(0, 0, "completed", 1.0, finish="stop")
                    + _record(0, 1, "completed", 0.0, finish="length")
                    + _record(1, 0, "failed", category="model", finish="stop")
                    + _record(1, 1, "masked", category="sandbox")
                    + _record(2, 0, "invalid", category="dataset"))
    await tracker.poll()
    assert state.failure_categories == {"model": 1, "sandbox": 1, "dataset": 1}
    assert state.finish_reasons == {"stop": 2, "length": 1}
    # the masked rollout ran again and completed: its category is no longer counted
    await store.put("shards/0/part-000002.jsonl",
                    _record(1, 1, "completed", 1.0, finish="stop", attempt=1))
    await tracker.poll()
    assert state.failure_categories == {"model": 1, "dataset": 1}
    assert state.finish_reasons == {"stop": 3, "length": 1}
    assert state.as_dict()["failures"] == {"model": 1, "dataset": 1}


def test_plain_progress_prints_one_line_per_ten_percent() -> None:
    console = Console(record=True, width=60, force_terminal=False)
    view = ProgressView(console, title="calc", live=False)
    state = ProgressState(total=200)
    view.start_work(state)
    for done in range(1, 201):
        state.completed = done
        state.score_sums, state.score_counts = {REF: float(done)}, {REF: done}
        view.refresh()
        view.refresh()
    view.stop_work()
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert [line.split(" ")[0] for line in lines] == [f"{20 * i}/200" for i in range(11)]
    assert lines[-1].startswith("200/200 (100%) done")
    assert max(len(line) for line in lines) > 60  # long lines are kept whole, not wrapped
    assert "\r" not in console.export_text()


def test_plain_progress_says_where_the_work_stopped() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    view = ProgressView(console, title="calc", live=False)
    state = ProgressState(total=100)
    view.start_work(state)
    state.completed, state.failed = 14, 1
    state.failure_categories = {"tool": 1}
    view.refresh()  # 15%: past the 10% step
    state.completed = 17
    view.refresh()  # still in the 10% step: nothing new
    view.stop_work()
    lines = console.export_text().splitlines()
    assert lines == ["0/100 (0%) done, 0 failed, 0 masked",
                     "15/100 (15%) done, 1 failed, 0 masked (tool 1)",
                     "18/100 (18%) done, 1 failed, 0 masked (tool 1)"]


def test_live_panel_shows_failures_by_category_and_finish_reasons() -> None:
    console = Console(record=True, width=120, force_terminal=True)
    view = ProgressView(console, title="calc", live=True)
    view.start_work(ProgressState(total=4, completed=2, failed=2,
                                  failure_categories={"model": 2},
                                  finish_reasons={"stop": 3, "length": 1}))
    view.stop_work()
    text = console.export_text()
    assert "failures by category: model 2" in text and "finish reasons: stop 3, length 1" in text
