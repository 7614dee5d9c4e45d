"""Object storage through an outage: moto's S3 server behind a fault proxy that resets every
connection, or answers 503, until it is told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rollout_operator.runtime.outage import OutageGate
from rollout_operator.runtime.storage import StorageError, open_store
from tests.support.fault_proxy import FaultProxy, Outage
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not come true within a minute")


def storage_port(s3: S3Server) -> int:
    return int(s3.endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("outage", ["reset", "503"])
async def test_storage_operations_wait_out_an_outage_and_then_complete(
        s3_server: S3Server, outage: Outage) -> None:  # noqa: F811
    with FaultProxy(storage_port(s3_server)) as proxy:
        gate = OutageGate("object storage", 120, base_delay_s=0.05, max_delay_s=0.5)
        store = open_store(s3_server.bucket("run"), endpoint=proxy.endpoint,
                           environ=s3_server.env, outage=gate)
        await store.put("before.json", b"{}")
        proxy.outage = outage
        operations = asyncio.gather(
            store.put("shards/0/part-000001.jsonl", b"line\n", if_absent=True),
            store.get("before.json"), store.list("shards/"), store.exists("missing.json"))
        await until(lambda: gate.down)  # obstore's own retries are spent: the gate waits
        proxy.outage = None
        created, read, listed, exists = await operations
    assert (created, read, exists) == (True, b"{}", False)
    assert listed in ([], ["shards/0/part-000001.jsonl"])  # listed before or after the put
    assert proxy.refused > 0 and gate.outages == 1 and gate.waited_s > 0
    check = open_store(store.url, environ=s3_server.env)
    assert await check.list("shards/") == ["shards/0/part-000001.jsonl"]


async def test_without_a_gate_an_outage_fails_the_operation_saying_so(
        s3_server: S3Server) -> None:  # noqa: F811
    with FaultProxy(storage_port(s3_server)) as proxy:
        store = open_store(s3_server.bucket("run"), endpoint=proxy.endpoint,
                           environ=s3_server.env)
        proxy.outage = "reset"
        with pytest.raises(StorageError, match="Cannot write") as raised:
            await store.put("x.json", b"{}")
    assert raised.value.outage


async def test_a_missing_bucket_is_no_outage_and_fails_at_once(
        s3_server: S3Server) -> None:  # noqa: F811
    gate = OutageGate("object storage", 120)
    store = open_store("s3://no-such-bucket/run", environ=s3_server.env, outage=gate)
    with pytest.raises(StorageError, match="does not exist") as raised:
        await store.list("shards/")
    assert not raised.value.outage
    assert gate.outages == 0
