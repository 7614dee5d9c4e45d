"""Score statistics, pass@k and per-prompt group advantages.

The summary statistics and pass@k follow `osmosis eval` (its results JSON `summary` object):
population standard deviation, inclusive quartiles, failed runs counted as 0.0, pass@k only when
there is more than one run per row, averaged over rows.

Group advantages are GRPO-style: within one prompt's samples, `(r - mean) / (std + eps)` with the
population std and `eps = 1e-6`. Masked samples (reward `None`) take no part and keep `None`; when
every remaining reward is equal the advantages are exactly 0.0 (no signal, no division noise).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)

ADVANTAGE_EPS = 1e-6

SUMMARY_KEYS: tuple[str, ...] = ("mean", "median", "std", "min", "max", "p25", "p75")


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, median, population std, min, max and inclusive p25/p75 of `values`.

    An empty sequence gives zeros (as upstream does); a single value is every statistic itself,
    with std 0.0.
    """
    n = len(values)
    if n == 0:
        return dict.fromkeys(SUMMARY_KEYS, 0.0)
    data = [float(v) for v in values]
    mean, std = _mean_std(data)
    if n == 1:
        p25 = p75 = data[0]
    else:
        p25, _, p75 = statistics.quantiles(data, n=4, method="inclusive")
    return {
        "mean": mean,
        "median": float(statistics.median(data)),
        "std": std,
        "min": min(data),
        "max": max(data),
        "p25": float(p25),
        "p75": float(p75),
    }


def pass_at_k_values(n: int) -> list[int]:
    """The k values reported for `n` runs per row: powers of two below n, then n itself."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ks: list[int] = []
    k = 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return ks


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for `c` passing runs out of `n`: 1 - C(n-c, k) / C(n, k)."""
    if n < 0 or c < 0 or k < 1:
        raise ValueError(f"pass@k needs n >= 0, c >= 0 and k >= 1, got n={n}, c={c}, k={k}")
    if c == 0:
        return 0.0
    if n <= k or c >= n or n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(
    scores_by_row: Mapping[K, Sequence[float]],
    n_runs: int,
    threshold: float,
    ks: Sequence[int] | None = None,
) -> dict[int, float]:
    """pass@k per k, averaged over rows (or (row, model) groups).

    Each group's list holds its runs' scores, failed runs as 0.0. A run passes when its score is
    at least `threshold`; `n` is `max(len(runs), n_runs)`, so runs that never reported count as
    failures. `ks` defaults to `pass_at_k_values(n_runs)`.
    """
    chosen = list(ks) if ks is not None else pass_at_k_values(n_runs)
    if not scores_by_row:
        return dict.fromkeys(chosen, 0.0)
    counts = [
        (max(len(scores), n_runs), sum(1 for s in scores if s >= threshold))
        for scores in scores_by_row.values()
    ]
    return {k: math.fsum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in chosen}


def group_stats(rewards: Sequence[float]) -> tuple[float, float]:
    """Mean and population std of one group's rewards ((0.0, 0.0) when empty)."""
    if not rewards:
        return 0.0, 0.0
    return _mean_std([float(r) for r in rewards])


def group_advantages(
    rewards: Sequence[float | None],
    *,
    eps: float = ADVANTAGE_EPS,
    scale_by_std: bool = True,
) -> list[float | None]:
    """GRPO advantages for one prompt's samples, in the order given.

    `None` rewards (masked samples) stay `None` and do not enter the mean or std. With
    `scale_by_std=False` the advantage is only centred (`r - mean`), as in Dr. GRPO.
    """
    present = [float(r) for r in rewards if r is not None]
    if not present or max(present) == min(present):
        return [None if r is None else 0.0 for r in rewards]
    mean, std = _mean_std(present)
    scale = std + eps if scale_by_std else 1.0
    return [None if r is None else (r - mean) / scale for r in rewards]


def build_eval_summary(
    runs: Iterable[Mapping[str, Any]],
    eval_fn_names: Sequence[str],
    *,
    n_runs: int,
    pass_threshold: float = 1.0,
    model_tag: str | None = None,
) -> dict[str, Any]:
    """The `summary` object of an eval results JSON, for the runs of one model.

    Each run is a results-JSON run entry: `row_index`, `run_index`, `model_tag`, `success`,
    `scores` (`{name: float}`), `tokens`, `duration_ms`. Only runs whose `model_tag` equals
    `model_tag` count (None, the default, is the primary model; pass "baseline" for the baseline
    block). A failed run scores 0.0 for every function, in the statistics and in pass@k, and so
    does a missing score. `pass_at_k` (keys "1", "2", ...) appears only when `n_runs > 1`.
    """
    selected = [run for run in runs if run.get("model_tag") == model_tag]
    eval_fns: dict[str, dict[str, Any]] = {}
    for name in eval_fn_names:
        values = [_run_score(run, name) for run in selected]
        stats: dict[str, Any] = summarize(values)
        if n_runs > 1:
            by_row: dict[Hashable, list[float]] = defaultdict(list)
            for run, value in zip(selected, values, strict=True):
                by_row[run["row_index"]].append(value)
            stats["pass_at_k"] = {
                str(k): v for k, v in mean_pass_at_k(by_row, n_runs, pass_threshold).items()
            }
        eval_fns[name] = stats
    return {
        "eval_fns": eval_fns,
        "total_runs": len(selected),
        "total_tokens": sum(int(run.get("tokens") or 0) for run in selected),
        "total_duration_ms": math.fsum(float(run.get("duration_ms") or 0.0) for run in selected),
    }


def _run_score(run: Mapping[str, Any], name: str) -> float:
    if not run.get("success"):
        return 0.0
    scores = run.get("scores") or {}
    value = scores.get(name)
    return 0.0 if value is None else float(value)


def _mean_std(data: Sequence[float]) -> tuple[float, float]:
    n = len(data)
    mean = math.fsum(data) / n
    variance = math.fsum((x - mean) ** 2 for x in data) / n
    return mean, math.sqrt(variance)


def too_many_masked(masked: int, total: int, max_fraction: float) -> str | None:
    """What to say of a run whose rollouts remain masked above `max_fraction` of `total`
    (`spec.faults.maxMaskedFraction`); None when the run is within it."""
    if total <= 0 or masked / total <= max_fraction:
        return None
    return (
        f"{masked} of {total} rollouts ({masked / total:.1%}) remain masked after retries, "
        f"more than spec.faults.maxMaskedFraction ({max_fraction:g}); their statistics leave "
        "them out. Check the model endpoint (records with error category inference) and the "
        "tool and scorer servers (category sandbox); running the same run again re-runs the "
        "masked rollouts."
    )
