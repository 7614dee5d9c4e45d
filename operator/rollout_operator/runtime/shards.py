"""Splitting a run into shards, and committing each shard's records in write-once parts.

A work item is one (row, sample) pair. Rows go to shards round-robin by their position in the
dataset window (`position % shards == index`), so every sample of a prompt lands in the same
shard (a group's advantages need all of them) and shards differ in size by at most one row.
Rows are streamed, never held in memory.

A shard's records are committed in parts, `shards/<index>/part-<n>.jsonl`: a writer buffers
finished records and writes a part every `part_size` records, every `interval_s` seconds and at
the end. Each part is written once, atomically and only if absent, with a number above every
part already there, so a part is never overwritten, not even by a second writer racing for the
same shard. A retried shard reads the items already committed and skips them, except masked
ones, which are run again as records with the next attempt number. Readers keep one record per
item: a non-masked one over a masked one, else the latest attempt; if two writers did commit
the same item, the first committed (lowest part number).

A part is committed exactly once, and a record never twice, even when the network loses the
answer to a create, a create outlives the client's timeout, or two writers (two pods of one
index) run the same items. The writer reads every part other writers committed, at open and
whenever a create finds its number taken, and drops from its buffer the records whose (row,
sample, attempt) such a part already holds. A create whose answer is an error (the object may
or may not be there; obstore does not retry a timed-out PUT) is tried again, create-only, under
the same number. A create that finds the object there compares bytes: the very bytes this writer
sent under that number mean its own earlier request landed (obstore retries a PUT whose answer
was lost, and the retry meets the object the first one made), so the part is committed; any
other bytes are another writer's part, whose records leave the buffer before the rest goes
under the next number. Bytes, not ETags or sizes, decide, because they mean the same on S3, GCS
and local files. Part keys stay numbered rather than named after their content: two writers
batch records by when they finish, so their parts rarely hold the same items, and the numbers
give readers the commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from pydantic import ValidationError

from rollout_operator.runtime.records import RecordReadError, TrajectoryRecord
from rollout_operator.runtime.run_layout import (
    SHARDS_DIR,
    parse_part_key,
    part_key,
    shard_dir,
)
from rollout_operator.runtime.scrub import Scrubber, process_scrubber
from rollout_operator.runtime.storage import ObjectStore, StorageConfigError, StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")
ItemKey = tuple[int, int]
"""(row_index, sample_index)."""

DEFAULT_PART_SIZE = 256
DEFAULT_INTERVAL_S = 10.0
_READ_AHEAD = 8
_CREATE_ATTEMPTS = 4
"""Tries of one create whose answer was an error, before the error is raised."""
_CREATE_BACKOFF_S = 0.2


def rollout_id(run_name: str, row_index: int, sample_index: int) -> str:
    """The id of one rollout: the same on every retry of its shard."""
    return f"{run_name}-{row_index}-{sample_index}"


def shard_of(position: int, shards: int) -> int:
    """The shard that owns the row at `position` (0-based) in the dataset window."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return position % shards


def shard_items(
    rows: Iterable[T], samples: int, shards: int, index: int
) -> Iterator[tuple[T, int]]:
    """The (row, sample_index) work items of shard `index`, streamed in row order.

    `rows` are the rows of the dataset window in order; shard `index` takes those whose
    position `p` has `p % shards == index`, each `samples` times.
    """
    if samples < 1:
        raise ValueError(f"samples per prompt must be at least 1, got {samples}")
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")
    for position, row in enumerate(rows):
        if position % shards == index:
            for sample in range(samples):
                yield row, sample


def shard_rows(total_rows: int, shards: int, index: int) -> int:
    """How many of `total_rows` window rows shard `index` owns."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index must be in [0, {shards}), got {index}")
    if total_rows <= index:
        return 0
    return (total_rows - index + shards - 1) // shards


def _key(prefix: str, relative: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def _relative(prefix: str, key: str) -> str:
    prefix = prefix.strip("/")
    return key[len(prefix) + 1:] if prefix else key


async def list_parts(store: ObjectStore, run_prefix: str, index: int) -> list[tuple[int, str]]:
    """(part number, key) of every committed part of shard `index`, in commit order."""
    parts: list[tuple[int, str]] = []
    for key in await store.list(_key(run_prefix, shard_dir(index))):
        parsed = parse_part_key(_relative(run_prefix, key))
        if parsed is not None and parsed[0] == index:
            parts.append((parsed[1], key))
    return sorted(parts)


async def list_all_parts(store: ObjectStore, run_prefix: str) -> list[tuple[int, int, str]]:
    """(shard index, part number, key) of every committed part of the run, in order."""
    parts: list[tuple[int, int, str]] = []
    for key in await store.list(_key(run_prefix, f"{SHARDS_DIR}/")):
        parsed = parse_part_key(_relative(run_prefix, key))
        if parsed is not None:
            parts.append((parsed[0], parsed[1], key))
    return sorted(parts)


async def _read_ahead(store: ObjectStore, keys: list[str]) -> AsyncIterator[tuple[str, bytes]]:
    """The objects at `keys`, in order, with a few requests in flight at a time."""
    pending: list[tuple[str, asyncio.Task[bytes]]] = []
    next_key = 0
    try:
        while next_key < len(keys) or pending:
            while next_key < len(keys) and len(pending) < _READ_AHEAD:
                key = keys[next_key]
                pending.append((key, asyncio.create_task(store.get(key))))
                next_key += 1
            key, task = pending.pop(0)
            yield key, await task
    finally:
        for _, task in pending:
            task.cancel()
        for _, task in pending:
            with contextlib.suppress(BaseException):
                await task


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield number, line


@dataclass(frozen=True, slots=True)
class Kept:
    """The record a reader keeps for one (row, sample): whether it is masked, its attempt."""

    masked: bool
    attempt: int

    def beaten_by(self, masked: bool, attempt: int) -> bool:
        """Whether a record committed later replaces this one: a non-masked record replaces
        a masked one; among masked ones the latest attempt wins; among the others the first
        committed stays (two writers raced)."""
        if self.masked != masked:
            return self.masked
        return masked and attempt > self.attempt


async def committed_records(
    store: ObjectStore, run_prefix: str, index: int
) -> dict[ItemKey, Kept]:
    """The record kept for each (row, sample) shard `index` has committed (see `Kept`)."""
    keys = [key for _, key in await list_parts(store, run_prefix, index)]
    kept: dict[ItemKey, Kept] = {}
    async for key, data in _read_ahead(store, keys):
        for number, line in _lines(data):
            try:
                fields = json.loads(line)
                item = (int(fields["row_index"]), int(fields.get("sample_index", 0)))
                masked = fields.get("status") == "masked"
                attempt = int(fields.get("attempt") or 0)
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordReadError(
                    f"{store.url_for(key)} line {number} is not a trajectory record: {exc}"
                ) from None
            before = kept.get(item)
            if before is None or before.beaten_by(masked, attempt):
                kept[item] = Kept(masked, attempt)
    return kept


async def committed_items(store: ObjectStore, run_prefix: str, index: int) -> set[ItemKey]:
    """The (row, sample) items shard `index` has done: those whose kept record is not masked
    (a masked one is run again by the next attempt at the shard)."""
    kept = await committed_records(store, run_prefix, index)
    return {item for item, record in kept.items() if not record.masked}


@dataclass(slots=True)
class ReadStats:
    """What `read_all_records` found: parts read, records kept, duplicates dropped (items two
    writers both committed) and masked records superseded by a later attempt (kept in
    storage as history, left out of what is read)."""

    parts: int = 0
    records: int = 0
    duplicates: int = 0
    superseded: int = 0


async def read_all_records(
    store: ObjectStore,
    run_prefix: str,
    *,
    stats: ReadStats | None = None,
    scrubber: Scrubber | None = None,
) -> AsyncIterator[TrajectoryRecord]:
    """Every committed record of the run, shard by shard, one per (row, sample).

    Per (row, sample) the best record is kept (`Kept.beaten_by`): a non-masked one over a
    masked one, else the latest attempt; of two non-masked ones (two writers raced for a
    shard) the first committed, the one in the lowest-numbered part. Masked records are
    yielded last, once every part has been read, by reading again the parts that hold the
    ones kept. With `scrubber`, the secrets it knows are scrubbed from each record as it is
    read (the writers scrubbed theirs already).
    """
    stats = stats if stats is not None else ReadStats()
    done: set[ItemKey] = set()
    masked: dict[ItemKey, tuple[int, int, int]] = {}
    """Per item with only masked records so far: (attempt, part position, line number)."""
    keys = [key for _, _, key in await list_all_parts(store, run_prefix)]
    position = -1
    async for key, data in _read_ahead(store, keys):
        position += 1
        stats.parts += 1
        for number, line in _lines(data):
            record = _parse_line(store, key, number, line, scrubber)
            item = (record.row_index, record.sample_index)
            if item in done:
                if record.status == "masked":
                    stats.superseded += 1
                else:
                    stats.duplicates += 1
                continue
            if record.status == "masked":
                before = masked.get(item)
                if before is not None:
                    stats.superseded += 1
                    if before[0] >= record.attempt:
                        continue
                masked[item] = (record.attempt, position, number)
                continue
            if masked.pop(item, None) is not None:
                stats.superseded += 1
            done.add(item)
            stats.records += 1
            yield record
    wanted: dict[int, set[int]] = {}
    for _, part, number in masked.values():
        wanted.setdefault(part, set()).add(number)
    positions = sorted(wanted)
    async for index, (key, data) in _enumerate(
        _read_ahead(store, [keys[p] for p in positions])
    ):
        lines = wanted[positions[index]]
        for number, line in _lines(data):
            if number in lines:
                stats.records += 1
                yield _parse_line(store, key, number, line, scrubber)


async def _enumerate(items: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    index = 0
    async for item in items:
        yield index, item
        index += 1


def _parse_line(
    store: ObjectStore, key: str, number: int, line: bytes, scrubber: Scrubber | None
) -> TrajectoryRecord:
    if scrubber:
        line = _scrub_line(scrubber, line)
    try:
        return TrajectoryRecord.model_validate_json(line)
    except ValidationError as exc:
        raise RecordReadError(
            f"{store.url_for(key)} line {number} is not a valid trajectory record: "
            f"{exc.errors(include_url=False)[0]['msg']}"
        ) from None


def _scrub_line(scrubber: Scrubber, line: bytes) -> bytes:
    text = line.decode("utf-8", errors="replace")
    if not scrubber.finds(text):
        return line
    try:
        return scrubber.scrub_json(text, ensure_ascii=False, separators=(",", ":")).encode()
    except ValueError:  # not JSON: reported as an invalid record, with the secret scrubbed
        return scrubber.scrub(text).encode()


class ShardWriter:
    """Buffers one shard's finished records and commits them in write-once parts.

    Use as `async with ShardWriter(store, run_prefix, index) as writer: await writer.add(r)`.
    A part is committed when `part_size` records are waiting, when the oldest waiting record
    is `interval_s` old, and on exit (also when the block raises, so that finished work is
    kept). `run_prefix` is the run's folder within `store` ("" when the store is opened at the
    run's URL). Every record is scrubbed of the secrets `scrubber` knows (by default the
    process's scrubber) as it is added: messages, tool outputs, errors and metadata alike.
    """

    def __init__(
        self,
        store: ObjectStore,
        run_prefix: str,
        index: int,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        interval_s: float = DEFAULT_INTERVAL_S,
        scrubber: Scrubber | None = None,
    ) -> None:
        if part_size < 1:
            raise ValueError(f"part_size must be at least 1, got {part_size}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        shard_dir(index)  # validates the index
        self.store = store
        self.run_prefix = run_prefix
        self.index = index
        self.part_size = part_size
        self.interval_s = interval_s
        self.scrubber = scrubber if scrubber is not None else process_scrubber()
        self.committed = 0
        self.dropped = 0
        """Records left out because another writer committed the same (row, sample, attempt)."""
        self.dropped_keys: list[RecordKey] = []
        """Which records those were."""
        self.parts: list[str] = []
        self._lines: list[bytes] = []
        self._keys: list[RecordKey] = []
        self._taken: set[RecordKey] = set()
        """What parts this writer did not create hold (or its own, found by their bytes)."""
        self._sent: dict[int, set[bytes]] = {}
        """Per part number, digests of bytes sent there whose create has not been answered."""
        self._oldest: float | None = None
        self._next_part: int | None = None
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def pending(self) -> int:
        """Records added but not committed yet."""
        return len(self._lines)

    async def open(self) -> None:
        """Read the parts already there and start the timer that commits slow trickles."""
        if self._next_part is None:
            await self._catch_up()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name=f"shard-{self.index}-commits")

    async def add(self, record: TrajectoryRecord) -> None:
        """Buffer a record; commit a part when enough are waiting."""
        self._raise_failure()
        line = record.model_dump_json()
        if self.scrubber:
            line = self.scrubber.scrub_json(line, ensure_ascii=False, separators=(",", ":"))
        self._lines.append(line.encode() + b"\n")
        self._keys.append((record.row_index, record.sample_index, record.attempt))
        if self._oldest is None:
            self._oldest = time.monotonic()
        if len(self._lines) >= self.part_size:
            await self.flush()

    async def flush(self) -> str | None:
        """Commit whatever is waiting as one part now; returns its key, or None when nothing
        was waiting or other writers had committed all of it."""
        async with self._lock:
            if not self._lines:
                return None
            if self._next_part is None:
                await self._catch_up()
            batch = _Batch(self._lines, self._keys)
            self._lines, self._keys = [], []
            oldest, self._oldest = self._oldest, None
            try:
                return await self._commit(batch)
            finally:
                if batch.lines:  # not committed: kept for the next flush
                    self._lines[:0] = batch.lines
                    self._keys[:0] = batch.keys
                    self._oldest = oldest

    async def close(self) -> None:
        """Stop the timer and commit what is left."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.flush()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.close()
        except Exception:
            if exc is None:
                raise
            logger.exception("Could not commit the last %d records of shard %d",
                             self.pending, self.index)

    async def _commit(self, batch: _Batch) -> str | None:
        """Commit `batch` under the next free number; returns the key of this writer's last
        part, or None when other writers had committed every record of it already."""
        self._left_out(batch.drop(self._taken))
        mine: str | None = None
        while batch.lines:
            assert self._next_part is not None
            number = self._next_part
            key = _key(self.run_prefix, part_key(self.index, number))
            data = b"".join(batch.lines)
            if await self._put(number, key, data):
                self._next_part = number + 1
                self._mine(key, len(batch.lines))
                batch.drop(set(batch.keys))
                return key
            # The number is taken, by a request of this writer whose answer never came back,
            # or by another writer: the bytes tell which.
            stored = await self.store.get(key)
            self._next_part = number + 1
            keys = _record_keys(self.store.url_for(key), stored)
            self._taken.update(keys)
            if _digest(stored) in self._sent.pop(number, set()):
                self._mine(key, len(keys))
                mine = key
                batch.drop(set(keys))
                continue
            left_out = batch.drop(set(keys))
            self._left_out(left_out)
            dropped = len(left_out)
            logger.warning("%s was committed by another writer of shard %d; %d records waiting "
                           "here were in it and are left out", self.store.url_for(key),
                           self.index, dropped)
        return mine

    async def _put(self, number: int, key: str, data: bytes) -> bool:
        """Create `key` with `data`; False when something is there. An error answer leaves
        the outcome open (the object may have been written), so the same create is tried
        again before the error is raised; the bytes sent are remembered either way."""
        sent = self._sent.setdefault(number, set())
        sent.add(_digest(data))
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                created = await self.store.put(key, data, if_absent=True)
            except StorageConfigError:
                raise
            except StorageError as exc:
                if attempt == _CREATE_ATTEMPTS:
                    raise
                logger.warning("Committing %s failed; trying again (%s)", self.store.url_for(key),
                               exc)
                await asyncio.sleep(_CREATE_BACKOFF_S * attempt)
                continue
            if created:
                self._sent.pop(number, None)
            return created
        raise AssertionError("unreachable")

    def _left_out(self, keys: list[RecordKey]) -> None:
        self.dropped += len(keys)
        self.dropped_keys.extend(keys)

    def _mine(self, key: str, records: int) -> None:
        self.committed += records
        self.parts.append(key)
        logger.debug("Committed %s (%d records)", key, records)

    async def _catch_up(self) -> None:
        """Read what the parts already there hold; the next part goes after the last."""
        parts = await list_parts(self.store, self.run_prefix, self.index)
        async for key, data in _read_ahead(self.store, [key for _, key in parts]):
            self._taken.update(_record_keys(self.store.url_for(key), data))
        self._next_part = parts[-1][0] + 1 if parts else 1

    async def _tick(self) -> None:
        period = min(self.interval_s, 1.0)
        while True:
            await asyncio.sleep(period)
            oldest = self._oldest
            if oldest is None or time.monotonic() - oldest < self.interval_s:
                continue
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # surfaced by the next add or close
                self._failure = exc
                return

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


RecordKey = tuple[int, int, int]
"""(row_index, sample_index, attempt): one record; a second with the same key is a duplicate."""


class _Batch:
    """Records on their way into a part, with their keys."""

    __slots__ = ("keys", "lines")

    def __init__(self, lines: list[bytes], keys: list[RecordKey]) -> None:
        self.lines = lines
        self.keys = keys

    def drop(self, keys: set[RecordKey]) -> list[RecordKey]:
        """Leave out the records whose key is in `keys`; their keys."""
        dropped = [key for key in self.keys if key in keys]
        if dropped:
            kept = [(line, key) for line, key in zip(self.lines, self.keys, strict=True)
                    if key not in keys]
            self.lines = [line for line, _ in kept]
            self.keys = [key for _, key in kept]
        return dropped


def _record_keys(url: str, data: bytes) -> list[RecordKey]:
    keys: list[RecordKey] = []
    for number, line in _lines(data):
        try:
            fields = json.loads(line)
            keys.append((int(fields["row_index"]), int(fields.get("sample_index", 0)),
                         int(fields.get("attempt") or 0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordReadError(f"{url} line {number} is not a trajectory record: {exc}") \
                from None
    return keys


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
