"""Calling a loaded FastMCP server's plain function tools without its per-call dispatch.

`FastMCP.call_tool()` spends most of a cheap tool's cost on dispatch: the middleware chain,
resolving the tool by name through its providers, and a tracing span. For a server whose
middleware does not act on tool calls and has no extensions, and for a tool that is a plain
`FunctionTool`, the call reduces to running the tool (`Tool._run`, which validates the arguments,
runs a sync function where FastMCP would run it and converts the result) inside an active
`Context`, and turning an exception into the error FastMCP's `call_tool()` raises for it.

Everything here is checked for on the installed FastMCP; when something is missing, or the server
or tool is not of that plain kind, `DirectToolCaller.tool()` answers None and the caller keeps
FastMCP's own `call_tool()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from rollout_operator.runtime.tools.fastmcp_compat import call_server_tool

_TOOL_CALL_HOOKS = ("__call__", "on_message", "on_request", "on_call_tool")
"""The `Middleware` hooks a tool call passes through; a middleware overriding none is bypassed."""

_MISSING_CLIENT_CAPABILITY = -32021
"""The MCP error code FastMCP lets through unmasked (a client capability the call needs)."""


@dataclass(frozen=True, slots=True)
class _FastMCPParts:
    context: Any
    function_tool: type
    middleware_base: type
    tool_error: type[Exception]
    passthrough: tuple[type[BaseException], ...]
    http_status_code: Callable[[BaseException], int | None]
    is_timeout_error: Callable[[BaseException], bool]
    dispatching_tool_call: Callable[[], AbstractContextManager[None]] | None
    payload_has_identities: Callable[[Any], bool] | None


def _optional(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _load_parts() -> _FastMCPParts | None:
    try:
        from fastmcp.exceptions import FastMCPError, ToolError
        from fastmcp.server.context import Context
        from fastmcp.server.middleware import Middleware
        from pydantic import ValidationError

        function_tool = importlib.import_module("fastmcp.tools.function_tool").FunctionTool
        errors = importlib.import_module("fastmcp.utilities.exceptions")
        http_status_code = errors.get_http_status_code
        is_timeout_error = errors.is_timeout_error
    except (ImportError, AttributeError):
        return None
    if not callable(getattr(function_tool, "_run", None)):
        return None
    return _FastMCPParts(
        context=Context,
        function_tool=function_tool,
        middleware_base=Middleware,
        tool_error=ToolError,
        passthrough=(FastMCPError, ValidationError),
        http_status_code=http_status_code,
        is_timeout_error=is_timeout_error,
        dispatching_tool_call=_optional("fastmcp.server.dependencies", "_dispatching_tool_call"),
        payload_has_identities=_optional(
            "fastmcp.server.providers.prefab_payload", "payload_has_identities"
        ),
    )


_PARTS = _load_parts()


def _passes_tool_calls_through(middleware: object, base: type) -> bool:
    cls = type(middleware)
    return isinstance(middleware, base) and all(
        getattr(cls, hook, None) is getattr(base, hook, None) for hook in _TOOL_CALL_HOOKS
    )


def direct_calls_possible(server: Any) -> bool:
    """Whether FastMCP's dispatch adds nothing to a tool call on this server."""
    if _PARTS is None or not hasattr(server, "call_tool") or not hasattr(server, "get_tool"):
        return False
    if getattr(server, "_extensions", None):
        return False
    return all(
        _passes_tool_calls_through(middleware, _PARTS.middleware_base)
        for middleware in getattr(server, "middleware", ())
    )


class DirectToolCaller:
    """Runs a server's plain function tools directly; resolves each tool name once."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._enabled = direct_calls_possible(server)
        self._tools: dict[str, Any] = {}

    async def tool(self, name: str) -> Any:
        """The tool to run directly, or None when FastMCP's `call_tool()` must handle `name`."""
        if not self._enabled or _PARTS is None:
            return None
        if name in self._tools:
            return self._tools[name]
        found = await self._server.get_tool(name)
        direct = found if type(found) is _PARTS.function_tool else None
        self._tools[name] = direct
        return direct

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call tool `name` (a `ToolResult`); raises what FastMCP's `call_tool()` would raise."""
        tool = await self.tool(name)
        if tool is None or _PARTS is None:
            return await call_server_tool(self._server, name, arguments)
        parts = _PARTS
        dispatching = parts.dispatching_tool_call
        async with parts.context(fastmcp=self._server):
            with dispatching() if dispatching is not None else nullcontext():
                try:
                    result = await tool._run(arguments or {})
                except Exception as exc:
                    error = _as_server_error(parts, self._server, name, exc)
                    if error is exc:
                        raise
                    raise error from exc
        identities = parts.payload_has_identities
        if identities is not None and identities(getattr(result, "structured_content", None)):
            result = await self._server._rebind_prefab_tool_names(result)
        return result


def _as_server_error(parts: _FastMCPParts, server: Any, name: str,
                     exc: Exception) -> Exception:
    """The exception FastMCP's `call_tool()` raises for `exc` escaping tool `name`."""
    if isinstance(exc, parts.passthrough):
        return exc
    error = getattr(exc, "error", None)
    if getattr(error, "code", None) == _MISSING_CLIENT_CAPABILITY:
        return exc
    if parts.http_status_code(exc) == 429:
        return parts.tool_error("Rate limited by upstream API, please retry later")
    if parts.is_timeout_error(exc):
        return parts.tool_error("Upstream request timed out, please retry")
    if getattr(server, "_mask_error_details", False):
        return parts.tool_error(f"Error calling tool {name!r}")
    return parts.tool_error(f"Error calling tool {name!r}: {exc}")
