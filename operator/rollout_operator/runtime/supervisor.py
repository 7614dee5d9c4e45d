"""Keep one server process running on a listening socket that outlives it.

The supervisor owns the listening socket and hands it to each server process it starts
(`--listen-fd FD --ready-file FILE` are added to the command). When the server dies after it
was ready (user code called `os._exit`, crashed it, or it asked for a fresh process), the next
one is started at once on the same socket: connections wait in the socket's backlog meanwhile,
so clients see a slow answer or a dropped request, never a refused port. A server that exits
before it was ever ready (its code does not load) ends the supervisor with the server's exit
code, since starting it again would fail the same way.

Each process gets its generation (0, 1, 2, ...) in `ROLLOUT_SCORER_GENERATION`, so clients can
count restarts from the answers they get.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

GENERATION_ENV = "ROLLOUT_SCORER_GENERATION"
START_TIMEOUT_S = 300.0
QUICK_EXIT_S = 2.0
"""A server that dies this soon after it was ready counts towards the restart backoff."""
MAX_BACKOFF_S = 5.0
MAX_FAILED_STARTS = 3


class Supervisor:
    """Runs `command` on the listening socket `listen_fd`, restarting it when it dies."""

    def __init__(self, command: Sequence[str], listen_fd: int, *,
                 env: Mapping[str, str] | None = None, name: str = "server") -> None:
        self.command = list(command)
        self.listen_fd = listen_fd
        self.env = dict(os.environ if env is None else env)
        self.name = name
        self.generation = 0
        self.restarts = 0
        self.stopping = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        """Supervise until `stopping` is set (0) or the server cannot start (its exit code)."""
        ever_ready = False
        failed_starts = 0
        quick_exits = 0
        while not self.stopping.is_set():
            with tempfile.TemporaryDirectory(prefix="supervised-") as scratch:
                ready_file = Path(scratch) / "ready"
                started = time.monotonic()
                code, ready = await self._run_once(ready_file)
            if self.stopping.is_set():
                return 0
            if not ready:
                if not ever_ready:
                    log.error("the %s exited with code %s before it was ready", self.name, code)
                    return code if code > 0 else 1
                failed_starts += 1
                if failed_starts >= MAX_FAILED_STARTS:
                    log.error("the %s failed to start %d times in a row (last exit code %s)",
                              self.name, failed_starts, code)
                    return code if code > 0 else 1
            else:
                ever_ready, failed_starts = True, 0
            quick_exits = quick_exits + 1 if time.monotonic() - started < QUICK_EXIT_S else 0
            self.generation += 1
            self.restarts += 1
            log.warning("the %s exited with code %s; starting it again (restart %d)",
                        self.name, code, self.restarts)
            if quick_exits:
                delay = min(0.1 * 2 ** (quick_exits - 1), MAX_BACKOFF_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        return 0

    async def _run_once(self, ready_file: Path) -> tuple[int, bool]:
        env = {**self.env, GENERATION_ENV: str(self.generation)}
        self.process = await asyncio.create_subprocess_exec(
            *self.command, "--listen-fd", str(self.listen_fd), "--ready-file", str(ready_file),
            env=env, stdin=asyncio.subprocess.DEVNULL, pass_fds=[self.listen_fd],
        )
        waiter = asyncio.ensure_future(self.process.wait())
        stopper = asyncio.ensure_future(self.stopping.wait())
        ready = False
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not waiter.done() and not self.stopping.is_set():
                if not ready and _is_file(ready_file):
                    ready = True
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    break
                if time.monotonic() > deadline:
                    log.error("the %s was not ready within %.0f s; stopping it", self.name,
                              START_TIMEOUT_S)
                    break
                await asyncio.wait({waiter, stopper}, timeout=0.05,
                                   return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                await self._stop_process()
            code = await waiter
        finally:
            stopper.cancel()
            if not waiter.done():
                waiter.cancel()
        return code, ready or _is_file(ready_file)

    async def _stop_process(self, grace_s: float = 5.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def stop(self) -> None:
        self.stopping.set()


def _is_file(path: Path) -> bool:
    """A stat: cheap enough to call from the event loop while polling for readiness."""
    return path.is_file()
