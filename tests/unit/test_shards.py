"""Shard planning, the run's storage layout, and committing records in write-once parts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_operator.runtime.records import RecordError, RecordReadError, TrajectoryRecord
from rollout_operator.runtime.run_layout import (
    bundle_key,
    bundle_url,
    parse_part_key,
    part_key,
    run_prefix,
)
from rollout_operator.runtime.shards import (
    Kept,
    ReadStats,
    ShardWriter,
    committed_items,
    committed_records,
    list_parts,
    read_all_records,
    rollout_id,
    shard_items,
    shard_rows,
)
from rollout_operator.runtime.storage import ObjectStore, open_store
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture

# --- layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/runs", "s3://bucket/runs/team-a/calc-3f2a9c1e"),
        ("s3://bucket/runs/", "s3://bucket/runs/team-a/calc-3f2a9c1e"),
        ("gs://b", "gs://b/team-a/calc-3f2a9c1e"),
        ("file:///data/out", "file:///data/out/team-a/calc-3f2a9c1e"),
    ],
)
def test_run_prefix(url: str, expected: str) -> None:
    uid = "3f2a9c1e-7b6d-4e2f-9a10-0123456789ab"
    assert run_prefix(url, "team-a", "calc", uid) == expected


@pytest.mark.parametrize(
    ("namespace", "name", "uid"),
    [("Team_A", "calc", "3f2a9c1e"), ("ns", "../x", "3f2a9c1e"), ("ns", "calc", "!!")],
)
def test_run_prefix_refuses_what_is_not_a_kubernetes_name(
    namespace: str, name: str, uid: str
) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes"):
        run_prefix("s3://b", namespace, name, uid)


def test_part_keys_sort_as_numbers_and_parse_back() -> None:
    keys = [part_key(3, n) for n in (10, 2, 1, 100)]
    assert sorted(keys) == [part_key(3, n) for n in (1, 2, 10, 100)]
    assert part_key(3, 7) == "shards/3/part-000007.jsonl"
    assert parse_part_key("shards/3/part-000007.jsonl") == (3, 7)
    assert parse_part_key("shards/3/part-1234567.jsonl") == (3, 1234567)
    for other in ("shards/3/part-7.jsonl.tmp", "run.json", "shards/x/part-1.jsonl"):
        assert parse_part_key(other) is None


def test_bundle_key_lives_at_the_output_root() -> None:
    assert bundle_key("ab12", "cd34") == "bundles/ab12-cd34.tar.gz"
    assert bundle_url("s3://b/out/", "ab12", "cd34") == "s3://b/out/bundles/ab12-cd34.tar.gz"
    with pytest.raises(ValueError, match="lowercase hex"):
        bundle_key("../etc", "cd34")


# --- planning -----------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "samples", "shards"), [(10, 3, 4), (7, 1, 7), (3, 2, 5),
                                                          (100, 4, 1), (0, 2, 3)])
def test_every_item_is_in_exactly_one_shard(rows: int, samples: int, shards: int) -> None:
    seen: Counter[tuple[int, int]] = Counter()
    for index in range(shards):
        items = list(shard_items(range(rows), samples, shards, index))
        assert len(items) == shard_rows(rows, shards, index) * samples
        seen.update(items)
    assert set(seen) == {(r, s) for r in range(rows) for s in range(samples)}
    assert set(seen.values()) <= {1}


def test_samples_of_a_row_stay_together_and_shards_are_balanced() -> None:
    owner: dict[int, set[int]] = {}
    sizes = []
    for index in range(4):
        items = list(shard_items(range(10, 31), 5, 4, index))
        sizes.append(len(items))
        for row, _ in items:
            owner.setdefault(row, set()).add(index)
    assert all(len(shards) == 1 for shards in owner.values())
    assert max(sizes) - min(sizes) <= 5


def test_shard_items_streams_its_input() -> None:
    pulled = 0

    def rows() -> Iterator[int]:
        nonlocal pulled
        for i in range(10**9):
            pulled += 1
            yield i

    items = shard_items(rows(), 2, 3, 1)
    assert [next(items) for _ in range(4)] == [(1, 0), (1, 1), (4, 0), (4, 1)]
    assert pulled == 5


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="shard index"):
        list(shard_items(range(3), 1, 2, 2))
    with pytest.raises(ValueError, match="samples"):
        list(shard_items(range(3), 0, 2, 0))


def test_rollout_ids_are_deterministic() -> None:
    assert rollout_id("calc", 12, 3) == "calc-12-3"
    assert rollout_id("calc", 12, 3) == rollout_id("calc", 12, 3)


# --- committed parts ----------------------------------------------------------------------


def record(row: int, sample: int, reward: float = 1.0) -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=rollout_id("run", row, sample),
        row_index=row,
        sample_index=sample,
        status="completed",
        finish_reason="stop",
        scores={"m:f": reward},
        reward=reward,
        messages=[{"role": "assistant", "content": f"#### {row}"}],
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return open_store(server.bucket(), environ=server.env)
    return open_store(str(tmp_path / "store"))


PREFIX = "team-a/calc-3f2a9c1e"


async def test_writer_commits_parts_of_part_size_and_the_rest_at_the_end(
    store: ObjectStore,
) -> None:
    async with ShardWriter(store, PREFIX, 2, part_size=4) as writer:
        for row in range(10):
            await writer.add(record(row, 0))
        assert writer.committed == 8
        assert writer.pending == 2
    assert writer.committed == 10
    parts = await list_parts(store, PREFIX, 2)
    assert [n for n, _ in parts] == [1, 2, 3]
    assert [key.rsplit("/", 1)[1] for _, key in parts] == [
        "part-000001.jsonl", "part-000002.jsonl", "part-000003.jsonl"
    ]
    assert await committed_items(store, PREFIX, 2) == {(r, 0) for r in range(10)}
    assert await committed_items(store, PREFIX, 0) == set()


async def test_writer_commits_a_slow_trickle_on_time(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    async with ShardWriter(store, "", 0, part_size=100, interval_s=0.2) as writer:
        await writer.add(record(1, 0))
        for _ in range(30):
            await asyncio.sleep(0.05)
            if writer.committed:
                break
        assert writer.committed == 1
        assert await committed_items(store, "", 0) == {(1, 0)}


async def test_a_killed_writer_then_a_retry_leaves_no_gaps_and_no_duplicates(
    store: ObjectStore,
) -> None:
    items = list(shard_items(range(40), 3, 2, 1))  # 20 rows x 3 samples
    # First attempt: dies after committing 2 parts of 7 (and with 5 records never committed).
    first = ShardWriter(store, PREFIX, 1, part_size=7)
    await first.open()
    for row, sample in items[:19]:
        await first.add(record(row, sample))
    assert first.committed == 14 and first.pending == 5
    if first._ticker is not None:  # the process is gone: nothing more gets committed
        first._ticker.cancel()

    done = await committed_items(store, PREFIX, 1)
    assert done == set(items[:14])
    redo = [item for item in items if item not in done]
    assert len(redo) == len(items) - 14
    async with ShardWriter(store, PREFIX, 1, part_size=7) as second:
        for row, sample in redo:
            await second.add(record(row, sample))
    assert [n for n, _ in await list_parts(store, PREFIX, 1)] == list(range(1, 10))

    stats = ReadStats()
    got = [(r.row_index, r.sample_index) async for r in read_all_records(store, PREFIX,
                                                                          stats=stats)]
    assert sorted(got) == sorted(items)
    assert len(got) == len(set(got))
    assert stats.duplicates == 0 and stats.parts == 9


async def test_racing_writers_never_overwrite_and_never_write_a_record_twice(
    store: ObjectStore,
) -> None:
    a = ShardWriter(store, PREFIX, 0, part_size=100)
    b = ShardWriter(store, PREFIX, 0, part_size=100)
    await a.open()
    await b.open()  # both believe part 1 is next
    for row in range(3):
        await a.add(record(row, 0, reward=1.0))
        await b.add(record(row, 0, reward=0.0))
    await b.add(record(3, 0, reward=0.0))
    await a.close()
    await b.close()  # finds part 1 taken by `a`, reads it, commits only row 3
    assert [n for n, _ in await list_parts(store, PREFIX, 0)] == [1, 2]
    assert (a.committed, b.committed, b.dropped) == (3, 1, 3)
    stats = ReadStats()
    kept = [r async for r in read_all_records(store, PREFIX, stats=stats)]
    assert [r.reward for r in kept] == [1.0, 1.0, 1.0, 0.0]
    assert stats.duplicates == 0


async def test_read_all_records_spans_shards_in_order(store: ObjectStore) -> None:
    for index in (1, 0):
        async with ShardWriter(store, PREFIX, index, part_size=2) as writer:
            for row, sample in shard_items(range(6), 2, 2, index):
                await writer.add(record(row, sample))
    rows = [(r.row_index, r.sample_index) async for r in read_all_records(store, PREFIX)]
    assert rows == [(0, 0), (0, 1), (2, 0), (2, 1), (4, 0), (4, 1),
                    (1, 0), (1, 1), (3, 0), (3, 1), (5, 0), (5, 1)]


def masked(row: int, sample: int = 0, attempt: int = 0) -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=rollout_id("run", row, sample), row_index=row, sample_index=sample,
        status="masked", attempt=attempt,
        error=RecordError(category="inference", message=f"HTTP 503 (attempt {attempt})"),
    )


async def test_masked_records_are_not_done_and_the_best_record_is_kept(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    failed = record(3, 0).model_copy(update={
        "status": "failed", "error": RecordError(category="timeout", message="slow")})
    async with ShardWriter(store, "", 0) as writer:
        for item in (masked(0), masked(1), masked(2), failed):
            await writer.add(item)
    async with ShardWriter(store, "", 0) as writer:  # a retry: row 0 completes, 1 stays masked
        await writer.add(record(0, 0).model_copy(update={"attempt": 1}))
        await writer.add(masked(1, attempt=2))
    async with ShardWriter(store, "", 0) as writer:  # a late writer, with older attempts
        await writer.add(masked(0, attempt=2))
        await writer.add(masked(1, attempt=1))
    assert await committed_items(store, "", 0) == {(0, 0), (3, 0)}
    assert await committed_records(store, "", 0) == {
        (0, 0): Kept(False, 1), (1, 0): Kept(True, 2), (2, 0): Kept(True, 0),
        (3, 0): Kept(False, 0)}

    stats = ReadStats()
    kept = {(r.row_index, r.sample_index): r async for r in read_all_records(store, "",
                                                                            stats=stats)}
    assert {item: (r.status, r.attempt) for item, r in kept.items()} == {
        (0, 0): ("completed", 1), (1, 0): ("masked", 2), (2, 0): ("masked", 0),
        (3, 0): ("failed", 0)}
    assert kept[(1, 0)].error == RecordError(category="inference",
                                             message="HTTP 503 (attempt 2)")
    assert (stats.records, stats.superseded, stats.duplicates, stats.parts) == (4, 4, 0, 3)


async def test_a_corrupt_part_is_reported_with_its_url(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    await store.put(part_key(0, 1), b'{"row_index": 1, "sample_index": 0}\nnot json\n')
    with pytest.raises(RecordReadError, match=r"part-000001.jsonl line 2"):
        await committed_items(store, "", 0)
    with pytest.raises(RecordReadError, match=r"part-000001.jsonl line 1"):
        [r async for r in read_all_records(store, "")]


async def test_records_left_when_a_commit_fails_are_kept_for_the_next(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    blocker = tmp_path / "shards"
    blocker.write_text("a file where the shards folder should be")
    writer = ShardWriter(store, "", 0, part_size=100)
    await writer.add(record(0, 0))
    with pytest.raises(Exception, match="Cannot"):
        await writer.flush()
    assert writer.pending == 1 and writer.committed == 0
    blocker.unlink()
    await writer.close()
    assert writer.committed == 1
    assert await committed_items(store, "", 0) == {(0, 0)}
