"""The refill pool keeps every slot busy and never reads ahead of what it can run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator

import pytest

from rollout_operator.runtime.pool import run_pool


async def test_one_slow_item_does_not_idle_the_other_slots() -> None:
    async def work(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    # One 0.5 s item and twenty 0.05 s items on 4 slots: waves would take 0.5 + 5 * 0.05;
    # a refilled pool runs the short items on the other 3 slots while the long one runs.
    items = [0.5] + [0.05] * 20
    results = [r async for r in run_pool(items, work, concurrency=4)]
    assert sorted(results) == sorted(items)
    # With waves the long item would finish with the first wave; refilled, it finishes last.
    assert results[-1] == 0.5


async def test_in_flight_never_exceeds_concurrency_and_source_is_lazy() -> None:
    in_flight = peak = 0
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return i

    seen = 0
    async for _ in run_pool(source(), work, concurrency=8):
        seen += 1
        if seen == 100:
            break
    assert peak == 8
    assert pulled <= 100 + 8 + 1


async def test_an_exception_stops_the_pool() -> None:
    async def work(i: int) -> int:
        if i == 5:
            raise RuntimeError("boom")
        await asyncio.sleep(0.001)
        return i

    with pytest.raises(RuntimeError, match="boom"):
        async for _ in run_pool(range(1000), work, concurrency=4):
            pass


async def test_rejects_zero_concurrency() -> None:
    async def work(i: int) -> int:
        return i

    with pytest.raises(ValueError, match="at least 1"):
        async for _ in run_pool(range(3), work, concurrency=0):
            pass


async def test_a_worker_that_swallows_a_cancellation_still_ends() -> None:
    """Some libraries absorb a cancellation; the pool must not then wait for that worker forever
    (the consumer was cancelled, as Ctrl-C does)."""

    async def stubborn(i: int) -> int:
        with contextlib.suppress(asyncio.CancelledError):  # absorbed, as anyio may do
            await asyncio.sleep(10)
        return i

    async def consume() -> None:
        async for _ in run_pool(range(100), stubborn, concurrency=4):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
