"""The minimal keep-alive HTTP/1.1 client of the scoring path, against aiohttp's server on
loopback: answers and status codes, kept-alive connections the server closed, nothing
listening, and a server that drops the connection while answering."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from rollout_operator.runtime.lean_http import ConnectFailed, ConnectionBroken, LeanHttp
from tests.support.loopback import BackgroundApp


class EchoServer(BackgroundApp):
    def __init__(self) -> None:
        self.connections: set[object] = set()
        super().__init__(self._app, "echo")

    def _app(self) -> web.Application:
        app = web.Application()

        async def echo(request: web.Request) -> web.StreamResponse:
            self.connections.add(request.transport)
            body = await request.read()
            if body == b"drop":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if body == b"close":
                return web.Response(body=b"bye", headers={"Connection": "close"})
            status = 418 if body == b"teapot" else 200
            return web.Response(body=body[::-1], status=status,
                                content_type="application/json")

        async def chunked(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            reply = web.StreamResponse()
            reply.enable_chunked_encoding()
            await reply.prepare(request)
            await reply.write(request.headers.get("Authorization", "").encode())
            for part in body.split(b","):
                await reply.write(b"|" + part)
            await reply.write_eof()
            return reply

        app.router.add_post("/echo", echo)
        app.router.add_post("/chunked", chunked)
        return app


@pytest.fixture
def server() -> EchoServer:
    with EchoServer() as running:
        yield running  # type: ignore[misc]


async def test_answers_reuse_connections_and_survive_a_closed_one(server: EchoServer) -> None:
    client = LeanHttp(f"http://127.0.0.1:{server.port}")
    try:
        assert await client.post("/echo", b"abc") == (200, b"cba")
        assert await client.post("/echo", b"teapot") == (418, b"topaet")
        assert len(server.connections) == 1  # kept alive
        assert await client.post("/echo", b"close") == (200, b"bye")
        assert await client.post("/echo", b"xyz") == (200, b"zyx")  # a new connection
        assert len(server.connections) == 2
        for idle in list(client._idle):  # the server side goes away while idle
            idle.writer.transport.abort()
        await asyncio.sleep(0.05)
        assert await client.post("/echo", b"again") == (200, b"niaga")
        answers = await asyncio.gather(*(client.post("/echo", str(i).encode() * 3)
                                         for i in range(20)))
        assert answers == [(200, (str(i).encode() * 3)[::-1]) for i in range(20)]
    finally:
        await client.close()


async def test_a_connection_dropped_while_answering_is_broken(server: EchoServer) -> None:
    client = LeanHttp(f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(ConnectionBroken):
            await client.post("/echo", b"drop", fresh=True)
    finally:
        await client.close()


async def test_nothing_listening_is_a_failed_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = LeanHttp(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectFailed):
        await client.post("/echo", b"abc")
    with pytest.raises(ValueError, match="http://host:port"):
        LeanHttp("https://example.com")


async def test_chunked_answers_and_extra_headers(server: EchoServer) -> None:
    client = LeanHttp(f"http://127.0.0.1:{server.port}", headers={"Authorization": "Bearer k"})
    try:
        assert await client.post("/chunked", b"a,bb,ccc") == (200, b"Bearer k|a|bb|ccc")
        assert await client.post("/echo", b"still") == (200, b"llits")  # the connection is fine
    finally:
        await client.close()
