"""Scorers loaded from a repo: mode detection, sync and async, failures scored 0.0 (check 15)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.runtime.errors import EvalFnError
from rollout_operator.runtime.scoring import final_answer, load_scorers, score_trajectory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "calculator"

SCORERS = '''
import asyncio, threading

def simple(solution_str, ground_truth, extra_info=None):
    return 1.0 if solution_str.endswith(ground_truth) else 0.0

async def full(messages, ground_truth, metadata):
    await asyncio.sleep(0)
    return float(len(messages)) + (0.5 if metadata["topic"] == "math" else 0.0)

def raises(solution_str, ground_truth, extra_info=None):
    raise RuntimeError("judge exploded")

def returns_text(solution_str, ground_truth, extra_info=None):
    return "high"

def thread_name(solution_str, ground_truth, extra_info=None):
    return 1.0 if threading.current_thread() is not threading.main_thread() else 0.0

def odd(x, y):
    return 1.0

RELEASE = threading.Event()

def hangs(solution_str, ground_truth, extra_info=None):
    RELEASE.wait(10)
    return 1.0

async def hangs_async(messages, ground_truth, metadata):
    await asyncio.sleep(10)
    return 1.0
'''

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "What is 6 * 7?"},
    {"role": "assistant", "content": None, "tool_calls": []},
    {"role": "tool", "content": "42.0", "tool_call_id": "c"},
    {"role": "assistant", "content": "#### 42"},
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "scorers").mkdir()
    (tmp_path / "scorers" / "basic.py").write_text(SCORERS)
    return tmp_path


async def test_modes_failures_and_threads(repo: Path) -> None:
    refs = [f"scorers.basic:{name}" for name in
            ("simple", "full", "raises", "returns_text", "thread_name")]
    scorers = load_scorers(repo, refs)
    assert [s.mode for s in scorers] == ["simple", "full", "simple", "simple", "simple"]
    row = {"system_prompt": "s", "user_prompt": "u", "ground_truth": "42", "topic": "math"}
    outcome = await score_trajectory(scorers, MESSAGES, "42", row)
    assert outcome.scores == {
        "scorers.basic:simple": 1.0,
        "scorers.basic:full": 5.5,
        "scorers.basic:raises": 0.0,
        "scorers.basic:returns_text": 0.0,
        "scorers.basic:thread_name": 1.0,
    }
    assert set(outcome.errors) == {"scorers.basic:raises", "scorers.basic:returns_text"}
    assert "judge exploded" in outcome.errors["scorers.basic:raises"]
    assert threading.active_count() >= 1


@pytest.mark.parametrize(
    ("name", "score", "error"),
    [
        ("simple", 1.0, None),
        ("thread_name", 1.0, None),
        ("full", 5.5, None),
        ("raises", 0.0, "RuntimeError: judge exploded"),
        ("returns_text", 0.0, "TypeError: must return a number, got str"),
        ("hangs", 0.0, "timed out after 0.05s"),
        ("hangs_async", 0.0, "timed out after 0.05s"),
    ],
)
async def test_a_single_scorer(repo: Path, name: str, score: float, error: str | None) -> None:
    ref = f"scorers.basic:{name}"
    [scorer] = load_scorers(repo, [ref])
    row = {"system_prompt": "s", "user_prompt": "u", "ground_truth": "42", "topic": "math"}
    try:
        outcome = await score_trajectory([scorer], MESSAGES, "42", row, timeout_s=0.05)
    finally:
        scorer.fn.__globals__["RELEASE"].set()  # let a hung scorer's thread end
    assert outcome.scores == {ref: score}
    assert outcome.errors == ({} if error is None else {ref: error})


def test_undetectable_mode_is_rejected(repo: Path) -> None:
    with pytest.raises(EvalFnError, match=r"first parameter is 'x'\. Expected 'solution_str'"):
        load_scorers(repo, ["scorers.basic:odd"])


async def test_example_reward_through_the_decorator() -> None:
    ref = "reward_fn.compute_reward:numbers_match_reward"
    scorers = load_scorers(EXAMPLE, [ref])
    assert scorers[0].mode == "simple"
    outcome = await score_trajectory(scorers, MESSAGES, "42", {})
    assert outcome.scores == {ref: 1.0} and not outcome.errors
    wrong = await score_trajectory(scorers, MESSAGES, "41", {})
    assert wrong.scores == {ref: 0.0}


def test_final_answer_is_last_assistant_content() -> None:
    assert final_answer(MESSAGES) == "#### 42"
    assert final_answer(MESSAGES[:4]) == ""
    assert final_answer([{"role": "assistant", "content": 7}]) == "7"
