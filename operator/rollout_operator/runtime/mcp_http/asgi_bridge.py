"""The repo's own HTTP routes (`@mcp.custom_route`, `/health`) served from aiohttp.

Those routes are Starlette endpoints inside FastMCP's app; rather than re-implement them, every
request outside `/mcp` is handed to that app over ASGI. The app's lifespan (which also enters the
FastMCP server's own lifespan) runs for as long as the aiohttp application does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from starlette.types import ASGIApp, Message, Scope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding"})

LifespanContext = Callable[[Any], contextlib.AbstractAsyncContextManager[Mapping[str, Any] | None]]


def _scope(request: web.Request, state: Mapping[str, Any]) -> Scope:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    local = transport.get_extra_info("sockname") if transport is not None else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(local[:2]) if local else None,
        "state": dict(state),
    }


def asgi_handler(app: ASGIApp, state: Mapping[str, Any]) -> Handler:
    """An aiohttp handler that lets `app` answer; `state` holds what its lifespan yielded (read
    per request, so it may be filled in once the lifespan has started)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        delivered = False
        status = 500
        headers: CIMultiDict[str] = CIMultiDict()
        chunks: list[bytes] = []
        streaming: web.StreamResponse | None = None

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # until the response is done and this is cancelled
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    key = name.decode("latin-1")
                    if key.lower() not in _DROPPED_HEADERS:
                        headers.add(key, value.decode("latin-1"))
            elif message["type"] == "http.response.body":
                chunk = bytes(message.get("body", b""))
                if not message.get("more_body", False) and streaming is None:
                    chunks.append(chunk)
                    return
                if streaming is None:
                    streaming = web.StreamResponse(status=status, headers=headers)
                    await streaming.prepare(request)
                    for earlier in chunks:
                        await streaming.write(earlier)
                    chunks.clear()
                await streaming.write(chunk)

        await app(_scope(request, state), receive, send)
        if streaming is not None:
            await streaming.write_eof()
            return streaming
        return web.Response(status=status, headers=headers, body=b"".join(chunks))

    return handle


@contextlib.asynccontextmanager
async def running_lifespan(
    lifespan: LifespanContext, app: Any
) -> AsyncIterator[Mapping[str, Any]]:
    """Enter `lifespan(app)` in a task of its own and leave it there when the context ends.

    Its own task, because lifespans built on task groups must be left by the task that entered
    them, and aiohttp may start and clean up an application from different tasks.
    """
    entered: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
    leave = asyncio.Event()

    async def hold() -> None:
        try:
            async with lifespan(app) as state:
                entered.set_result(dict(state or {}))
                await leave.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise

    task = asyncio.get_running_loop().create_task(hold())
    try:
        state = await entered
    except BaseException:
        await asyncio.gather(task, return_exceptions=True)
        raise
    try:
        yield state
    finally:
        leave.set()
        await task
