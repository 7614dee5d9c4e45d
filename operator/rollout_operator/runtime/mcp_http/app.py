"""The lean tool server's aiohttp application: a repo's FastMCP tools at `/mcp`, its own routes
(and `/health`) everywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from rollout_operator.runtime.mcp_http.asgi_bridge import asgi_handler, running_lifespan
from rollout_operator.runtime.mcp_http.sessions import DEFAULT_IDLE_TIMEOUT, SessionTable
from rollout_operator.runtime.mcp_http.tool_methods import ToolMethods
from rollout_operator.runtime.mcp_http.transport import McpEndpoint
from rollout_operator.runtime.tool_server import tool_http_app

if TYPE_CHECKING:
    from fastmcp import FastMCP

MCP_PATH: Final = "/mcp"
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
"""Largest request body accepted (tool arguments); larger ones get 413."""

SESSIONS: Final = web.AppKey("mcp_sessions", SessionTable)
"""The application's session table, for inspection."""


def mcp_http_app(
    server: FastMCP[Any],
    *,
    session_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """An aiohttp application serving `server`'s tools over MCP streamable HTTP at `/mcp`.

    Sessions idle for `session_idle_timeout` seconds are forgotten. The server's custom routes,
    a `GET /health` (the repo's own if it has one) and FastMCP's lifespan come from FastMCP's own
    app. A server configured with authentication is refused: this transport does not check
    tokens, so serving it would open the tools to anyone. Run it with aiohttp's
    `handler_cancellation=True`, so that a client that hangs up (how a stateless-revision client
    cancels) stops its tool call.
    """
    if getattr(server, "auth", None) is not None:
        raise ValueError(
            f"FastMCP server {server.name!r} is configured with authentication, which the lean "
            "tool server does not enforce; serve it with the fastmcp engine (--engine fastmcp)"
        )
    sessions = SessionTable(session_idle_timeout)
    endpoint = McpEndpoint(ToolMethods(server), sessions)
    routes_app = tool_http_app(server)
    lifespan_state: dict[str, Any] = {}

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with running_lifespan(routes_app.router.lifespan_context, routes_app) as state:
            lifespan_state.update(state)
            async with sessions.sweeping():
                yield

    app = web.Application(client_max_size=max_body_bytes)
    app[SESSIONS] = sessions
    app.router.add_route("*", MCP_PATH, endpoint.handle)
    app.router.add_route("*", "/{path:.*}", asgi_handler(routes_app, lifespan_state))
    app.cleanup_ctx.append(lifespan)
    return app
