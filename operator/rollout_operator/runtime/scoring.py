"""Scoring finished trajectories with the repo's reward functions and rubrics.

A scorer is any `module:function` reference. Its mode comes from its first parameter, as in
`osmosis eval`: `solution_str` (simple: the final answer text) or `messages` (full: the whole
conversation). Sync scorers run in a worker thread so they never block the event loop; a scorer
that raises (`sys.exit` included), times out or returns a non-number is recorded as an error and
scores 0.0.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rollout_operator.runtime.errors import EvalFnError
from rollout_operator.runtime.interfaces import Message

ScorerMode = Literal["simple", "full"]


@dataclass(frozen=True, slots=True)
class Scorer:
    ref: str
    fn: Callable[..., Any]
    mode: ScorerMode
    is_async: bool


@dataclass(slots=True)
class ScoreOutcome:
    scores: dict[str, float]
    errors: dict[str, str]
    scoring_ms: float


def detect_mode(fn: Callable[..., Any]) -> ScorerMode:
    """Simple or full mode from the first parameter name (decorated functions are unwrapped)."""
    params = list(inspect.signature(fn).parameters)
    first = params[0] if params else None
    if first == "solution_str":
        return "simple"
    if first == "messages":
        return "full"
    raise EvalFnError(
        f"Cannot detect eval function mode: first parameter is '{first}'. Expected "
        "'solution_str' (simple mode) or 'messages' (full mode)."
    )


def make_scorer(ref: str, fn: Callable[..., Any]) -> Scorer:
    if not callable(fn):
        raise EvalFnError(f"'{ref}' is not callable")
    unwrapped = inspect.unwrap(fn)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(unwrapped)
    return Scorer(ref=ref, fn=fn, mode=detect_mode(fn), is_async=is_async)


def load_scorers(repo_root: str | Path, refs: Sequence[str]) -> list[Scorer]:
    """Load `module:function` references resolved from `repo_root` (raises `EvalFnError`).

    `rolloutctl test`/`eval` pass the current folder, as `osmosis eval --eval-fn` resolves them.
    """
    from rollout_operator.runtime.repo_loader import load_function

    return [make_scorer(ref, load_function(repo_root, ref)) for ref in refs]


def final_answer(messages: Sequence[Message]) -> str:
    """The last assistant message with content, as text; "" when there is none."""
    for message in reversed(messages):
        if message.get("role") == "assistant" and message.get("content") is not None:
            return str(message["content"])
    return ""


def call_kwargs(
    scorer: Scorer, messages: Sequence[Message], ground_truth: str | None, row: dict[str, Any]
) -> dict[str, Any]:
    if scorer.mode == "simple":
        return {
            "solution_str": final_answer(messages),
            "ground_truth": ground_truth,
            "extra_info": dict(row),
        }
    return {"messages": list(messages), "ground_truth": ground_truth, "metadata": dict(row)}


def as_score(value: Any) -> float:
    """A scorer's return value as a finite float (raises what a junk value deserves)."""
    if not isinstance(value, int | float):
        raise TypeError(f"must return a number, got {type(value).__name__}")
    score = float(value)
    if not math.isfinite(score):
        raise ValueError(f"returned {score}, not a finite number")
    return score


async def score_one(
    scorer: Scorer,
    messages: Sequence[Message],
    ground_truth: str | None,
    row: dict[str, Any],
    timeout_s: float | None = None,
) -> float:
    """Run one scorer; raises whatever the scorer raised (callers record it)."""
    kwargs = call_kwargs(scorer, messages, ground_truth, row)
    # A timeout scope, not `wait_for`, which on Python 3.11 adds a task (and loop turns) per call.
    async with asyncio.timeout(timeout_s):
        if scorer.is_async:
            value = await scorer.fn(**kwargs)
        else:
            value = await asyncio.to_thread(scorer.fn, **kwargs)
    return as_score(value)


async def score_trajectory(
    scorers: Sequence[Scorer],
    messages: Sequence[Message],
    ground_truth: str | None,
    row: dict[str, Any],
    timeout_s: float | None = None,
) -> ScoreOutcome:
    """Run every scorer concurrently; a failing scorer scores 0.0 and its error is kept."""
    start = time.perf_counter()
    results: list[float | BaseException]
    if len(scorers) == 1:
        # The common case, awaited in this task: `gather` would wrap it in a task of its own.
        results = [await _guarded(scorers[0], messages, ground_truth, row, timeout_s)]
    else:
        results = list(await asyncio.gather(
            *(_guarded(s, messages, ground_truth, row, timeout_s) for s in scorers)
        ))
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    for scorer, result in zip(scorers, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            scores[scorer.ref] = 0.0
            errors[scorer.ref] = describe_failure(result, timeout_s)
        else:
            scores[scorer.ref] = result
    return ScoreOutcome(scores, errors, (time.perf_counter() - start) * 1000)


async def _guarded(
    scorer: Scorer,
    messages: Sequence[Message],
    ground_truth: str | None,
    row: dict[str, Any],
    timeout_s: float | None,
) -> float | BaseException:
    """`score_one`, with whatever the scorer raised returned instead. `SystemExit` is caught
    here, inside the coroutine: escaping a task, it would stop the event loop."""
    try:
        return await score_one(scorer, messages, ground_truth, row, timeout_s)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return exc


def describe_failure(exc: BaseException, timeout_s: float | None) -> str:
    """What a scorer's failure is called on its trajectory."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s}s"
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"
