"""Tools through FastMCP's public `Client`: the general path, for any target the Client accepts
(a FastMCP server object in memory, or a streamable-HTTP URL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import fastmcp
from fastmcp import FastMCP

from rollout_operator.runtime.interfaces import ToolOutput, ToolSchema
from rollout_operator.runtime.tools.outputs import (
    RawToolResult,
    ToolCallFailed,
    check_max_result_chars,
    describe,
    error_output,
    guarded_call,
    open_within,
    openai_tools,
    protocol_error_kind,
    text_items,
)

ClientTarget = FastMCP[Any] | str


def _protocol_error_code(exc: BaseException) -> object:
    """The JSON-RPC code of an MCP error raised by the client, or None for any other exception."""
    error = getattr(exc, "error", None)
    return getattr(error, "code", None)


class FastMCPClientToolSession:
    """One `fastmcp.Client` connection, opened by the first call: a dead server is a call error."""

    def __init__(
        self, target: ClientTarget, max_result_chars: int | None, connect_timeout: float
    ) -> None:
        self._target = target
        self._max_result_chars = max_result_chars
        self._connect_timeout = connect_timeout
        self._client: fastmcp.Client[Any] | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> fastmcp.Client[Any]:
        if self._client is None:
            async with self._connecting:
                if self._client is None:
                    client: fastmcp.Client[Any] = fastmcp.Client(self._target)
                    try:
                        await client.__aenter__()  # type: ignore[no-untyped-call]
                    except BaseException:
                        await _close_quietly(client)
                        raise
                    self._client = client
        return self._client

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - the ToolSession contract
    ) -> ToolOutput:
        try:
            client = await open_within(
                self._connect_timeout, self._connected(), "Connecting to the tool server failed"
            )
        except ToolCallFailed as exc:
            return error_output(exc.message, exc.kind, self._max_result_chars)
        except Exception as exc:
            message = f"Tool server unreachable: {describe(exc)}"
            return error_output(message, "sandbox", self._max_result_chars)

        async def invoke() -> RawToolResult:
            try:
                result = await client.call_tool(name, arguments, raise_on_error=False)
            except Exception as exc:
                code = _protocol_error_code(exc)
                if code is not None:
                    raise ToolCallFailed(describe(exc), protocol_error_kind(code)) from exc
                message = f"Tool server unreachable: {describe(exc)}"
                raise ToolCallFailed(message, "sandbox") from exc
            return RawToolResult(
                result.structured_content, text_items(result.content), result.is_error
            )

        return await guarded_call(name, timeout, invoke, self._max_result_chars)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close_quietly(client)


async def _close_quietly(client: fastmcp.Client[Any]) -> None:
    # The server may be gone already; there is nothing left to release then.
    with contextlib.suppress(Exception):
        await client.close()  # type: ignore[no-untyped-call]


class FastMCPClientTools:
    """A `ToolProvider` over `fastmcp.Client`; each `session()` is its own MCP session."""

    def __init__(
        self,
        target: ClientTarget,
        *,
        max_result_chars: int | None = None,
        connect_timeout: float = 30.0,
    ) -> None:
        if not isinstance(target, FastMCP | str):
            raise TypeError(
                "FastMCPClientTools needs a fastmcp.FastMCP server or an http(s)://…/mcp URL, "
                f"got {type(target).__name__}"
            )
        self.target = target
        self.max_result_chars = check_max_result_chars(max_result_chars)
        self.connect_timeout = connect_timeout

    async def list_tools(self) -> list[ToolSchema]:
        try:
            async with fastmcp.Client(self.target) as client:
                tools = await client.list_tools()
        except Exception as exc:
            message = f"Cannot list tools from {self._label()}: {describe(exc)}"
            raise ConnectionError(message) from exc
        return openai_tools(tools)

    def session(self) -> AbstractAsyncContextManager[FastMCPClientToolSession]:
        return self._session()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[FastMCPClientToolSession]:
        session = FastMCPClientToolSession(
            self.target, self.max_result_chars, self.connect_timeout
        )
        try:
            yield session
        finally:
            await session.aclose()

    async def aclose(self) -> None:
        """Sessions close themselves; the provider holds no connection."""

    def _label(self) -> str:
        return self.target if isinstance(self.target, str) else f"server {self.target.name!r}"
