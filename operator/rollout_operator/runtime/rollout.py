"""One work item from dataset row to scored trajectory record.

This is the unit every front end shares: `rolloutctl test` and `eval`, the local backend of
`rolloutctl run`, and the worker pods of the operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout_operator.runtime.agent_loop import AgentConfig, AgentObserver, run_agent_loop
from rollout_operator.runtime.dataset import BadRow, DatasetRow
from rollout_operator.runtime.interfaces import ChatModel, ToolProvider, ToolSchema
from rollout_operator.runtime.records import (
    RecordError,
    Timing,
    TrajectoryRecord,
    TurnTokens,
    Usage,
)
from rollout_operator.runtime.scoring import ScoreOutcome, Scorer, score_trajectory


class ScoringService(Protocol):
    """Scorers that run elsewhere (the user-code side): `RemoteScorers`."""

    refs: list[str]

    @property
    def restarts(self) -> int: ...

    async def score(self, messages: Sequence[Any], ground_truth: str | None,
                    row: dict[str, Any]) -> ScoreOutcome: ...


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One (row, sample) pair; `model_tag` is "baseline" for a baseline model's runs."""

    rollout_id: str
    row: DatasetRow | BadRow
    sample_index: int = 0
    model_tag: str | None = None


@dataclass(frozen=True, slots=True)
class Played:
    """A rollout whose agent loop finished and that waits for its scores."""

    item: WorkItem
    row: DatasetRow
    common: dict[str, Any]


@dataclass(slots=True)
class RolloutRunner:
    """Runs work items against one model and one tool provider, and scores them."""

    llm: ChatModel
    tools: ToolProvider
    tool_schemas: Sequence[ToolSchema]
    scorers: Sequence[Scorer] = ()
    config: AgentConfig = field(default_factory=AgentConfig)
    score_timeout_s: float | None = None
    fastmcp_version: str | None = None
    scoring: ScoringService | None = None
    """Out-of-process scorers; when set, `scorers` is not used."""
    policy_version: str | None = None
    """Stamped on every record (`spec.model.policyVersion`)."""

    async def run(self, item: WorkItem, observer: AgentObserver | None = None) -> TrajectoryRecord:
        """The agent loop, then scoring: the whole rollout."""
        played = await self.play(item, observer)
        return played if isinstance(played, TrajectoryRecord) else await self.score(played)

    async def play(self, item: WorkItem,
                   observer: AgentObserver | None = None) -> TrajectoryRecord | Played:
        """The agent loop: a finished record when there is nothing to score (a bad row, a
        failure, an infrastructure mask, no scorers), else what `score` needs. A worker frees
        the rollout's slot here and scores on the side, so scoring adds no time to a slot."""
        row = item.row
        if isinstance(row, BadRow):
            # Nothing ran: the row itself is unusable. Its message names the file and line.
            return self._record(
                item,
                status="invalid",
                error=RecordError(category="dataset", message=row.message),
            )
        async with self.tools.session() as session:
            loop = await run_agent_loop(
                row.messages(), self.llm, self.tool_schemas, session, self.config, observer
            )
        usage = Usage(
            prompt_tokens=loop.prompt_tokens,
            completion_tokens=loop.completion_tokens,
            total_tokens=loop.prompt_tokens + loop.completion_tokens,
            num_llm_calls=loop.num_llm_calls,
            num_tool_calls=loop.num_tool_calls,
        )
        timing = Timing(total_ms=loop.total_ms, llm_ms=loop.llm_ms, tool_ms=loop.tool_ms)
        turns = [TurnTokens(token_ids=t.token_ids, logprobs=t.logprobs,
                            message_index=t.message_index, prompt_token_ids=t.prompt_token_ids)
                 for t in loop.turns]
        common: dict[str, Any] = {
            "messages": loop.messages,
            "usage": usage,
            "timing": timing,
            "turns": turns,
            "finish_reason": loop.finish_reason,
        }
        if loop.error is not None:
            # A model endpoint that failed is infrastructure: mask it, never score it 0.
            status = "masked" if loop.error.category == "inference" else "failed"
            error = RecordError(category=loop.error.category, message=loop.error.message)
            return self._record(item, status=status, error=error, **common)
        if loop.sandbox_errors:
            error = RecordError(
                category="sandbox",
                message=f"{loop.sandbox_errors} tool call(s) could not reach the tool server",
            )
            return self._record(item, status="masked", error=error, **common)
        if self.scoring is None and not self.scorers:
            return self._record(item, status="completed", **common)
        return Played(item, row, common)

    async def score(self, played: Played) -> TrajectoryRecord:
        """Score a played rollout: its finished record."""
        item, row, common = played.item, played.row, played.common
        messages = common["messages"]
        if self.scoring is not None:
            from rollout_operator.runtime.scorer_client import ScoringUnavailable

            try:
                outcome = await self.scoring.score(messages, row.ground_truth, row.as_dict())
            except ScoringUnavailable as exc:
                # A scorer sandbox that is gone is infrastructure: mask, never score 0.
                error = RecordError(category="sandbox", message=f"scoring: {exc}")
                return self._record(item, status="masked", error=error, **common)
            if not outcome.scores:
                return self._record(item, status="completed", **common)
        else:
            outcome = await score_trajectory(
                self.scorers, messages, row.ground_truth, row.as_dict(), self.score_timeout_s,
            )
        common["timing"].scoring_ms = outcome.scoring_ms
        reward_error = None
        if outcome.errors:
            message = "; ".join(f"{ref}: {msg}" for ref, msg in outcome.errors.items())
            reward_error = RecordError(category="reward", message=message)
        reward = sum(outcome.scores.values()) / len(outcome.scores)
        return self._record(
            item, status="completed", error=reward_error, scores=outcome.scores, reward=reward,
            **common,
        )

    def _record(self, item: WorkItem, **fields: Any) -> TrajectoryRecord:
        row = item.row
        if isinstance(row, DatasetRow):
            fields.setdefault("ground_truth", row.ground_truth)
            fields.setdefault("metadata", dict(row.extra))
        fields.setdefault("tools", [t["function"]["name"] for t in self.tool_schemas])
        return TrajectoryRecord(
            rollout_id=item.rollout_id,
            row_index=row.row_index,
            sample_index=item.sample_index,
            model_tag=item.model_tag,
            fastmcp_version=self.fastmcp_version,
            policy_version=self.policy_version,
            **fields,
        )
