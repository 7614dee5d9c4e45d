"""A submitted run: its identity, where its records are, and waiting for and streaming them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout_operator.client.cursor import Cursor
from rollout_operator.client.stream import DEFAULT_POLL_S, RecordStream
from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.storage import ObjectStore, open_store


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended: `state` Succeeded or Failed (locally also Stopped), and what its
    backend reported (the `rolloutctl run --json` object, or the RolloutRun's status)."""

    state: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "Succeeded"


class RunBackend(Protocol):
    """What a `Run` asks of the backend that started it."""

    async def finished(self, run: Run) -> bool: ...

    def wait(self, run: Run, timeout_s: float | None) -> RunOutcome: ...


class Run:
    """One RolloutRun, local or on a cluster. `stream()` yields its records as they are
    committed; `wait()` blocks until it ends."""

    def __init__(self, *, name: str, namespace: str, uid: str, run_prefix: str,
                 backend: RunBackend, endpoint: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.run_prefix = run_prefix
        """The run's folder: `<output.url>/<namespace>/<name>-<uid8>`."""
        self.backend = backend
        self._endpoint = endpoint
        self._environ = dict(environ if environ is not None else os.environ)

    def __repr__(self) -> str:
        return f"Run({self.namespace}/{self.name}, {self.run_prefix})"

    def store(self) -> ObjectStore:
        return open_store(self.run_prefix, endpoint=self._endpoint, environ=self._environ)

    def wait(self, timeout_s: float | None = None) -> RunOutcome:
        """Block until the run ends (TimeoutError after `timeout_s`)."""
        return self.backend.wait(self, timeout_s)

    async def finished(self) -> bool:
        return await self.backend.finished(self)

    def records(self, cursor: Cursor | str | None = None, *, include_masked: bool = False,
                follow: bool = True, poll_s: float = DEFAULT_POLL_S) -> RecordStream:
        """The async stream of the run's records (`async for record in run.records()`);
        with `follow`, it ends when the run has ended and every record is yielded."""
        return RecordStream(self.store(), cursor=cursor, include_masked=include_masked,
                            finished=self.finished if follow else None, poll_s=poll_s)

    def stream(self, cursor: Cursor | str | None = None, *, include_masked: bool = False,
               follow: bool = True, poll_s: float = DEFAULT_POLL_S) -> SyncRecordStream:
        """`records()` for a plain `for` loop (not inside a running event loop)."""
        return SyncRecordStream(self.records(cursor, include_masked=include_masked,
                                             follow=follow, poll_s=poll_s))


class SyncRecordStream:
    """A `RecordStream` iterated without an event loop of the caller's; `cursor` as there."""

    def __init__(self, stream: RecordStream) -> None:
        self._stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._records: AsyncIterator[TrajectoryRecord] | None = None

    @property
    def cursor(self) -> Cursor:
        return self._stream.cursor

    def __iter__(self) -> Iterator[TrajectoryRecord]:
        loop = asyncio.new_event_loop()
        records = aiter(self._stream)
        try:
            while True:
                try:
                    yield loop.run_until_complete(anext(records))
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(records.aclose())  # type: ignore[attr-defined]
            loop.close()
