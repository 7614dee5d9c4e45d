"""Tools of a FastMCP server loaded into this process, called directly.

The hot path for local runs: no MCP framing and no serialisation round trip, and for plain
function tools not even FastMCP's per-call dispatch (see `fastmcp_direct`). Results and errors
read exactly as over MCP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastmcp import FastMCP

from rollout_operator.runtime.interfaces import ToolOutput, ToolSchema
from rollout_operator.runtime.tools.fastmcp_compat import list_server_tools
from rollout_operator.runtime.tools.fastmcp_direct import DirectToolCaller
from rollout_operator.runtime.tools.outputs import (
    RawToolResult,
    ToolCallFailed,
    check_max_result_chars,
    describe,
    guarded_call,
    openai_tools,
    text_items,
)


class InProcessToolSession:
    """Calls into the server; it holds no state, the server's tools are shared by all rollouts."""

    def __init__(self, caller: DirectToolCaller, max_result_chars: int | None) -> None:
        self._caller = caller
        self._max_result_chars = max_result_chars

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - the ToolSession contract
    ) -> ToolOutput:
        async def invoke() -> RawToolResult:
            try:
                result = await self._caller.call(name, arguments)
            except Exception as exc:
                # Unknown tool, invalid arguments and a raising tool all arrive here, with the
                # same message a client would read in the error result.
                raise ToolCallFailed(describe(exc), "tool") from exc
            return RawToolResult(
                result.structured_content,
                text_items(result.content),
                bool(getattr(result, "is_error", False)),
            )

        return await guarded_call(name, timeout, invoke, self._max_result_chars)


class InProcessTools:
    """A `ToolProvider` over a FastMCP server object in this process."""

    def __init__(self, server: FastMCP[Any], *, max_result_chars: int | None = None) -> None:
        if not isinstance(server, FastMCP):
            raise TypeError(
                f"InProcessTools needs a fastmcp.FastMCP server, got {type(server).__name__}"
            )
        self.server = server
        self.max_result_chars = check_max_result_chars(max_result_chars)
        self._caller = DirectToolCaller(server)

    async def list_tools(self) -> list[ToolSchema]:
        return openai_tools(await list_server_tools(self.server))

    def session(self) -> AbstractAsyncContextManager[InProcessToolSession]:
        return self._session()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[InProcessToolSession]:
        yield InProcessToolSession(self._caller, self.max_result_chars)

    async def aclose(self) -> None:
        """Nothing to release: the server belongs to whoever loaded it."""
