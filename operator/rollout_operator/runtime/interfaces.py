"""The two seams of the agent loop: a chat model and a tool session.

Each has a lean implementation for the hot path and a general one (litellm for models, FastMCP's
public `Client` for tools); the agent loop only sees these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Message = dict[str, Any]
"""One OpenAI chat message (`role`, `content`, optional `tool_calls` / `tool_call_id`)."""

ToolSchema = dict[str, Any]
"""One OpenAI function tool: `{"type": "function", "function": {...}}`."""


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ChatResult:
    """One model reply.

    `message` is the assistant message without null fields, as upstream stores it
    (litellm's `model_dump(exclude_none=True)`): beside tool calls a null `content` is absent.
    `token_ids` / `logprobs` / `prompt_token_ids` are filled only when the endpoint returns them
    (vLLM with `return_token_ids`, SGLang, or a server that adds them to the choice).
    """

    message: Message
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    prompt_token_ids: list[int] | None = None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        calls = self.message.get("tool_calls")
        return list(calls) if calls else []


class ChatModel(Protocol):
    """An OpenAI-compatible chat model.

    `chat` raises `ProviderError` for a failure of this call (rate limit, 5xx, timeout, context
    window) and `SystemicProviderError` for one every later call will share (auth, budget,
    connection refused, 401/403/404). `ProviderError.status` carries the HTTP status when known.
    """

    model: str

    async def chat(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] | None = None,
        **params: Any,
    ) -> ChatResult: ...

    async def aclose(self) -> None: ...


ToolErrorKind = Literal["tool", "timeout", "sandbox"]
"""Why a tool call failed: the tool itself (unknown tool, bad arguments, it raised), the per-call
timeout, or the sandbox (the tool server is unreachable, died, or lost the session)."""


@dataclass(slots=True)
class ToolOutput:
    """The result of one tool call as it goes into a `role: tool` message.

    `content` is the serialised value, or `"Error: <message>"` when the call failed.
    `error_kind` says why it failed; a `"sandbox"` failure is infrastructure, not the policy's
    doing. `unreachable` marks a sandbox failure where the call never reached the tool server
    (no connection, or a proxy's 502/503/504): the tool did not run, and the same call may be
    sent again once the server is back.
    """

    content: str
    is_error: bool = False
    error_kind: ToolErrorKind | None = None
    unreachable: bool = False


class ToolSession(Protocol):
    """One rollout's MCP session: calls never raise for tool failures, they return errors."""

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109 - a per-call limit the session enforces itself
    ) -> ToolOutput: ...


class ToolProvider(Protocol):
    """Where tools come from: a loaded server in this process, or a tool server over HTTP."""

    async def list_tools(self) -> list[ToolSchema]:
        """The tools as validated OpenAI function schemas (raises `ToolValidationError`)."""
        ...

    def session(self) -> AbstractAsyncContextManager[ToolSession]:
        """A fresh session for one rollout."""
        ...

    async def aclose(self) -> None: ...
