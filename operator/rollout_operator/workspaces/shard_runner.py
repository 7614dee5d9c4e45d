"""Rollouts of a RolloutRun with `spec.rollout`: each work item driven over the rollout
protocol against the user's rollout server, its model calls served by the gateway this process
runs, and turned into our trajectory record.

The record's reward is the Grader's. Infrastructure is masked, never scored: a rollout server
that cannot be reached or answers an error, and model calls the gateway could not complete. A
workflow timeout is `failed` (category `timeout`); a grader that set no reward is `failed`
(category `reward`); a removed sample (`remove_sample`) is `invalid`: it is excluded from
rewards and pass rates, as osmosis counts it `skipped`. The ATIF trajectory the SDK wrote for
the rollout, when valid, is saved with the run's output (`atif/<rollout id>.json`).

It has the interface the worker's pool expects of a rollout runner (`play`, `tool_schemas`,
`scoring`): a work item always finishes in `play`, since the Grader has already scored it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets as token_source
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rollout_operator.gateway.ledger import RolloutAccount
from rollout_operator.gateway.server import Gateway
from rollout_operator.runtime.dataset import BadRow
from rollout_operator.runtime.records import (
    RecordError,
    Timing,
    TrajectoryRecord,
    TurnTokens,
    Usage,
)
from rollout_operator.runtime.rollout import WorkItem
from rollout_operator.workspaces import atif
from rollout_operator.workspaces.dataset import EvalRow, iter_window
from rollout_operator.workspaces.protocol import (
    AtCapacity,
    RolloutClient,
    RolloutResult,
    RolloutServerError,
)

logger = logging.getLogger(__name__)

ATIF_PREFIX = "atif"
# What a worker of such a run is given (by the worker Job, or by `rolloutctl run`).
ROLLOUT_SERVER_URL_ENV = "ROLLOUT_SERVER_URL"
ARTIFACT_URL_ENV = "ROLLOUT_ARTIFACT_URL"
GATEWAY_HOST_ENV = "ROLLOUT_GATEWAY_HOST"
"""How the rollout server reaches this worker's gateway (the pod IP; 127.0.0.1 locally)."""
GATEWAY_PORT_ENV = "ROLLOUT_GATEWAY_PORT"
GATEWAY_BIND_ENV = "ROLLOUT_GATEWAY_BIND"
"""The address the gateway listens on: 0.0.0.0 in a pod (unset), 127.0.0.1 locally, where
shard i listens on the port plus i."""
DEADLINE_MARGIN_S = 60.0
GRADER_SCORE = "grader"
"""The name of the Grader's reward in a record's `scores`."""

FetchTrajectory = Callable[[str], Awaitable[bytes | None]]
"""The ATIF file the rollout server wrote for a protocol rollout id, or None."""
SaveTrajectory = Callable[[str, bytes], Awaitable[None]]
"""Store a valid ATIF file under a record's rollout id."""


@dataclass(slots=True)
class WorkspaceRunner:
    """Drives work items against one rollout server through one gateway."""

    gateway: Gateway
    token: str
    client: RolloutClient
    gateway_base: str
    """The gateway as the rollout server reaches it (`http://<pod ip>:<port>`)."""
    agent_timeout_s: float
    grader_timeout_s: float
    fetch_trajectory: FetchTrajectory
    save_trajectory: SaveTrajectory
    policy_version: str | None = None
    tool_schemas: Sequence[Any] = ()
    scoring: None = None
    saved: list[str] = field(default_factory=list)
    """Rollout ids whose ATIF file was saved (the latest attempt's)."""

    def iter_rows(self, path: Path, *, offset: int, limit: int | None, source: str
                  ) -> Iterator[EvalRow | BadRow]:
        """The dataset window read with the 0.3 rules (the worker uses this reader)."""
        return iter_window(path, offset=offset, limit=limit, source=source)

    async def play(self, item: WorkItem) -> TrajectoryRecord:
        row: Any = item.row
        if isinstance(row, BadRow):
            return self._record(item, status="invalid",
                                error=RecordError(category="dataset", message=row.message))
        protocol_id = f"{uuid.uuid4().hex}"
        self.gateway.ledger.open(protocol_id)
        started = time.monotonic()
        try:
            outcome = await self._drive(protocol_id, row, item.sample_index)
        finally:
            account = self.gateway.ledger.close(protocol_id)
        fields = self._outcome_fields(outcome, account)
        fields.update(_usage_fields(account, (time.monotonic() - started) * 1000))
        record = self._record(item, **fields)
        await self._keep_trajectory(protocol_id, item.rollout_id)
        return record

    async def _drive(self, protocol_id: str, row: EvalRow, sample: int
                     ) -> RolloutResult | RecordError:
        request: dict[str, Any] = {
            "rollout_id": protocol_id, "initial_messages": row.messages,
            "chat_completions_url": self.gateway.rollout_url(protocol_id, self.gateway_base),
            "llm_api_key": self.token, "grade": True,
            "agent_timeout_sec": self.agent_timeout_s,
            "grader_timeout_sec": self.grader_timeout_s,
            "extra_fields": {"row_index": row.row_index, "run_index": sample},
        }
        if row.label is not None:
            request["label"] = row.label
        if row.metadata is not None:
            request["metadata"] = row.metadata
        deadline = self.agent_timeout_s + self.grader_timeout_s + DEADLINE_MARGIN_S
        try:
            async with asyncio.timeout(deadline):
                while True:
                    try:
                        lease = await self.client.start(request)
                        break
                    except AtCapacity as busy:
                        await asyncio.sleep(busy.retry_after_s)
                return await self.client.result(protocol_id, lease)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await self.client.cancel([protocol_id])
            return RecordError(category="sandbox", message=f"the rollout server gave no result "
                               f"within {deadline:g} s")
        except (RolloutServerError, aiohttp.ClientError, ConnectionError, OSError) as exc:
            return RecordError(category="sandbox",
                               message=f"rollout server: {type(exc).__name__}: {exc}"[:500])

    def _outcome_fields(self, outcome: RolloutResult | RecordError,
                        account: RolloutAccount | None) -> dict[str, Any]:
        if isinstance(outcome, RecordError):
            return {"status": "masked", "error": outcome, "finish_reason": "error"}
        sample = outcome.sample or {}
        messages = sample.get("messages")
        fields: dict[str, Any] = {
            "messages": [m for m in messages if isinstance(m, dict)]
            if isinstance(messages, list) else [],
        }
        if outcome.status == "success" and sample.get("remove_sample"):
            fields.update(status="invalid", error=RecordError(
                category="dataset", message="the workflow removed this sample (remove_sample)"))
            return fields
        if outcome.status == "success":
            reward = sample.get("reward")
            if isinstance(reward, int | float) and not isinstance(reward, bool):
                fields.update(status="completed", reward=float(reward),
                              scores={GRADER_SCORE: float(reward)}, finish_reason="stop")
            else:
                fields.update(status="failed", finish_reason="error", error=RecordError(
                    category="reward", message="the grader set no reward"))
            return fields
        category = outcome.err_category or "agent_error"
        message = f"{category}: {outcome.err_message or outcome.status}"[:2000]
        if account is not None and account.failed_calls:
            # The model endpoint failed under the workflow: infrastructure, never a score.
            fields.update(status="masked", finish_reason="error", error=RecordError(
                category="inference",
                message=f"{account.failed_calls} model call(s) failed at the gateway; {message}"))
        elif category == "timeout":
            fields.update(status="failed", finish_reason="timeout",
                          error=RecordError(category="timeout", message=message))
        else:
            fields.update(status="failed", finish_reason="error", error=RecordError(
                category="reward" if category == "validation_error" else "tool",
                message=message))
        return fields

    async def _keep_trajectory(self, protocol_id: str, rollout_id: str) -> None:
        try:
            data = await self.fetch_trajectory(protocol_id)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.warning("No ATIF trajectory for %s: %s", rollout_id, exc)
            return
        if data is None:
            return
        try:
            document = json.loads(data)
        except ValueError:
            return
        if atif.validate(document) or atif.trajectory_rollout_id(document) != protocol_id:
            logger.warning("The ATIF trajectory of %s is not valid; not kept", rollout_id)
            return
        await self.save_trajectory(rollout_id, data)
        self.saved.append(rollout_id)

    def _record(self, item: WorkItem, **fields: Any) -> TrajectoryRecord:
        row: Any = item.row
        if isinstance(row, EvalRow):
            fields.setdefault("ground_truth", row.label)
            fields.setdefault("metadata", dict(row.metadata or {}))
        fields.setdefault("tools", [])
        return TrajectoryRecord(rollout_id=item.rollout_id, row_index=row.row_index,
                                sample_index=item.sample_index, model_tag=item.model_tag,
                                policy_version=self.policy_version, **fields)


def _usage_fields(account: RolloutAccount | None, total_ms: float) -> dict[str, Any]:
    calls = account.calls if account is not None else []
    prompt = sum(call.prompt_tokens or 0 for call in calls)
    completion = sum(call.completion_tokens or 0 for call in calls)
    return {
        "usage": Usage(prompt_tokens=prompt, completion_tokens=completion,
                       total_tokens=sum(call.total_tokens or 0 for call in calls),
                       num_llm_calls=len(calls)),
        "timing": Timing(total_ms=total_ms),
        "turns": [TurnTokens(token_ids=call.completion_token_ids, logprobs=call.logprobs,
                             prompt_token_ids=call.prompt_token_ids) for call in calls
                  if call.completion_token_ids is not None or call.logprobs is not None],
    }


def new_token() -> str:
    """A per-run bearer for the rollout server's model calls."""
    return token_source.token_urlsafe(24)
