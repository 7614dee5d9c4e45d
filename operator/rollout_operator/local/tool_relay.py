"""The supervisor of a local tool server: it runs `rolloutctl serve-tools` and relays its port.

`rolloutctl run` creates a listening socket on the host's loopback and hands it to this process,
which may live in a sandbox with a network namespace of its own. Connections accepted on that
socket are relayed to the tool server, which listens on the sandbox's own loopback and cannot
reach anything else. The supervisor also does what a Deployment does for a tool pod: when the
server dies after it served (a tool called `os._exit`, a crash, the CPU-time limit), it starts
it again at once, then with a growing pause (up to `MAX_BACKOFF_S`) while it keeps dying
young; a server that exits before it ever served (an import error) ends the supervisor at
once. Connections that arrive while a server restarts wait for it (up to `HOLD_S`) instead of
being refused, so only the calls the dead server was answering are lost.

    python -m rollout_operator.local.tool_relay --listen-fd FD -- CMD...

CMD must accept `--port 0 --ready-file FILE` (as `rolloutctl serve-tools` does); the supervisor
adds them and reads the server's port from FILE. Each restart is logged on stderr as
`tool server exited with code N; restarting (restart K)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

RESTARTS = 1000
START_TIMEOUT_S = 120.0
HOLD_S = 60.0
MAX_BACKOFF_S = 5.0
HEALTHY_AFTER_S = 30.0
"""A server that ran this long before it died starts again at once."""
_CHUNK = 65536


class ToolRelay:
    """Relays accepted connections to the current tool server and keeps that server running."""

    def __init__(self, listener: socket.socket, command: Sequence[str], *, restarts: int) -> None:
        self.listener = listener
        self.command = list(command)
        self.restarts = restarts
        self.port: int | None = None
        self.ready = asyncio.Event()
        self.restart_count = 0
        self.stopping = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        server = await asyncio.start_server(self._relay, sock=self.listener, backlog=1024)
        code = 0
        try:
            code = await self._supervise()
        finally:
            server.close()
            await self._stop_process()
        return code

    async def _supervise(self) -> int:
        failures = 0
        while not self.stopping.is_set():
            with tempfile.TemporaryDirectory(prefix="tool-server-") as scratch:
                ready = Path(scratch) / "ready"
                started = time.monotonic()
                self.process = await asyncio.create_subprocess_exec(
                    *self.command, "--port", "0", "--ready-file", str(ready),
                    stdin=asyncio.subprocess.DEVNULL,
                )
                waiter = asyncio.ensure_future(self.process.wait())
                stop = asyncio.ensure_future(self.stopping.wait())
                try:
                    await self._await_ready(ready, waiter)
                    served = self.port is not None
                    await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                self.port = None
                self.ready.clear()
                if self.stopping.is_set():
                    return 0
                code = await waiter
                if not served:
                    print(f"tool server exited with code {code}", file=sys.stderr, flush=True)
                    return code or 1  # it never started: a retry would fail the same way
                failures = 0 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
                if failures > self.restarts:
                    print(f"tool server exited with code {code}; {failures} restarts in a "
                          "row, giving up", file=sys.stderr, flush=True)
                    return code or 1
                self.restart_count += 1
                print(f"tool server exited with code {code}; restarting (restart "
                      f"{self.restart_count})", file=sys.stderr, flush=True)
                if failures:
                    await asyncio.sleep(min(0.1 * 2.0 ** (failures - 1), MAX_BACKOFF_S))
        return 0

    async def _await_ready(self, ready: Path, waiter: asyncio.Future[int]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not waiter.done() and time.monotonic() < deadline:
            url = _read_ready(ready)
            if url:
                self.port = urlsplit(url).port
                self.ready.set()
                return
            await asyncio.sleep(0.05)

    async def _stop_process(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.port is None:
            try:  # a server (re)starting: the connection waits for it
                await asyncio.wait_for(self.ready.wait(), HOLD_S)
            except (TimeoutError, asyncio.CancelledError):
                # Cancelled: the relay is stopping. The connection is closed quietly, so the
                # log ends with the server's own error, not a traceback of the shutdown.
                writer.close()
                return
        port = self.port
        if port is None:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))


def _read_ready(path: Path) -> str | None:
    """The URL in the server's ready file (written atomically), or None before it exists."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollout_operator.local.tool_relay")
    parser.add_argument("--listen-fd", type=int, required=True,
                        help="an inherited listening socket on the host's loopback")
    parser.add_argument("--restarts", type=int, default=RESTARTS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the tool server's command after --")
    listener = socket.socket(fileno=args.listen_fd)
    os.set_inheritable(listener.fileno(), False)
    relay = ToolRelay(listener, command, restarts=args.restarts)
    return asyncio.run(relay.run())


if __name__ == "__main__":
    sys.exit(main())
