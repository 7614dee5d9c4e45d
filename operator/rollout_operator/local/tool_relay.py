"""The supervisor of a local tool server: it runs `rolloutctl serve-tools` and relays its port.

`rolloutctl run` creates a listening socket on the host's loopback and hands it to this process,
which may live in a sandbox with a network namespace of its own. Connections accepted on that
socket are relayed to the tool server, which listens on the sandbox's own loopback and cannot
reach anything else. The supervisor also does what a Deployment does for a tool pod: when the
server dies after it served (a crash, or the CPU-time limit), it starts it again, a few times;
a server that exits before it ever served (an import error) ends the supervisor at once.

    python -m rollout_operator.local.tool_relay --listen-fd FD -- CMD...

CMD must accept `--port 0 --ready-file FILE` (as `rolloutctl serve-tools` does); the supervisor
adds them and reads the server's port from FILE. Until a server is ready, accepted connections
are closed at once, so a client's health check simply fails and is tried again.
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

RESTARTS = 5
START_TIMEOUT_S = 120.0
_CHUNK = 65536


class ToolRelay:
    """Relays accepted connections to the current tool server and keeps that server running."""

    def __init__(self, listener: socket.socket, command: Sequence[str], *, restarts: int) -> None:
        self.listener = listener
        self.command = list(command)
        self.restarts = restarts
        self.port: int | None = None
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
                if self.stopping.is_set():
                    return 0
                code = await waiter
                print(f"tool server exited with code {code}", file=sys.stderr, flush=True)
                if not served:
                    return code or 1  # it never started: a retry would fail the same way
                # A server that ran for a while and died is restarted with a fresh budget.
                failures = 1 if time.monotonic() - started > 60 else failures + 1
                if failures > self.restarts:
                    return code or 1
                await asyncio.sleep(min(2.0 ** (failures - 1), 10.0))
        return 0

    async def _await_ready(self, ready: Path, waiter: asyncio.Future[int]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not waiter.done() and time.monotonic() < deadline:
            url = _read_ready(ready)
            if url:
                self.port = urlsplit(url).port
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
