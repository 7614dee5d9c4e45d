"""What every tool provider shares: the tool-message text of an MCP tool result, and one place
where every way a call can fail becomes an `"Error: ..."` output instead of an exception.

The text follows the Osmosis agent loop (osmosis-compat.md 3.2), so that a trajectory reads the
same whichever provider ran the tools.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from rollout_operator.runtime.interfaces import ToolErrorKind, ToolOutput, ToolSchema
from rollout_operator.runtime.tool_schema import mcp_tool_to_openai, validate_openai_tool

T = TypeVar("T")

JSONRPC_INVALID_PARAMS = -32602
"""The JSON-RPC code MCP servers use for an unknown tool or arguments that fail validation."""


class ToolCallFailed(Exception):
    """A provider's verdict on a failed call: the message for the model and why it failed."""

    def __init__(self, message: str, kind: ToolErrorKind, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.unreachable = unreachable
        """The call never reached the tool server (see `ToolOutput.unreachable`)."""


@dataclass(slots=True)
class RawToolResult:
    """An MCP `CallToolResult` reduced to what the tool message is made from."""

    structured: Any
    texts: list[str]
    is_error: bool = False


def text_items(content: Iterable[Any]) -> list[str]:
    """The text of the `text` content blocks (objects or wire dicts); other kinds are skipped."""
    texts: list[str] = []
    for item in content:
        if isinstance(item, dict):
            if item.get("type") == "text":
                texts.append(str(item.get("text", "")))
        elif getattr(item, "type", None) == "text":
            texts.append(str(item.text))
    return texts


def extract_value(structured: Any, texts: list[str]) -> Any:
    """The value a tool returned: `x` of `{"result": x}`, else the structured content, else text."""
    if structured is not None:
        if isinstance(structured, dict) and len(structured) == 1 and "result" in structured:
            return structured["result"]
        return structured
    return "\n".join(texts)


def serialize_value(value: Any) -> str:
    """Tool-message text for a value: `true` for booleans, `str()` for numbers, JSON otherwise."""
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def truncate(content: str, max_chars: int | None) -> str:
    """Keep the first `max_chars` characters and say how many were dropped."""
    if max_chars is None or len(content) <= max_chars:
        return content
    return f"{content[:max_chars]}\n…[truncated {len(content) - max_chars} chars]"


def protocol_error_kind(code: object) -> ToolErrorKind:
    """A JSON-RPC error about the call itself is the tool's; any other is the server's trouble."""
    return "tool" if code == JSONRPC_INVALID_PARAMS else "sandbox"


def describe(exc: BaseException) -> str:
    """An exception's message, or its type name when it has none."""
    return str(exc) or type(exc).__name__


def error_output(message: str, kind: ToolErrorKind, max_chars: int | None, *,
                 unreachable: bool = False) -> ToolOutput:
    return ToolOutput(truncate(f"Error: {message}", max_chars), is_error=True, error_kind=kind,
                      unreachable=unreachable)


def result_output(raw: RawToolResult, max_chars: int | None) -> ToolOutput:
    """The tool message of a result the server sent, success or a tool-reported error."""
    if raw.is_error:
        return error_output("\n".join(raw.texts) or "the tool reported an error", "tool", max_chars)
    value = extract_value(raw.structured, raw.texts)
    return ToolOutput(truncate(serialize_value(value), max_chars))


def check_max_result_chars(max_result_chars: int | None) -> int | None:
    if max_result_chars is not None and max_result_chars < 1:
        raise ValueError(f"max_result_chars must be a positive number of characters or None, "
                         f"got {max_result_chars}")
    return max_result_chars


async def open_within(limit: float, opening: Awaitable[T], what: str) -> T:
    """Open a connection or session within `limit` seconds; failing that is a sandbox error.

    Opening is kept out of the per-call timeout: that limit is for the tool, and a server that
    cannot be reached is the sandbox's failure, not the tool's.
    """
    try:
        async with asyncio.timeout(limit):
            return await opening
    except TimeoutError as exc:
        raise ToolCallFailed(f"{what}: no answer within {limit:g}s", "sandbox") from exc


async def guarded_call(
    name: str,
    limit: float | None,
    invoke: Callable[[], Awaitable[RawToolResult]],
    max_chars: int | None,
) -> ToolOutput:
    """Run one provider call within `limit` seconds (None: no limit); a failure is returned.

    `invoke` raises `ToolCallFailed` for failures it understands; anything else that escapes is
    taken as the tool server failing (a sandbox error).
    """
    scope = asyncio.timeout(limit) if limit is not None else None
    try:
        if scope is None:
            raw = await invoke()
        else:
            async with scope:
                raw = await invoke()
    except Exception as exc:
        if limit is not None and scope is not None and scope.expired():
            return error_output(f"Tool '{name}' timed out after {limit:g}s", "timeout", max_chars)
        if isinstance(exc, ToolCallFailed):
            return error_output(exc.message, exc.kind, max_chars, unreachable=exc.unreachable)
        return error_output(f"Tool server failed: {describe(exc)}", "sandbox", max_chars)
    return result_output(raw, max_chars)


def openai_tools(tools: Iterable[Any]) -> list[ToolSchema]:
    """MCP tools as validated OpenAI function schemas (raises `ToolValidationError`)."""
    schemas: list[ToolSchema] = []
    for tool in tools:
        schema = mcp_tool_to_openai(tool)
        validate_openai_tool(schema)
        schemas.append(schema)
    return schemas
