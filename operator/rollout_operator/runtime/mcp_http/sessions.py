"""MCP sessions of the handshake revisions: a table entry each, forgotten when idle.

A session holds no server state beyond its revision and its calls in flight (so that the client
can cancel one), which makes opening one about as cheap as a dictionary insert. A client that
vanishes without ending its session leaves an entry that the sweep removes once it has been idle
for `idle_timeout` seconds; a session with a call still running is never swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from rollout_operator.runtime.mcp_http.protocol import RequestId

DEFAULT_IDLE_TIMEOUT = 600.0


@dataclass(slots=True, eq=False)
class McpSession:
    id: str
    version: str
    last_active: float
    in_flight: dict[RequestId, asyncio.Task[Any]] = field(default_factory=dict)

    def track(self, request_id: RequestId, task: asyncio.Task[Any]) -> None:
        self.in_flight[request_id] = task

    def untrack(self, request_id: RequestId, task: asyncio.Task[Any], now: float) -> None:
        if self.in_flight.get(request_id) is task:
            del self.in_flight[request_id]
        self.last_active = now

    def cancel(self, request_id: Any) -> bool:
        """Cancel the call with this id, if one is running; ids are matched as sent."""
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return False
        task = self.in_flight.get(request_id)
        if task is None:
            return False
        task.cancel()
        return True

    def cancel_all(self) -> None:
        for task in self.in_flight.values():
            task.cancel()


class SessionTable:
    """The open sessions by id."""

    def __init__(
        self,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be a positive number of seconds, got "
                             f"{idle_timeout}")
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._sessions: dict[str, McpSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def open(self, version: str) -> McpSession:
        session = McpSession(secrets.token_hex(16), version, self.clock())
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> McpSession | None:
        """The session, marked active now; None for an id this server does not know."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.last_active = self.clock()
        return session

    def close(self, session_id: str) -> bool:
        """End a session and cancel its calls in flight; False if there was none."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.cancel_all()
        return True

    def expire_idle(self) -> int:
        """Forget the sessions idle for longer than the timeout; how many went."""
        deadline = self.clock() - self.idle_timeout
        idle = [
            session_id
            for session_id, session in self._sessions.items()
            if session.last_active < deadline and not session.in_flight
        ]
        for session_id in idle:
            del self._sessions[session_id]
        return len(idle)

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.cancel_all()
        self._sessions.clear()

    async def sweep_forever(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(interval)
            self.expire_idle()

    @contextlib.asynccontextmanager
    async def sweeping(self) -> AsyncIterator[SessionTable]:
        """Sweep idle sessions in the background while the context is open."""
        task = asyncio.get_running_loop().create_task(self.sweep_forever())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.close_all()
