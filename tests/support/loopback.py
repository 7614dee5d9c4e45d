"""Loopback ports for test servers, and an aiohttp app served from a background thread.

Tests that drive synchronous code (subprocesses, `asyncio.run` inside the code under test) need
a server that keeps answering outside the test's own event loop: `BackgroundApp` gives it a
thread and a loop of its own, on a port the system picks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Self

from aiohttp import web

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def site_port(site: web.TCPSite) -> int:
    """The port a started site listens on (it was asked for port 0)."""
    server = site._server
    assert server is not None, "the site is not started"
    return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


class BackgroundApp:
    """The app `make_app` builds, served on a free loopback port from its own thread.

    A context manager: `with Server() as server:` serves for the block.
    """

    def __init__(self, make_app: Callable[[], web.Application], name: str) -> None:
        self.port = 0
        self._make_app = make_app
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Serve until `stop`; raise if the server is not listening within 10 s."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self._make_app(), access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, HOST, 0)
            loop.run_until_complete(site.start())
            self.port = site_port(site)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self._name} did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
