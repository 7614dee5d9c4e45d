"""Record streams over a run's folder: commit order, cursors, masked retries, following a run
that is still writing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rollout_operator.client import Cursor, CursorError, RecordStream, open_run
from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.shards import ShardWriter
from rollout_operator.runtime.storage import open_store
from tests.exports.records import record

Key = tuple[int, int, int]


def key(item: TrajectoryRecord) -> Key:
    return item.row_index, item.sample_index, item.attempt


async def write(folder: Path, shard: int, records: list[TrajectoryRecord],
                part_size: int) -> None:
    async with ShardWriter(open_store(str(folder)), "", shard, part_size=part_size) as writer:
        for item in records:
            await writer.add(item)


def committed(folder: Path) -> list[TrajectoryRecord]:
    """A run of 2 shards: shard 0 in parts of 3 records, shard 1 in parts of 2, one masked
    record run again (attempt 1)."""
    shard0 = [record(row, s, 1.0) for row in (0, 2, 4) for s in range(2)] + [record(6, 0, 0.0)]
    shard1 = [record(1, 0, 1.0), record(1, 1, None, status="masked"), record(3, 0, 0.5),
              record(1, 1, 0.0, attempt=1)]
    asyncio.run(write(folder, 0, shard0, 3))
    asyncio.run(write(folder, 1, shard1, 2))
    return shard0 + shard1


def test_a_stream_yields_every_committed_record_once_masked_ones_only_when_asked(
        tmp_path: Path) -> None:
    every = committed(tmp_path)
    streamed = list(open_run(str(tmp_path)))
    assert sorted(map(key, streamed)) == sorted(key(r) for r in every if r.status != "masked")
    # commit order within each shard: the retry of (1, 1) comes after what was before it
    shard1 = [key(r) for r in streamed if r.row_index % 2 == 1]
    assert shard1 == [(1, 0, 0), (3, 0, 0), (1, 1, 1)]
    with_masked = list(open_run(str(tmp_path), include_masked=True))
    assert sorted(map(key, with_masked)) == sorted(map(key, every))


@pytest.mark.parametrize("stop_after", [1, 2, 3, 5, 8, 10])
def test_resuming_from_a_cursor_yields_the_rest_without_duplicates(
        tmp_path: Path, stop_after: int) -> None:
    committed(tmp_path)
    everything = [key(r) for r in open_run(str(tmp_path))]
    first = open_run(str(tmp_path))
    seen: list[Key] = []
    for item in first:
        seen.append(key(item))
        if len(seen) == stop_after:
            break
    saved = str(first.cursor)
    assert saved.startswith("c1:")
    rest = [key(r) for r in open_run(str(tmp_path), cursor=saved)]
    assert seen + rest == everything
    assert str(Cursor.parse(saved)) == saved


def test_a_cursor_from_the_end_yields_only_what_is_committed_later(tmp_path: Path) -> None:
    committed(tmp_path)
    stream = open_run(str(tmp_path))
    assert len(list(stream)) == 10
    asyncio.run(write(tmp_path, 1, [record(5, 0, 1.0), record(5, 1, 1.0)], 1))
    later = [key(r) for r in open_run(str(tmp_path), cursor=stream.cursor)]
    assert later == [(5, 0, 0), (5, 1, 0)]


def test_a_stream_follows_a_run_until_it_has_finished(tmp_path: Path) -> None:
    async def main() -> list[Key]:
        finished = asyncio.Event()
        store = open_store(str(tmp_path))

        async def is_finished() -> bool:
            return finished.is_set()

        stream = RecordStream(store, finished=is_finished, poll_s=0.01)
        records = aiter(stream)
        await write(tmp_path, 0, [record(0, 0, 1.0)], 1)
        got = [key(await anext(records))]  # yielded while the run goes on
        await write(tmp_path, 1, [record(1, 0, 1.0), record(1, 1, 1.0)], 2)
        got.append(key(await anext(records)))
        finished.set()
        got += [key(r) async for r in records]
        return got

    assert asyncio.run(main()) == [(0, 0, 0), (1, 0, 0), (1, 1, 0)]


@pytest.mark.parametrize("text", ["", "0=1.0", "c2:0=1.0", "c1:0=1", "c1:x=1.2"])
def test_a_bad_cursor_says_what_a_cursor_looks_like(text: str) -> None:
    with pytest.raises(CursorError, match="cursor"):
        Cursor.parse(text)
