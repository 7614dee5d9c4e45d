"""A lean MCP tool server: a loaded FastMCP server's tools over streamable HTTP, on aiohttp.

FastMCP's own HTTP transport runs every session through the MCP SDK's stream machinery, which
costs several milliseconds of CPU per session; a rollout opens one session per trajectory, so the
tool pods would need several cores for what one worker core drives. This server speaks the same
protocol (any MCP client can use it, FastMCP's `Client` included) with a session as a table entry
and tool calls going straight to `FastMCP.call_tool`.

What it leaves to the fastmcp engine: authentication, server-to-client messages (a tool's
`Context` logging, progress, sampling or elicitation need a client session it does not keep),
event streams and resumption, and multi-round-trip tool input.
"""

from __future__ import annotations

from rollout_operator.runtime.mcp_http.app import MCP_PATH, SESSIONS, mcp_http_app
from rollout_operator.runtime.mcp_http.sessions import McpSession, SessionTable
from rollout_operator.runtime.mcp_http.tool_methods import ToolMethods
from rollout_operator.runtime.mcp_http.transport import McpEndpoint

__all__ = [
    "MCP_PATH",
    "SESSIONS",
    "McpEndpoint",
    "McpSession",
    "SessionTable",
    "ToolMethods",
    "mcp_http_app",
]
