"""A continuously refilled pool: at most N items in flight, a new one starts as soon as one ends.

Unlike waves (start N, wait for all N), one slow rollout never idles the other slots. Items are
pulled lazily from the iterator, so a million-row dataset is never materialised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()


async def run_pool(
    items: Iterable[T],
    fn: Callable[[T], Awaitable[R]],
    concurrency: int,
) -> AsyncIterator[R]:
    """Yield `fn(item)` results in completion order, with at most `concurrency` in flight.

    If `fn` raises, the remaining work is cancelled and the exception propagates to the consumer.
    Closing the generator early (or cancelling the consumer) cancels the work in flight.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    source: Iterator[T] = iter(items)
    results: asyncio.Queue[object] = asyncio.Queue()
    # A credit is taken before an item is pulled and given back when the consumer takes its
    # result: items in flight plus results not yet consumed never exceed `concurrency`.
    credits = asyncio.Semaphore(concurrency)

    stopping = False

    async def worker() -> None:
        try:
            while not stopping:
                await credits.acquire()
                try:
                    item = next(source)
                except StopIteration:
                    credits.release()
                    return
                results.put_nowait(await fn(item))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises
            results.put_nowait(_Failure(exc))
        finally:
            results.put_nowait(_DONE)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    running = len(workers)
    try:
        while running:
            value = await results.get()
            if value is _DONE:
                running -= 1
            elif isinstance(value, _Failure):
                raise value.exc
            else:
                credits.release()
                yield cast(R, value)
    finally:
        stopping = True
        pending = set(workers)
        while pending:
            for task in pending:
                task.cancel()
            # Libraries built on anyio can absorb a cancellation; such a worker would then wait
            # for a credit forever. Cancel again until every worker has ended.
            _, pending = await asyncio.wait(pending, timeout=0.5)


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
