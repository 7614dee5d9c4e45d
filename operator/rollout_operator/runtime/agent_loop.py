"""The built-in MCP agent loop: the model calls tools until it answers or runs out of turns.

Semantics follow the Osmosis SDK's loop (osmosis-compat.md 3.2): one turn is one model call; tool
calls of a reply run in order; a tool failure becomes an `"Error: ..."` tool message and the loop
goes on; reaching `max_turns` still completes the rollout. On top of that the loop enforces a
per-rollout deadline, retries transient model errors with backoff inside that deadline, and
classifies every failure so that infrastructure trouble can be masked instead of scored.

A deadline that passes is blamed on what the rollout was waiting for. When it passes during a
model call that started with at least half of the deadline still ahead, the model endpoint
hung or crawled: that is infrastructure (`inference`), not the policy's doing. Otherwise the
loop ran long (slow tool calls, many turns) and the rollout timed out (`timeout`).

With outage gates (a worker's), a model endpoint or tool server that cannot be reached is
waited out (`runtime.outage`) and the call sent again once it is back; the time waited does not
count against the rollout's deadline. A tool call is sent again only when it never reached the
server (`ToolOutput.unreachable`), so no tool runs twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rollout_operator.runtime.errors import ProviderError, SystemicProviderError
from rollout_operator.runtime.interfaces import (
    ChatModel,
    ChatResult,
    Message,
    ToolOutput,
    ToolSchema,
    ToolSession,
)
from rollout_operator.runtime.outage import OutageGate

FinishReason = Literal["stop", "max_turns", "length", "timeout", "error"]
ErrorCategory = Literal["tool", "sandbox", "inference", "reward", "timeout", "dataset"]


@dataclass(slots=True)
class AgentConfig:
    max_turns: int = 10
    completion_params: dict[str, Any] = field(default_factory=dict)
    tool_timeout_s: float | None = None
    rollout_timeout_s: float | None = None
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    model_gate: OutageGate | None = None
    """Waits out an outage of the model endpoint (None: its errors count at once)."""
    tool_gate: OutageGate | None = None
    """Waits out an outage of the tool server (None: a call that cannot reach it fails)."""


@dataclass(slots=True)
class LoopError:
    category: ErrorCategory
    message: str


@dataclass(slots=True)
class TurnTokens:
    token_ids: list[int] | None
    logprobs: list[float] | None
    message_index: int | None = None
    """Index in the loop's `messages` of the assistant message these tokens produced."""
    prompt_token_ids: list[int] | None = None


@dataclass(slots=True)
class LoopResult:
    """What one agent loop produced; `error` is None when the loop completed."""

    messages: list[Message]
    finish_reason: FinishReason
    error: LoopError | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    num_llm_calls: int = 0
    num_tool_calls: int = 0
    llm_ms: float = 0.0
    tool_ms: float = 0.0
    total_ms: float = 0.0
    turns: list[TurnTokens] = field(default_factory=list)
    sandbox_errors: int = 0

    @property
    def completed(self) -> bool:
        return self.error is None


class AgentObserver:
    """Hooks for step-by-step display (interactive mode); the defaults do nothing."""

    async def on_llm_response(self, turn: int, result: ChatResult, messages: list[Message]) -> None:
        """Called after each model reply, before its tool calls run."""

    async def on_tool_result(self, call_id: str, name: str, output: ToolOutput) -> None:
        """Called after each tool call."""


def parse_tool_call(call: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of an OpenAI tool call; arguments may be a JSON string or a dict."""
    call_id = str(call.get("id") or "unknown")
    function = call.get("function") or {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("Tool call has no function name")
    raw = function.get("arguments")
    if raw is None or raw == "":
        arguments: Any = {}
    elif isinstance(raw, str):
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Invalid JSON arguments: {exc}") from None
    else:
        arguments = raw
    if not isinstance(arguments, dict):
        raise ValueError(f"Tool arguments must be a JSON object, got {type(arguments).__name__}")
    return call_id, name, arguments


class _Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def extend(self, seconds: float) -> None:
        """Time spent waiting out a dependency's outage is not the rollout's."""
        if self.end is not None and seconds > 0:
            self.end += seconds


def model_outage(exc: BaseException) -> bool:
    """A model call error that says the endpoint is down, not that the call is wrong."""
    return isinstance(exc, ProviderError) and exc.outage


class _ToolUnreachable(Exception):
    def __init__(self, output: ToolOutput) -> None:
        super().__init__(output.content)
        self.output = output


def _tool_outage(exc: BaseException) -> bool:
    return isinstance(exc, _ToolUnreachable)


async def _chat_once(
    llm: ChatModel,
    messages: Sequence[Message],
    tools: Sequence[ToolSchema],
    config: AgentConfig,
    deadline: _Deadline,
) -> ChatResult:
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
        raise TimeoutError
    # A timeout scope rather than `wait_for`: on Python 3.11 `wait_for` runs the call in a task
    # of its own, which costs loop turns on every model call.
    async with asyncio.timeout(remaining):
        return await llm.chat(messages, tools or None, **config.completion_params)


async def _chat_with_retries(
    llm: ChatModel,
    messages: Sequence[Message],
    tools: Sequence[ToolSchema],
    config: AgentConfig,
    deadline: _Deadline,
) -> ChatResult:
    attempt = 0
    gate = config.model_gate
    while True:
        try:
            if gate is None:
                return await _chat_once(llm, messages, tools, config, deadline)
            return await gate.call(lambda: _chat_once(llm, messages, tools, config, deadline),
                                   model_outage, on_wait=deadline.extend)
        except ProviderError as exc:
            if not exc.retryable or attempt >= config.max_retries:
                raise
            delay = min(config.backoff_max_s, config.backoff_base_s * 2**attempt)
            delay *= 0.5 + random.random() / 2
            remaining = deadline.remaining()
            if remaining is not None and delay >= remaining:
                raise
            attempt += 1
            await asyncio.sleep(delay)


async def run_agent_loop(
    messages: Sequence[Message],
    llm: ChatModel,
    tools: Sequence[ToolSchema],
    session: ToolSession,
    config: AgentConfig,
    observer: AgentObserver | None = None,
) -> LoopResult:
    """Drive one rollout to its end.

    Tool failures, transient model errors and the deadline end up in the result; only a
    `SystemicProviderError` (bad key, unreachable endpoint) propagates, because every other
    rollout would hit it too.
    """
    start = time.perf_counter()
    deadline = _Deadline(config.rollout_timeout_s)
    result = LoopResult(messages=list(messages), finish_reason="max_turns")
    history = result.messages
    # While a model call is in flight: when it started and how much deadline was left then.
    model_call: tuple[float, float | None] | None = None
    try:
        for turn in range(1, config.max_turns + 1):
            t0 = time.perf_counter()
            model_call = (t0, deadline.remaining())
            try:
                reply = await _chat_with_retries(llm, history, tools, config, deadline)
            finally:
                result.llm_ms += (time.perf_counter() - t0) * 1000
                result.num_llm_calls += 1
            model_call = None
            result.prompt_tokens += reply.usage.prompt_tokens
            result.completion_tokens += reply.usage.completion_tokens
            if reply.token_ids is not None or reply.logprobs is not None \
                    or reply.prompt_token_ids is not None:
                result.turns.append(TurnTokens(reply.token_ids, reply.logprobs, len(history),
                                               reply.prompt_token_ids))
            history.append(reply.message)
            if observer is not None:
                await observer.on_llm_response(turn, reply, history)
            calls = reply.tool_calls
            if not calls:
                result.finish_reason = "length" if reply.finish_reason == "length" else "stop"
                break
            for call in calls:
                await _run_tool_call(call, session, config, deadline, result, observer)
    except TimeoutError:
        result.finish_reason = "timeout"
        result.error = _deadline_error(deadline, model_call)
    except SystemicProviderError:
        raise
    except ProviderError as exc:
        result.finish_reason = "error"
        result.error = LoopError("inference", str(exc))
    result.total_ms = (time.perf_counter() - start) * 1000
    return result


def _deadline_error(deadline: _Deadline, model_call: tuple[float, float | None] | None
                    ) -> LoopError:
    """Who is to blame for a deadline that passed (see the module docstring)."""
    total = deadline.seconds
    if model_call is not None and total is not None:
        started, left = model_call
        if left is not None and left >= total / 2:
            waited = time.perf_counter() - started
            return LoopError(
                "inference",
                f"The model did not answer within the rollout deadline of {total:g}s "
                f"(the last model call waited {waited:.1f}s without a reply)",
            )
    return LoopError("timeout", f"Rollout exceeded its deadline of {total}s")


async def _run_tool_call(
    call: dict[str, Any],
    session: ToolSession,
    config: AgentConfig,
    deadline: _Deadline,
    result: LoopResult,
    observer: AgentObserver | None,
) -> None:
    t0 = time.perf_counter()
    try:
        call_id, name, arguments = parse_tool_call(call)
    except ValueError as exc:
        call_id = str(call.get("id") or "unknown")
        name = str((call.get("function") or {}).get("name") or "")
        output = ToolOutput(content=f"Error: {exc}", is_error=True)
    else:
        timeout = config.tool_timeout_s
        remaining = deadline.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise TimeoutError
            timeout = remaining if timeout is None else min(timeout, remaining)
        output = await _call_tool(session, name, arguments, timeout, config, deadline)
        if deadline.expired():
            raise TimeoutError
    if output.error_kind == "sandbox":
        result.sandbox_errors += 1
    result.messages.append({"role": "tool", "content": output.content, "tool_call_id": call_id})
    result.num_tool_calls += 1
    result.tool_ms += (time.perf_counter() - t0) * 1000
    if observer is not None:
        await observer.on_tool_result(call_id, name, output)



async def _call_tool(session: ToolSession, name: str, arguments: dict[str, Any],
                     timeout: float | None, config: AgentConfig,  # noqa: ASYNC109
                     deadline: _Deadline) -> ToolOutput:
    """One tool call; through the tool gate, a call that never reached the server is sent
    again once the server is back (its output, past the budget)."""
    gate = config.tool_gate
    if gate is None:
        return await session.call(name, arguments, timeout)

    async def once() -> ToolOutput:
        limit = timeout
        remaining = deadline.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise TimeoutError
            limit = remaining if limit is None else min(limit, remaining)
        output = await session.call(name, arguments, limit)
        if output.unreachable:
            raise _ToolUnreachable(output)
        return output

    try:
        return await gate.call(once, _tool_outage, on_wait=deadline.extend)
    except _ToolUnreachable as exc:
        return exc.output
