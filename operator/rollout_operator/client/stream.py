"""Trajectory records as their parts are committed, read from the run's folder in object
storage: no server but the store.

What a stream yields: every committed record in commit order within each shard (parts in
number order, records in part order; shards interleave as their parts appear), masked ones left
out unless asked for. A masked rollout that is run again commits a new record with the next
`attempt`, which the stream yields when it is committed; among the records it yields with
`include_masked=False`, each (row, sample) appears at most once, because a record is committed
once per (row, sample, attempt) and only a masked one is ever run again. With
`include_masked=True` a trainer sees the masked attempts too, keyed by (row_index,
sample_index, attempt).

A stream resumed from its `cursor` yields exactly the records after the last one yielded
before: nothing twice, nothing missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from rollout_operator.client.cursor import Cursor
from rollout_operator.runtime.records import RecordReadError, TrajectoryRecord
from rollout_operator.runtime.shards import list_all_parts
from rollout_operator.runtime.storage import ObjectStore

DEFAULT_POLL_S = 1.0


class RecordStream:
    """Iterate with `async for` (or `for`, through `Run.stream`); `cursor` is where it stands
    after the last record it yielded."""

    def __init__(self, store: ObjectStore, *, cursor: Cursor | str | None = None,
                 finished: Callable[[], Awaitable[bool]] | None = None,
                 include_masked: bool = False, poll_s: float = DEFAULT_POLL_S) -> None:
        self.store = store
        self.cursor = Cursor.parse(cursor)
        self._finished = finished
        self.include_masked = include_masked
        self.poll_s = poll_s

    def __aiter__(self) -> AsyncIterator[TrajectoryRecord]:
        return self._records()

    async def _records(self) -> AsyncIterator[TrajectoryRecord]:
        while True:
            # Whether the run had finished is asked before listing, so that a listing made
            # after the end holds every part.
            done = self._finished is None or await self._finished()
            new = 0
            for shard, part, key in await list_all_parts(self.store, ""):
                position = self.cursor.at(shard)
                if part < position.part:
                    continue
                skip = position.line if part == position.part else 0
                lines = [line for line in (await self.store.get(key)).splitlines()
                         if line.strip()]
                for number, line in enumerate(lines[skip:], start=skip + 1):
                    record = _parse(self.store, key, number, line)
                    self.cursor.advance(shard, part, number)
                    if record.status == "masked" and not self.include_masked:
                        continue
                    new += 1
                    yield record
                self.cursor.advance(shard, part + 1, 0)
            if done:
                return
            if not new:
                await asyncio.sleep(self.poll_s)


def _parse(store: ObjectStore, key: str, number: int, line: bytes) -> TrajectoryRecord:
    try:
        return TrajectoryRecord.model_validate_json(line)
    except ValueError as exc:
        raise RecordReadError(f"{store.url_for(key)} line {number} is not a trajectory "
                              f"record: {exc}") from None
