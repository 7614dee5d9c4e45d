"""Listing and calling a loaded FastMCP server's tools across the FastMCP versions we support.

FastMCP 2.13 and later have `FastMCP.list_tools()` and `FastMCP.call_tool()`. FastMCP 2.12 (the
line the public Osmosis example pins) has only the private `_list_tools()` and `_call_tool()`,
which must run inside an active `Context` of the server. Both return the same `Tool` and
`ToolResult` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


async def list_server_tools(server: Any) -> Sequence[Any]:
    """The server's tools (`fastmcp.tools.Tool` objects)."""
    if hasattr(server, "list_tools"):
        return list(await server.list_tools())
    from fastmcp.server.context import Context

    async with Context(fastmcp=server):
        return list(await server._list_tools())


async def call_server_tool(server: Any, name: str, arguments: dict[str, Any]) -> Any:
    """Call tool `name` (a `fastmcp.tools.tool.ToolResult`); raises what FastMCP raises."""
    if hasattr(server, "call_tool"):
        return await server.call_tool(name, arguments)
    from fastmcp.server.context import Context

    async with Context(fastmcp=server):
        return await server._call_tool(name, arguments)
