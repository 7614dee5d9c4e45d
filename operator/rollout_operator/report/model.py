"""What a report shows: the rollouts of one eval or run, and what is known of the run itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rollout_operator.runtime.records import TrajectoryRecord

SourceKind = Literal["eval", "run"]

LEFT_OUT = ("masked", "invalid")
"""Statuses that take no part in the statistics (infrastructure failures, unusable rows)."""


class ReportSourceError(ValueError):
    """The path cannot be read as eval results or a run's output; the message says why."""


def eval_tag(run: Mapping[str, Any]) -> str | None:
    """An eval run's model tag as the report shows it: the primary model's runs are untagged
    (None), as in a results file without a baseline; `osmosis eval` tags them "primary" when a
    baseline ran beside them."""
    tag = run.get("model_tag")
    return None if tag in (None, "primary") else str(tag)


@dataclass(slots=True)
class Rollout:
    """One rollout of one dataset row, as the report shows it.

    `messages` is None when the conversation was not kept (an eval run without
    `--log-samples`); timings and token counts are 0 where the source does not have them.
    """

    rollout_id: str
    row_index: int
    sample_index: int
    model_tag: str | None
    status: str
    finish_reason: str | None = None
    error_category: str | None = None
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reward: float | None = None
    advantage: float | None = None
    ground_truth: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    total_ms: float = 0.0
    llm_ms: float = 0.0
    tool_ms: float = 0.0
    scoring_ms: float = 0.0
    attempt: int = 0
    messages: list[dict[str, Any]] | None = None

    @property
    def left_out(self) -> bool:
        return self.status in LEFT_OUT

    def as_eval_run(self) -> dict[str, Any]:
        """This rollout as an eval results `runs` entry (what `runtime.metrics` summarizes)."""
        success = self.status == "completed"
        return {
            "row_index": self.row_index,
            "run_index": self.sample_index,
            "model_tag": self.model_tag,
            "success": success,
            "scores": dict(self.scores) if success else {},
            "tokens": self.total_tokens,
            "duration_ms": self.total_ms,
        }

    @classmethod
    def from_record(cls, record: TrajectoryRecord) -> Rollout:
        return cls(
            rollout_id=record.rollout_id,
            row_index=record.row_index,
            sample_index=record.sample_index,
            model_tag=record.model_tag,
            status=record.status,
            finish_reason=record.finish_reason,
            error_category=record.error.category if record.error else None,
            error=record.error.message if record.error else None,
            scores=dict(record.scores),
            reward=record.reward,
            advantage=record.advantage,
            ground_truth=record.ground_truth,
            prompt_tokens=record.usage.prompt_tokens,
            completion_tokens=record.usage.completion_tokens,
            total_tokens=record.usage.total_tokens,
            llm_calls=record.usage.num_llm_calls,
            tool_calls=record.usage.num_tool_calls,
            total_ms=record.timing.total_ms,
            llm_ms=record.timing.llm_ms,
            tool_ms=record.timing.tool_ms,
            scoring_ms=record.timing.scoring_ms,
            attempt=record.attempt,
            messages=record.messages,
        )

    @classmethod
    def from_eval_run(
        cls, run: Mapping[str, Any], messages: list[dict[str, Any]] | None
    ) -> Rollout:
        """An entry of an eval results JSON's `runs` (and its logged conversation, if any)."""
        tag = eval_tag(run)
        row, sample = int(run["row_index"]), int(run.get("run_index", 0))
        success = bool(run.get("success"))
        error = run.get("error")
        return cls(
            rollout_id=f"eval-{row}-run-{sample}" + (f"-{tag}" if tag else ""),
            row_index=row,
            sample_index=sample,
            model_tag=tag,
            status="completed" if success else "failed",
            error_category=None if success else "error",
            error=None if error is None else str(error),
            scores={str(k): float(v) for k, v in (run.get("scores") or {}).items()},
            total_tokens=int(run.get("tokens") or 0),
            total_ms=float(run.get("duration_ms") or 0.0),
            tool_calls=count_tool_calls(messages),
            llm_calls=sum(1 for m in messages or () if m.get("role") == "assistant"),
            messages=messages,
        )


def count_tool_calls(messages: list[dict[str, Any]] | None) -> int:
    return sum(len(m.get("tool_calls") or ()) for m in messages or () if isinstance(m, dict))


@dataclass(slots=True)
class ReportInput:
    """Everything a report is built from.

    `summary` is the results file's own `summary` (the primary model's), when it has one;
    `config` the identity the results file records (model, dataset, flags), never secrets.
    """

    source: str
    kind: SourceKind
    model: str | None
    commit: str | None
    scorers: list[str]
    n_runs: int
    pass_threshold: float
    status: str | None
    created_at: str | None
    config: dict[str, Any]
    summary: dict[str, Any] | None
    rollouts: list[Rollout]
    notes: list[str] = field(default_factory=list)
    """What the reader should know about what is missing (conversations not logged, ...)."""
