"""One loopback address for the Services of a run, as pods would reach them by name.

The operator builds every Service URL from one template (`ROLLOUT_OPERATOR_SERVICE_URL_TEMPLATE`);
tests point it at a `ServiceRouter`, which forwards each request by its path to the server that
plays that Service: `/mcp` to the tool server, the scoring API (`/v1/...`, `/health`) to the
scorer server. It forwards bodies and status codes as they are (the scoring API answers JSON
in one piece, MCP's JSON mode as well), and when the server behind a request goes away it
breaks the client's connection, as a Service's TCP forwarding would.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from tests.support.loopback import BackgroundApp

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class ServiceRouter(BackgroundApp):
    """Forwards `/mcp*` to `tools` and every other path to `scorers` (base URLs)."""

    def __init__(self, tools: str, scorers: str) -> None:
        self.tools = tools.rstrip("/").removesuffix("/mcp")
        self.scorers = scorers.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        super().__init__(self._app, "service-router")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        base = self.tools if request.path.startswith("/mcp") else self.scorers
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        try:
            async with self._session.request(request.method, base + request.path_qs,
                                             headers=headers, data=body) as upstream:
                data = await upstream.read()
                out: dict[str, Any] = {k: v for k, v in upstream.headers.items()
                                       if k.lower() not in _HOP_HEADERS}
                return web.Response(status=upstream.status, body=data, headers=out)
        except (aiohttp.ClientError, OSError):
            # As a Service (kube-proxy forwards TCP) would: the client's connection breaks.
            if request.transport is not None:
                request.transport.abort()
            raise
