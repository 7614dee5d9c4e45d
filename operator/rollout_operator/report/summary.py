"""The figures at the top of a report: per-scorer statistics, counts by status, failures.

Statistics follow the results files: a failed rollout scores 0.0, masked and invalid ones are
left out. The primary model's figures are the results file's own `summary` when it has one
(what `eval` printed and the aggregate wrote), else they are computed the same way
(`runtime.metrics.build_eval_summary`); a baseline model's are always computed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from rollout_operator.report.model import ReportInput, Rollout
from rollout_operator.runtime.metrics import build_eval_summary

STATUSES = ("completed", "failed", "masked", "invalid")


@dataclass(frozen=True, slots=True)
class ScorerStats:
    """One scorer's figures for one model (`tag` None: the primary model)."""

    tag: str | None
    name: str
    stats: dict[str, Any]

    @property
    def pass_at_k(self) -> dict[int, float]:
        return {int(k): float(v) for k, v in (self.stats.get("pass_at_k") or {}).items()}


def model_tags(rollouts: list[Rollout]) -> list[str | None]:
    tags: dict[str | None, None] = {None: None}
    for rollout in rollouts:
        tags.setdefault(rollout.model_tag, None)
    return list(tags)


def scorer_stats(report: ReportInput) -> list[ScorerStats]:
    scored = [r.as_eval_run() for r in report.rollouts if not r.left_out]
    found: list[ScorerStats] = []
    for tag in model_tags(report.rollouts):
        given = report.summary.get("eval_fns") if report.summary and tag is None else None
        if not isinstance(given, dict) or not all(n in given for n in report.scorers):
            given = build_eval_summary(scored, report.scorers, n_runs=report.n_runs,
                                       pass_threshold=report.pass_threshold,
                                       model_tag=tag)["eval_fns"]
        found += [ScorerStats(tag, name, dict(given[name])) for name in report.scorers]
    return found


def score_values(report: ReportInput, name: str, tag: str | None) -> list[float]:
    """The values a scorer's statistics are computed over (failed rollouts as 0.0)."""
    return [
        float(r.scores.get(name, 0.0)) if r.status == "completed" else 0.0
        for r in report.rollouts if not r.left_out and r.model_tag == tag
    ]


def status_counts(report: ReportInput) -> dict[str, int]:
    """Rollouts per status: the four record statuses always, in their order."""
    counts = Counter(r.status for r in report.rollouts)
    ordered = {status: counts.get(status, 0) for status in STATUSES}
    ordered.update(sorted((k, n) for k, n in counts.items() if k not in STATUSES))
    return ordered


def failure_counts(report: ReportInput) -> dict[str, int]:
    """Rollouts with an error, by the error's category (a completed rollout may carry one:
    a scorer that raised)."""
    return dict(Counter(
        r.error_category or r.status for r in report.rollouts
        if r.status != "completed" or r.error
    ))
