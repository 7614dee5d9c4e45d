"""Headless Chromium driven over the Chrome DevTools Protocol, with aiohttp's websocket client.

`Browser` starts Debian's `chromium` with a remote debugging port on loopback, opens one page
and records every network request it makes, every console message and every uncaught
exception. Enough for tests and benchmarks of a static page: load a file:// URL, run
JavaScript in it, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from types import TracebackType
from typing import Any, Self

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
NOT_FOUND = ("headless Chromium not found (install Debian's package: apt-get install chromium; "
             ".ci/run does on CI)")


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM if set, else the first of CHROMIUM_NAMES on PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if shutil.which(given) else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def chromium_flags(binary: str, *extra: str) -> list[str]:
    return [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update",
            "--window-size=1280,1600", *extra]


class Browser:
    """One headless Chromium with one page; use as `async with Browser(binary) as browser`."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.exceptions: list[str] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._profile = tempfile.TemporaryDirectory(prefix="report-chromium-")

    async def __aenter__(self) -> Self:
        self._process = await asyncio.create_subprocess_exec(
            *chromium_flags(self.binary, "--remote-debugging-address=127.0.0.1",
                            "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
                            "about:blank"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = await self._devtools_port()
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        self._socket = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Network", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        await self._socket.close()
        await self._http.close()
        self._process.kill()
        await self._process.wait()
        self._profile.cleanup()

    async def _devtools_port(self) -> int:
        assert self._process.stderr is not None
        while True:
            line = await asyncio.wait_for(self._process.stderr.readline(), 30)
            if not line:
                raise RuntimeError("chromium exited before it opened its debugging port")
            found = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                # keep reading stderr so that chromium never blocks on a full pipe
                asyncio.get_running_loop().create_task(self._drain(self._process.stderr))
                return int(found.group(1))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            self._event(data.get("method", ""), data.get("params") or {})

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append((params["type"], text))
        elif method == "Log.entryAdded":
            self.console.append((params["entry"]["level"], params["entry"]["text"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.exceptions.append(str(details.get("exception", {}).get("description")
                                       or details.get("text")))
        self._events.setdefault(method, asyncio.Event()).set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._socket.send_str(json.dumps({"id": number, "method": method,
                                                "params": params}))
        answer = await asyncio.wait_for(future, 60)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str) -> None:
        """Load `url` and wait for its load event and for the page's `data-ready` mark."""
        loaded = self._events.setdefault("Page.loadEventFired", asyncio.Event())
        loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded.wait(), 60)
        ready = await self.evaluate("""new Promise((resolve) => {
            const until = performance.now() + 30000;
            const check = () => document.body && document.body.dataset.ready ? resolve(true)
                : performance.now() > until ? resolve(false) : setTimeout(check, 10);
            check();
        })""")
        if not ready:
            raise AssertionError(f"{url} never marked itself ready; console: {self.console}, "
                                 f"exceptions: {self.exceptions}")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        answer = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}...: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self) -> bytes:
        """The page as it is now, as PNG."""
        shot = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])
