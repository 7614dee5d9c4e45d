"""Score statistics, pass@k and group advantages, checked against values worked out by hand."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from rollout_operator.runtime.metrics import (
    build_eval_summary,
    group_advantages,
    group_stats,
    mean_pass_at_k,
    pass_at_k,
    pass_at_k_values,
    summarize,
)

FN = "reward_fn.compute_reward:numbers_match_reward"


def test_summary_uses_population_std_and_inclusive_quartiles() -> None:
    values = [0.0, 1.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    result = summarize(values)
    assert result["mean"] == pytest.approx(5.5 / 8)
    assert result["median"] == 1.0
    # Population std: sqrt(sum((x - mean)^2) / n), not the n - 1 sample std.
    mean = 5.5 / 8
    expected_std = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
    assert result["std"] == pytest.approx(expected_std)
    assert result["std"] != pytest.approx(statistics.stdev(values))
    assert (result["min"], result["max"]) == (0.0, 1.0)
    # Inclusive quartiles of the sorted [0, 0, .5, 1, 1, 1, 1, 1]: positions 1.75 and 5.25.
    assert result["p25"] == pytest.approx(0.375)
    assert result["p75"] == 1.0
    assert list(result) == ["mean", "median", "std", "min", "max", "p25", "p75"]


def test_quartiles_differ_from_the_exclusive_method() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    result = summarize(values)
    assert (result["p25"], result["p75"]) == (1.75, 3.25)
    exclusive = statistics.quantiles(values, n=4)  # the default method gives 1.25 and 3.75
    assert (result["p25"], result["p75"]) != (exclusive[0], exclusive[2])


def test_summary_of_one_and_of_no_values() -> None:
    assert summarize([0.7]) == {
        "mean": 0.7,
        "median": 0.7,
        "std": 0.0,
        "min": 0.7,
        "max": 0.7,
        "p25": 0.7,
        "p75": 0.7,
    }
    assert set(summarize([]).values()) == {0.0}


@pytest.mark.parametrize(
    ("n", "ks"),
    [
        (1, [1]),
        (2, [1, 2]),
        (4, [1, 2, 4]),
        (5, [1, 2, 4, 5]),
        (10, [1, 2, 4, 8, 10]),
        (16, [1, 2, 4, 8, 16]),
    ],
)
def test_pass_at_k_values(n: int, ks: list[int]) -> None:
    assert pass_at_k_values(n) == ks


def test_pass_at_k_values_needs_a_run() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        pass_at_k_values(0)


def test_pass_at_k_estimator() -> None:
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 4) == 1.0  # n - c < k: every draw of 4 holds a pass
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(3, 1, 3) == 1.0  # n <= k
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - math.comb(7, 2) / math.comb(10, 2))
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 0)


def test_mean_pass_at_k_averages_rows_and_counts_missing_runs_as_failures() -> None:
    by_row = {
        0: [1.0, 0.0, 1.0, 0.0, 0.0],  # c = 2
        1: [1.0, 1.0, 1.0, 1.0, 1.0],  # c = 5
        2: [0.9, 0.2],  # c = 0 at threshold 1.0; only two runs reported, n stays 5
    }
    result = mean_pass_at_k(by_row, n_runs=5, threshold=1.0)
    assert list(result) == [1, 2, 4, 5]
    assert result[1] == pytest.approx((0.4 + 1.0 + 0.0) / 3)
    assert result[2] == pytest.approx((0.7 + 1.0 + 0.0) / 3)
    lower = mean_pass_at_k(by_row, n_runs=5, threshold=0.5)
    assert lower[1] == pytest.approx((0.4 + 1.0 + 0.2) / 3)
    assert mean_pass_at_k({}, n_runs=3, threshold=1.0) == {1: 0.0, 2: 0.0, 3: 0.0}


def run(
    row: int,
    index: int,
    score: float | None,
    *,
    success: bool = True,
    tag: str | None = None,
    tokens: int = 100,
    duration_ms: float = 10.0,
) -> dict[str, Any]:
    return {
        "row_index": row,
        "run_index": index,
        "model_tag": tag,
        "success": success,
        "scores": {} if score is None else {FN: score},
        "tokens": tokens,
        "duration_ms": duration_ms,
        "error": None if success else "boom",
    }


def test_eval_summary_with_several_runs_per_row() -> None:
    runs = [
        run(0, 0, 1.0),
        run(0, 1, 0.0),
        run(0, 2, 1.0),
        run(0, 3, 0.0),
        run(0, 4, None, success=False, tokens=0),
        # A failed run whose scores were filled in anyway still counts 0.0.
        *(run(1, i, 1.0) for i in range(4)),
        run(1, 4, 1.0, success=False),
        # Baseline runs are kept out of the primary model's summary.
        *(run(0, i, 1.0, tag="baseline", tokens=7) for i in range(5)),
    ]
    summary = build_eval_summary(runs, [FN], n_runs=5, pass_threshold=1.0)
    stats = summary["eval_fns"][FN]
    scores = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert stats["mean"] == pytest.approx(0.6)
    assert stats["std"] == pytest.approx(statistics.pstdev(scores))
    assert stats["median"] == 1.0
    assert (stats["min"], stats["max"]) == (0.0, 1.0)
    # Row 0 has c = 2, row 1 has c = 4 out of n = 5.
    assert stats["pass_at_k"]["1"] == pytest.approx((0.4 + 0.8) / 2)
    assert stats["pass_at_k"]["2"] == pytest.approx((0.7 + 1.0) / 2)
    assert list(stats["pass_at_k"]) == ["1", "2", "4", "5"]
    assert summary["total_runs"] == 10
    assert summary["total_tokens"] == 100 * 9
    assert summary["total_duration_ms"] == pytest.approx(100.0)

    baseline = build_eval_summary(runs, [FN], n_runs=5, model_tag="baseline")
    assert baseline["eval_fns"][FN]["mean"] == 1.0
    assert baseline["eval_fns"][FN]["pass_at_k"]["1"] == 1.0
    assert baseline["total_tokens"] == 35


def test_eval_summary_with_one_run_has_no_pass_at_k() -> None:
    runs = [run(0, 0, 1.0), run(1, 0, 0.25), run(2, 0, None, success=False)]
    summary = build_eval_summary(runs, [FN, "other:fn"], n_runs=1)
    assert "pass_at_k" not in summary["eval_fns"][FN]
    assert summary["eval_fns"][FN]["mean"] == pytest.approx(1.25 / 3)
    assert summary["eval_fns"]["other:fn"]["max"] == 0.0  # never scored: all zeros
    assert summary["total_runs"] == 3


def test_group_stats() -> None:
    assert group_stats([1.0, 0.0, 1.0, 0.0]) == (0.5, 0.5)
    assert group_stats([]) == (0.0, 0.0)


def test_group_advantages_normalise_and_skip_masked_samples() -> None:
    advantages = group_advantages([1.0, None, 0.0, 1.0, 0.0])
    assert advantages[1] is None
    present = [a for a in advantages if a is not None]
    assert present == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-5)
    assert math.fsum(present) == pytest.approx(0.0)
    # Masked samples do not shift the statistics of the others.
    assert [a for a in group_advantages([1.0, 0.0, 1.0, 0.0]) if a is not None] == present


def test_group_advantages_of_equal_rewards_are_zero() -> None:
    assert group_advantages([0.1, 0.1, 0.1]) == [0.0, 0.0, 0.0]
    assert group_advantages([0.7]) == [0.0]
    assert group_advantages([None, 1.0, None]) == [None, 0.0, None]
    assert group_advantages([None, None]) == [None, None]
    assert group_advantages([]) == []


def test_group_advantages_without_std_scaling() -> None:
    assert group_advantages([3.0, 1.0, None], scale_by_std=False) == [1.0, -1.0, None]
    scaled = group_advantages([3.0, 1.0])
    assert scaled[0] == pytest.approx(1.0 / (1.0 + 1e-6))
