"""An HTTP/1.1 proxy on loopback that loses or delays the answers to chosen requests.

`FaultProxy(upstream_port)` serves on a free port from a thread of its own and passes every
request on to `127.0.0.1:upstream_port` over a connection of its own per client connection. A
rule decides, per request, what happens to the answer once the upstream server has handled the
request in full (so the object is written):

- `"drop"`: the answer is thrown away and the client's connection closed, as when a response is
  lost on the network;
- `"delay"`: the answer is held for `delay_s` seconds (longer than the client waits) and then
  sent, if the client is still there;
- `None`: the answer is passed on.

Setting `outage` takes the upstream server away, for every request, until it is set back to
None: `"refuse"` stops listening (connections are refused, as by a host whose server is down;
open ones are closed), `"reset"` closes each connection without an answer (as a server that dies
on every request), `"503"` answers 503 Service Unavailable (as a load balancer with no backend
behind it). `refused` counts the requests and connections turned away so (not those refused by
the kernel).

`drop_first(method, substring)` and `delay_first(...)` build the usual rule: the first request
of that method to each path containing `substring` is faulted, its repeats are not.
`requests` lists (method, path, status, fault) of every request the upstream answered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Literal, Self

from tests.support.loopback import HOST

Fault = Literal["drop", "delay"] | None
Outage = Literal["refuse", "reset", "503"] | None
_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 19\r\nConnection: close\r\n\r\nService Unavailable")
Rule = Callable[[str, str], Fault]


def _first(method: str, substring: str, fault: Fault) -> Rule:
    seen: set[str] = set()
    lock = threading.Lock()

    def rule(request_method: str, path: str) -> Fault:
        if request_method != method or substring not in path:
            return None
        with lock:
            if path in seen:
                return None
            seen.add(path)
        return fault

    return rule


def drop_first(method: str, substring: str) -> Rule:
    """Lose the answer to the first `method` request of each path containing `substring`."""
    return _first(method, substring, "drop")


def delay_first(method: str, substring: str) -> Rule:
    """Hold the answer to the first `method` request of each path containing `substring`."""
    return _first(method, substring, "delay")


class FaultProxy:
    def __init__(self, upstream_port: int, rule: Rule | None = None, *,
                 delay_s: float = 5.0) -> None:
        self.upstream_port = upstream_port
        self.rule: Rule = rule or (lambda method, path: None)
        self.delay_s = delay_s
        self._outage: Outage = None
        self.refused = 0
        self._server: asyncio.Server | None = None
        self.requests: list[tuple[str, str, int, Fault]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._held: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def faulted(self, fault: Fault = None) -> list[tuple[str, str, int, Fault]]:
        """The requests whose answer was faulted (with `fault`, those of that kind only)."""
        return [r for r in self.requests if r[3] is not None and fault in (None, r[3])]

    @property
    def outage(self) -> Outage:
        return self._outage

    @outage.setter
    def outage(self, kind: Outage) -> None:
        listening = kind != "refuse"
        changes = (self._outage != "refuse") != listening
        self._outage = kind
        if changes and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._listen(listening), self._loop).result(10)

    async def _listen(self, on: bool) -> None:
        if on:
            self._server = await asyncio.start_server(self._client, HOST, self.port)
        elif self._server is not None:
            self._server.close()
            self._server = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._client, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        if self._server is not None:
            self._server.close()
        for task in list(self._held):
            task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            if self._outage in ("reset", "refuse"):
                self.refused += 1
                return
            while True:
                request = await _read_message(reader, request=True)
                if request is None:
                    return
                if self._outage is not None:
                    self.refused += 1
                    if self._outage == "503":
                        writer.write(_UNAVAILABLE)
                        await writer.drain()
                    return
                head, body = request
                method, path = _request_line(head)
                if upstream is None:
                    upstream = await asyncio.open_connection(HOST, self.upstream_port)
                up_reader, up_writer = upstream
                up_writer.write(head + body)
                await up_writer.drain()
                response = await _read_message(up_reader, request=False, method=method)
                if response is None:
                    return
                status = int(head_status(response[0]))
                fault = self.rule(method, path)
                self.requests.append((method, path, status, fault))
                if fault == "drop":
                    return
                if fault == "delay":
                    task = asyncio.current_task()
                    assert task is not None
                    self._held.add(task)
                    try:
                        await asyncio.sleep(self.delay_s)
                    finally:
                        self._held.discard(task)
                writer.write(response[0] + response[1])
                await writer.drain()
                if fault == "delay":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()


def head_status(head: bytes) -> str:
    return head.split(b" ", 2)[1].decode()


def _request_line(head: bytes) -> tuple[str, str]:
    method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return method, path


def _headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


async def _read_message(
    reader: asyncio.StreamReader, *, request: bool, method: str = ""
) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 message: (head with its blank line, body as sent). None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    headers = _headers(head)
    if not request and (method == "HEAD" or head_status(head) in ("204", "304")):
        return head, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                break
        return head, body
    length = headers.get("content-length")
    if length is not None:
        return head, await reader.readexactly(int(length))
    if request:
        return head, b""
    return head, await reader.read()  # an answer that ends when the connection does
