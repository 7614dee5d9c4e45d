"""A minimal HTTP/1.1 client for one JSON endpoint on the hot path: keep-alive connections in a
small pool, `Content-Length` bodies only, no redirects, cookies, proxies or TLS.

The worker posts every finished trajectory to the scorer server; at a few hundred a second,
aiohttp's client costs about 0.4 ms of CPU per request, this one a fraction of that. It serves
our own servers (the scoring API) and the model gateway's plain-HTTP upstreams (vLLM, SGLang, a
local OpenAI-compatible server); answers come with a `Content-Length` or a chunked body.

Failures come in two kinds, which callers treat differently: `ConnectFailed` (nothing accepted
the connection: the server is not there yet) and `ConnectionBroken` (the request went out and
the connection broke before a whole answer came back: the server died while answering). A
kept-alive connection that turns out to be closed before it carried anything is replaced once,
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class ConnectFailed(ConnectionError):
    """Nothing accepted the connection."""


class ConnectionBroken(ConnectionError):
    """The connection broke after the request was sent."""


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class LeanHttp:
    """POSTs to `http://host:port`, keeping up to `keep` idle connections."""

    def __init__(self, url: str, *, keep: int = 8, max_response_bytes: int = 64 * 2**20,
                 headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"LeanHttp needs an http://host:port URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.base_path = parts.path.rstrip("/")
        self.keep = keep
        self.max_response_bytes = max_response_bytes
        self._idle: list[_Connection] = []
        self._extra_head = "".join(f"{name}: {value}\r\n"
                                   for name, value in (headers or {}).items())

    async def post(self, path: str, body: bytes, *, fresh: bool = False) -> tuple[int, bytes]:
        """(status, body) of `POST path`; `fresh` uses a new connection and closes it after."""
        head = (f"POST {self.base_path}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{self._extra_head}\r\n"
                ).encode("ascii")
        for attempt in range(2):
            connection = None if fresh else self._take()
            reused = connection is not None
            if connection is None:
                connection = await self._open()
            try:
                connection.writer.write(head + body)
                await connection.writer.drain()
                status, data, keep_alive = await self._read(connection.reader)
            except (ConnectionError, OSError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError) as exc:
                connection.close()
                if reused and attempt == 0 and not _got_bytes(exc):
                    continue  # a kept-alive connection the server had closed: try a new one
                raise ConnectionBroken(f"{type(exc).__name__}: {exc}") from None
            except BaseException:
                connection.close()  # cancelled (a timeout) mid-request: the state is unknown
                raise
            connection.used = True
            if keep_alive and not fresh and len(self._idle) < self.keep:
                self._idle.append(connection)
            else:
                connection.close()
            return status, data
        raise AssertionError("unreachable")

    def _take(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.writer.is_closing() and not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def _open(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port,
                                                           limit=MAX_HEADER_BYTES)
        except OSError as exc:
            raise ConnectFailed(f"{self.host}:{self.port}: {exc}") from None
        return _Connection(reader, writer)

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 response: {lines[0][:80]!r}")
        status = int(rest.split(" ", 1)[0])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > self.max_response_bytes:
                raise ValueError(
                    f"the response is {length} bytes (limit {self.max_response_bytes})")
            data = await reader.readexactly(length)
        else:
            raise ValueError("the response has no Content-Length")
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        return status, data, keep_alive

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > self.max_response_bytes:
                raise ValueError(f"the response is over {self.max_response_bytes} bytes")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _got_bytes(exc: BaseException) -> bool:
    """Whether the server had started answering when the connection broke."""
    return isinstance(exc, asyncio.IncompleteReadError) and bool(exc.partial)
