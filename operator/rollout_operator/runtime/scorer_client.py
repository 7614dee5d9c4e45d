"""The worker's side of the scoring API: remote scorers behind the interface of local ones.

Rollouts ask for their scores one at a time (`await scorers.score(...)`); requests are batched
on the way out: while fewer than `max_in_flight` batches are in flight, what is waiting goes out
after at most `linger_s` (at once with 0, or when `max_batch` items wait), and while they are
all in flight, what piles up goes in the next. A worker, which frees a rollout's slot before
scoring it, lingers a little: a request costs far more CPU than an item in it.

When a batch's connection breaks (the scorer process died: `os._exit`, a segfault, the memory
limit) its items are sent again one at a time, isolated, once the supervisor has a new process
up: the server then runs each scorer of the item in a forked process of its own, so the scorer
that kills a process is named on that item, with how its process ended, and every other score
is unaffected. When no scorer server answers within `unavailable_after_s`,
the items fail with `ScoringUnavailable` and their rollouts are masked (a dead sandbox is
infrastructure, never a score of 0).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rollout_operator.runtime.interfaces import Message
from rollout_operator.runtime.lean_http import ConnectFailed, ConnectionBroken, LeanHttp
from rollout_operator.runtime.scorer_protocol import (
    MAX_RESPONSE_BYTES,
    PROTOCOL_VERSION,
    SCORE_PATH,
    SCORERS_PATH,
    ItemScores,
    ProtocolError,
    ScoreResponse,
    ScorerList,
    parse_response,
)
from rollout_operator.runtime.scoring import ScoreOutcome

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_IN_FLIGHT = 4
UNAVAILABLE_AFTER_S = 120.0
ISOLATED_ATTEMPTS = 5


class ScoringUnavailable(Exception):
    """No scorer server answered: the rollout cannot be scored (mask it, do not score 0)."""


class _Died(Exception):
    """The connection broke mid-request: the server process is gone."""


@dataclass(slots=True)
class _Pending:
    payload: dict[str, Any]
    future: asyncio.Future[ItemScores]


class RemoteScorers:
    """Scores trajectories on a scorer server at `url` (http://host:port)."""

    def __init__(self, url: str, *, refs: Sequence[str] = (), timeout_s: float | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 linger_s: float = 0.0,
                 unavailable_after_s: float = UNAVAILABLE_AFTER_S) -> None:
        self.url = url.rstrip("/")
        self.refs = list(refs)
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.linger_s = linger_s
        self.unavailable_after_s = unavailable_after_s
        # A batch runs its items concurrently, each scorer bounded by the timeout; the server's
        # watchdog ends a stalled process after the timeout plus its grace.
        self.request_timeout_s = 3 * (timeout_s or 60.0) + 30.0
        self.generation = 0
        self.batches = 0
        self.isolated = 0
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self._session: Any = None
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: LeanHttp | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def restarts(self) -> int:
        """Restarts of the scorer process seen so far (its generation)."""
        return self.generation

    def _http(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_in_flight * 2 + 4),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def start(self, wait_s: float = UNAVAILABLE_AFTER_S) -> list[str]:
        """Wait for the server and check what it loaded; returns the scorer refs it serves.

        Raises `ScoringUnavailable` when it does not answer in `wait_s`, `ProtocolError` when
        it speaks another protocol, and `ValueError` when a wanted scorer is not loaded.
        """
        listing = await self._wait_for(SCORERS_PATH, ScorerList, wait_s)
        served = [info.ref for info in listing.scorers]
        missing = [ref for ref in self.refs if ref not in served]
        if missing or listing.problems:
            problems = "; ".join(p.message for p in listing.problems)
            raise ValueError(f"the scorer server does not serve {', '.join(missing) or 'all'}"
                             + (f": {problems}" if problems else ""))
        if not self.refs:
            self.refs = served
        self.generation = max(self.generation, listing.generation)
        return served

    async def score(self, messages: Sequence[Message], ground_truth: str | None,
                    row: dict[str, Any]) -> ScoreOutcome:
        """The scores of one trajectory (per-scorer errors included), from the server."""
        loop = asyncio.get_running_loop()
        self._next_id += 1
        payload = {"id": str(self._next_id), "messages": list(messages),
                   "ground_truth": ground_truth, "row": row}
        pending = _Pending(payload, loop.create_future())
        self._queue.append(pending)
        if self.linger_s <= 0 or len(self._queue) >= self.max_batch:
            self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger_s, self._linger_over)
        result = await pending.future
        return ScoreOutcome(dict(result.scores), dict(result.errors), result.scoring_ms)

    def _linger_over(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            self.batches += 1
            results: dict[str, ItemScores | Exception]
            try:
                answer = await self._request([p.payload for p in batch], None)
                results = {result.id: result for result in answer.results}
            except _Died:
                results = await self._isolate(batch)
            for pending in batch:
                if pending.future.done():
                    continue
                result = results.get(str(pending.payload["id"]))
                if isinstance(result, Exception):
                    pending.future.set_exception(result)
                    continue
                if result is None:
                    result = ItemScores(id=str(pending.payload["id"]))
                pending.future.set_result(self._complete(result))
        except (ScoringUnavailable, ProtocolError) as exc:
            error = exc if isinstance(exc, ScoringUnavailable) else ScoringUnavailable(str(exc))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        except BaseException as exc:  # never leave a rollout waiting forever
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(ScoringUnavailable(f"scoring failed: {exc!r}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._in_flight -= 1
            self._dispatch()

    def _complete(self, result: ItemScores) -> ItemScores:
        """Every expected scorer has a score or an error (0.0 for a scorer that gave none)."""
        for ref in self.refs:
            if ref not in result.scores:
                result.scores[ref] = 0.0
                result.errors.setdefault(ref, "the scorer server returned no score")
        for ref in list(result.scores):
            if ref not in self.refs:
                del result.scores[ref]
        return result

    async def _isolate(self, batch: list[_Pending]) -> dict[str, ItemScores | Exception]:
        """Score the items of a batch whose process died again, each alone and isolated: the
        server runs every scorer of the item in a process of its own, so whatever kills a
        process is that scorer's error on that item. A server that dies during an isolated
        request was killed by something else (another worker's batch): the request is sent
        again, and an item that cannot be scored that way is unavailable (masked)."""
        self.isolated += 1
        log.warning("the scorer process died during a batch of %d; scoring its items again, "
                    "each scorer in a process of its own", len(batch))
        results: dict[str, ItemScores | Exception] = {}
        for pending in batch:
            item_id = str(pending.payload["id"])
            outcome: ItemScores | Exception = ScoringUnavailable(
                f"the scorer server at {self.url} died {ISOLATED_ATTEMPTS} times while this "
                "item was scored in isolation")
            for attempt in range(ISOLATED_ATTEMPTS):
                try:
                    answer = await self._request([pending.payload], None, isolate=True)
                except _Died:
                    await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
                    continue
                outcome = next((r for r in answer.results if r.id == item_id),
                               ItemScores(id=item_id))
                break
            results[item_id] = outcome
        return results

    async def _request(self, items: list[dict[str, Any]], scorers: list[str] | None, *,
                       isolate: bool = False) -> ScoreResponse:
        """One POST, waiting out a server that is restarting; `_Died` when the connection
        breaks after the request was sent. An isolated request goes on a connection of its
        own (kept-alive ones may lead to the dead process)."""
        body = _dumps({"version": PROTOCOL_VERSION, "items": items, "scorers": scorers,
                       "isolate": isolate})
        deadline = time.monotonic() + self.unavailable_after_s
        delay = 0.05
        while True:
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    status, data = await self._lean().post(SCORE_PATH, body, fresh=isolate)
            except ConnectFailed as exc:
                # Nothing accepted the connection: no process behind the socket yet.
                if time.monotonic() + delay > deadline:
                    raise ScoringUnavailable(
                        f"no scorer server answered at {self.url} for "
                        f"{self.unavailable_after_s:.0f} s ({exc})") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except (ConnectionBroken, TimeoutError) as exc:
                raise _Died(str(exc)) from None
            if status >= 500:
                # A proxy between the two (a service mesh) says the process went away.
                raise _Died(f"HTTP {status}")
            if status != 200:
                raise ProtocolError(f"the scorer server answered HTTP {status}: "
                                    f"{data[:200].decode('utf-8', 'replace')}")
            answer = parse_response(data, ScoreResponse)
            self.generation = max(self.generation, answer.generation)
            return answer

    def _lean(self) -> LeanHttp:
        if self._pool is None:
            self._pool = LeanHttp(self.url, keep=self.max_in_flight * 2,
                                  max_response_bytes=MAX_RESPONSE_BYTES)
        return self._pool

    async def _wait_for(self, path: str, model: type[ScorerList], wait_s: float) -> ScorerList:
        import aiohttp

        deadline = time.monotonic() + wait_s
        delay = 0.1
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(10):
                    async with self._http().get(self.url + path) as response:
                        data = await response.read()
                if response.status == 200:
                    return parse_response(data, model)
                last = ProtocolError(f"HTTP {response.status}")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise ScoringUnavailable(f"no scorer server answered at {self.url} within "
                                 f"{wait_s:.0f} s ({last})")

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._pool is not None:
            await self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")
