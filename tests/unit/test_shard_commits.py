"""Each part of a shard is committed once and each record written once, whatever the network
does to the answers of creates and however many writers run the same items.

Storage is moto's S3 server behind `FaultProxy`, which loses or holds back the answers to part
PUTs after the server has written the object; what ends up in the bucket is read with boto3,
independently of the code under test.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from obstore.store import S3Store

from rollout_operator.runtime.records import RecordError, TrajectoryRecord
from rollout_operator.runtime.shards import ShardWriter, read_all_records, rollout_id
from rollout_operator.runtime.storage import _RETRY, ObjectStore, open_store
from tests.support.fault_proxy import FaultProxy, delay_first, drop_first
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server  # noqa: F401

PREFIX = "team-a/calc-3f2a9c1e"


def record(row: int, sample: int = 0, reward: float = 1.0, attempt: int = 0,
           status: str = "completed") -> TrajectoryRecord:
    return TrajectoryRecord(
        rollout_id=rollout_id("run", row, sample),
        row_index=row,
        sample_index=sample,
        attempt=attempt,
        status=status,  # type: ignore[arg-type]
        finish_reason="stop",
        error=RecordError(category="inference", message="HTTP 500") if status == "masked"
        else None,
        scores={"m:f": reward} if status == "completed" else {},
        reward=reward if status == "completed" else None,
        messages=[{"role": "assistant", "content": f"#### {row} {reward}"}],
    )


def stored_records(server: S3Server, url: str) -> Counter[tuple[int, int, int]]:
    """(row, sample, attempt) of every record line in the bucket, counted."""
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    client = server.client()
    found: Counter[tuple[int, int, int]] = Counter()
    for key in server.keys(url):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for line in body.splitlines():
            fields = json.loads(line)
            found[(fields["row_index"], fields["sample_index"], fields.get("attempt", 0))] += 1
    return found


def part_keys(server: S3Server, url: str) -> list[str]:
    return [key for key in server.keys(url) if "/part-" in key]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:  # noqa: F811
    return s3_server.bucket()


@pytest.fixture
def lossy(s3_server: S3Server) -> Iterator[FaultProxy]:  # noqa: F811
    """A proxy that loses the first answer to every part PUT (the object is written)."""
    with FaultProxy(s3_server.port, drop_first("PUT", "/part-")) as proxy:
        yield proxy


def store_via(server: S3Server, url: str, endpoint: str, *,
              timeout: str | None = None) -> ObjectStore:
    """The bucket at `url` through `endpoint`: as `open_store` makes it, or, with `timeout`, with
    that client timeout (the production default is 30 s)."""
    if timeout is None:
        return open_store(url, endpoint=endpoint, environ=server.env)
    config = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "region": REGION,
              "endpoint": endpoint}
    s3 = S3Store(url.removeprefix("s3://"), config=config,  # type: ignore[arg-type]
                 client_options={"allow_http": True, "timeout": timeout}, retry_config=_RETRY)
    return ObjectStore(url, "s3", s3, endpoint=endpoint)


async def test_lost_answers_to_creates_leave_each_record_once(
    s3_server: S3Server, bucket: str, lossy: FaultProxy  # noqa: F811
) -> None:
    store = store_via(s3_server, bucket, lossy.endpoint)
    async with ShardWriter(store, PREFIX, 0, part_size=8) as writer:
        for row in range(200):
            await writer.add(record(row))
    # Every part's first answer was lost; obstore sent the PUT again and met the object.
    assert len(lossy.faulted("drop")) == 25
    assert sum(1 for r in lossy.requests if r[0] == "PUT" and r[2] == 412) == 25
    assert len(part_keys(s3_server, bucket)) == 25
    found = stored_records(s3_server, bucket)
    assert sorted(found) == [(row, 0, 0) for row in range(200)]
    assert set(found.values()) == {1}
    assert writer.committed == 200 and writer.dropped == 0 and len(writer.parts) == 25


async def test_creates_answered_after_the_client_gave_up_leave_each_record_once(
    s3_server: S3Server, bucket: str  # noqa: F811
) -> None:
    with FaultProxy(s3_server.port, delay_first("PUT", "/part-"), delay_s=2.5) as slow:
        store = store_via(s3_server, bucket, slow.endpoint, timeout="1s")
        async with ShardWriter(store, PREFIX, 0, part_size=4) as writer:
            for row in range(11):
                await writer.add(record(row))
        assert len(slow.faulted("delay")) == 3
    assert len(part_keys(s3_server, bucket)) == 3
    found = stored_records(s3_server, bucket)
    assert sorted(found) == [(row, 0, 0) for row in range(11)]
    assert set(found.values()) == {1}
    assert writer.committed == 11 and writer.dropped == 0


@pytest.mark.parametrize("network", ["clean", "lossy"])
async def test_two_writers_of_the_same_items_write_each_record_once(
    s3_server: S3Server, bucket: str, network: str, request: pytest.FixtureRequest  # noqa: F811
) -> None:
    endpoint = (request.getfixturevalue("lossy").endpoint if network == "lossy"
                else s3_server.endpoint)
    items = [(row, sample) for row in range(30) for sample in range(2)]

    async def run(writer: ShardWriter, seed: int) -> None:
        order = list(items)
        random.Random(seed).shuffle(order)
        async with writer:
            for row, sample in order:
                await writer.add(record(row, sample, reward=float(seed)))
                await asyncio.sleep(0.002 * random.Random(seed + row).random())

    first = ShardWriter(store_via(s3_server, bucket, endpoint), PREFIX, 4, part_size=5)
    second = ShardWriter(store_via(s3_server, bucket, endpoint), PREFIX, 4, part_size=7)
    await asyncio.gather(run(first, 1), run(second, 2))

    found = stored_records(s3_server, bucket)
    assert sorted(found) == sorted((row, sample, 0) for row, sample in items)
    assert set(found.values()) == {1}
    assert first.committed + second.committed == len(items)
    assert first.dropped + second.dropped == len(items)
    assert first.dropped and second.dropped  # they did race for the same items
    kept = [r async for r in read_all_records(store_via(s3_server, bucket, s3_server.endpoint),
                                              PREFIX)]
    assert len(kept) == len(items)


async def test_a_writer_leaves_out_what_was_committed_before_it_opened(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    async with ShardWriter(store, "", 0) as old:
        for row in range(3):
            await old.add(record(row, reward=1.0))
    async with ShardWriter(store, "", 0) as new:  # read the shard before `old` committed
        for row in range(4):
            await new.add(record(row, reward=0.0))
    assert (new.committed, new.dropped) == (1, 3)
    kept = {r.row_index: r.reward async for r in read_all_records(store, "")}
    assert kept == {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0}


async def test_a_later_attempt_at_a_masked_item_is_not_a_duplicate(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    async with ShardWriter(store, "", 0) as first:
        await first.add(record(0, status="masked"))
    async with ShardWriter(store, "", 0) as second:
        await second.add(record(0, attempt=1))
        await second.add(record(0, status="masked"))  # attempt 0 again: that one is there
    assert (second.committed, second.dropped) == (1, 1)
