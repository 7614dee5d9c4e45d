"""The summary of a run's items (`metrics.json` and the `--json` envelope): counts, pass rate,
reward statistics and, at n >= 2, pass@k."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One work item's terminal result, as the summary sees it."""

    row_index: int
    run_index: int
    status: str  # success | failed | skipped
    reward: float | None
    tokens: int | None


def summarize(items: Iterable[ItemOutcome], *, pass_threshold: float, n: int
              ) -> dict[str, Any]:
    items = list(items)
    skipped = sum(1 for item in items if item.status == "skipped")
    failed = sum(1 for item in items if item.status == "failed")
    completed = len(items) - skipped
    rewards = [item.reward for item in items if item.status != "skipped" and
               item.reward is not None]
    passed = sum(1 for reward in rewards if reward >= pass_threshold)
    summary: dict[str, Any] = {
        "total_samples": len(items),
        "completed_samples": completed,
        "graded": len(rewards),
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "pass_rate": passed / completed if completed else 0.0,
        "pass_threshold": pass_threshold,
        "tokens_used": sum(item.tokens or 0 for item in items),
    }
    if rewards:
        summary["reward_stats"] = {
            "mean": statistics.fmean(rewards),
            "median": float(statistics.median(rewards)),
            "std": statistics.pstdev(rewards),
            "min": min(rewards),
            "max": max(rewards),
        }
    if n >= 2:
        summary["n_runs"] = n
        points = pass_at_k(items, pass_threshold=pass_threshold, n=n)
        if len(points) >= 2:
            summary["pass_at_k"] = points
    return summary


def pass_at_k(items: list[ItemOutcome], *, pass_threshold: float, n: int
              ) -> list[dict[str, float]]:
    """The unbiased pass@k for k = 1, 2, 4, ... <= n, averaged over rows with >= k attempts
    (skipped attempts do not count)."""
    per_row: dict[int, list[bool]] = defaultdict(list)
    for item in items:
        if item.status != "skipped":
            per_row[item.row_index].append(item.reward is not None and
                                           item.reward >= pass_threshold)
    points: list[dict[str, float]] = []
    k = 1
    while k <= n:
        values = []
        for attempts in per_row.values():
            total, correct = len(attempts), sum(attempts)
            if total >= k:
                values.append(1.0 - math.comb(total - correct, k) / math.comb(total, k))
        if values:
            points.append({"k": k, "value": statistics.fmean(values)})
        k *= 2
    return points
