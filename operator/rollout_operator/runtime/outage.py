"""Waiting out a dependency's outage: one gate per dependency (the model endpoint, the tool
server, object storage), shared by everything a process has in flight.

A call through the gate whose request fails with an outage error (no connection, a reset, a
502/503/504, a storage timeout: what the caller's `is_outage` says) marks the dependency down.
While it is down, calls take turns probing it: one at a time, after a capped exponential backoff
with jitter, the caller whose turn it is checks the dependency while the others wait: with the
gate's `probe` (a cheap request that any answer satisfies, such as a model endpoint's
`GET /models`), else by sending its own request again. The first probe that goes through ends
the outage, and every waiter sends its request again. So 64 rollouts waiting on a dead endpoint
send one request per backoff step, not 64.

The wait is bounded by the budget (`spec.faults.outageBudgetSeconds`), counted from the first
failure of the outage. Past it the gate gives up: every waiter gets its error back and the
caller's own handling applies (a rollout is masked, a shard fails), until a request goes
through again. A budget of 0 turns waiting off.

An error that persists for one request while the dependency answers (a probe or the requests of
others go through) is that request's own, not an outage: a gate with a probe checks at once
before it takes an error for an outage, and once an outage ends, a call whose request fails
again gets its error back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 10.0
OUTAGE_SECONDS_KEY = "outageSeconds"
"""Seconds of outage waited out by dependency, in a worker's or the aggregate's termination
message."""
STORAGE_OUTAGE_KEY = "storageOutage"
"""True in the termination message of an aggregate that failed because object storage could
not be reached, past its budget: the operator runs it again later."""

Waited = Callable[[float], None]
"""Told how many seconds a call just spent waiting for the dependency (a rollout's deadline
does not count them)."""


class OutageGate:
    """Calls to one dependency, waited out together while it is down."""

    def __init__(self, what: str, budget_s: float, *, base_delay_s: float = BASE_DELAY_S,
                 max_delay_s: float = MAX_DELAY_S,
                 probe: Callable[[], Awaitable[object]] | None = None) -> None:
        if budget_s < 0:
            raise ValueError(f"the outage budget must be 0 or more seconds, got {budget_s}")
        self.what = what
        self.budget_s = budget_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.probe = probe
        """Raises while the dependency cannot be reached; returns once it answers anything."""
        self.outages = 0
        """Outages seen so far (each from the first failed request to the first that went
        through, or to the end of the budget)."""
        self._waited = 0.0
        self._down_since: float | None = None
        """While waiting for the dependency: when its outage began."""
        self._given_up_at: float | None = None
        """Once the budget is spent: when; calls fail at once until a request goes through."""
        self._up_since = float("-inf")
        self._delay = base_delay_s
        self._next_probe = 0.0
        self._ended = 0
        """Outages that ended with a request going through."""
        self._turn: asyncio.Lock | None = None

    @property
    def down(self) -> bool:
        """The dependency is down and the gate is waiting for it."""
        return self._down_since is not None

    @property
    def down_for_s(self) -> float:
        """Seconds since the outage under way began (0 when there is none)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    @property
    def waited_s(self) -> float:
        """Seconds of outage waited out so far (wall clock, not summed over callers), the one
        under way included."""
        if self._down_since is None:
            return self._waited
        return self._waited + time.monotonic() - self._down_since

    async def call(self, op: Callable[[], Awaitable[T]], is_outage: Callable[[BaseException], bool],
                   *, on_wait: Waited | None = None) -> T:
        """`await op()`, sending it again after an outage of the dependency (see the module
        docstring); other errors, and outage errors past the budget, are raised."""
        if self.budget_s <= 0:
            return await op()
        failed_in: int | None = None
        """How many outages had ended when this call's request last failed."""
        while True:
            if not self.down:
                started = time.monotonic()
                try:
                    result = await op()
                except Exception as exc:
                    if not is_outage(exc) or self._given_up_at is not None:
                        raise
                    if failed_in is not None and failed_in < self._ended:
                        raise  # others got through since this request first failed
                    if started < self._up_since:
                        continue  # sent while the last outage was still on
                    if self._down_since is None and await self._answers():
                        raise exc from None  # the dependency is there: the error is this call's
                    self._trip(exc)
                    failed_in = self._ended
                    continue
                self._through(started)
                return result
            waiting_since = time.monotonic()
            if self._turn is None:
                self._turn = asyncio.Lock()
            try:
                async with self._turn:
                    if not self.down or not await self._until_probe():
                        continue
                    if on_wait is not None:
                        on_wait(time.monotonic() - waiting_since)
                    waiting_since = time.monotonic()
                    started = time.monotonic()
                    if self.probe is not None:
                        try:
                            await self.probe()
                        except Exception as exc:
                            self._probe_failed(exc)
                        else:
                            self._through(started)
                        continue
                    try:
                        result = await op()
                    except Exception as exc:
                        if isinstance(exc, TimeoutError):
                            raise  # the caller's own deadline: no news of the dependency
                        if not is_outage(exc):
                            self._through(started)
                            raise
                        failed_in = self._ended
                        self._probe_failed(exc)
                        continue
                    self._through(started)
                    return result
            finally:
                if on_wait is not None:
                    on_wait(time.monotonic() - waiting_since)

    async def _answers(self) -> bool:
        """Whether the gate's probe, if it has one, gets an answer now."""
        if self.probe is None:
            return False
        try:
            await self.probe()
        except Exception:
            return False
        return True

    def _trip(self, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        now = time.monotonic()
        self._down_since = now
        self.outages += 1
        self._delay = self.base_delay_s
        self._next_probe = now + self._jittered(self._delay)
        logger.warning("%s unreachable (%s); waiting for it, up to %g s",
                       _capital(self.what), _short(exc), self.budget_s)

    def _probe_failed(self, exc: BaseException) -> None:
        assert self._down_since is not None
        now = time.monotonic()
        self._delay = min(self.max_delay_s, self._delay * 2)
        self._next_probe = now + self._jittered(self._delay)
        logger.warning("%s unreachable, waiting %.0f s of %g s budget (%s)", _capital(self.what),
                       now - self._down_since, self.budget_s, _short(exc))

    async def _until_probe(self) -> bool:
        """Sleep until the next probe is due: True, or False once the budget is spent."""
        assert self._down_since is not None
        end = self._down_since + self.budget_s
        now = time.monotonic()
        if now >= end:
            self._waited += now - self._down_since
            self._down_since = None
            self._given_up_at = now
            logger.error("%s still unreachable after %g s, the outage budget "
                         "(spec.faults.outageBudgetSeconds); its calls fail from now on",
                         _capital(self.what), self.budget_s)
            return False
        await asyncio.sleep(max(0.0, min(self._next_probe, end) - now))
        return True

    def _through(self, started: float) -> None:
        """A request sent at `started` got an answer: the outage, if any, is over."""
        now = time.monotonic()
        down_since, given_up_at = self._down_since, self._given_up_at
        if down_since is not None and started >= down_since:
            self._waited += now - down_since
            self._down_since = None
            logger.warning("%s is back after %.0f s", _capital(self.what), now - down_since)
        elif given_up_at is not None and started >= given_up_at:
            self._given_up_at = None
            logger.warning("%s is back", _capital(self.what))
        else:
            return
        self._up_since = now
        self._ended += 1

    def _jittered(self, delay: float) -> float:
        return delay * (0.5 + random.random() / 2)


@dataclass(slots=True)
class Dependencies:
    """The gates of a worker's or an aggregate's dependencies, with one budget."""

    model: OutageGate
    tools: OutageGate
    storage: OutageGate

    @classmethod
    def with_budget(cls, budget_s: float) -> Dependencies:
        return cls(OutageGate("model endpoint", budget_s), OutageGate("tool server", budget_s),
                   OutageGate("object storage", budget_s))

    def waited(self) -> dict[str, float]:
        """Seconds of outage waited out by dependency (those with none left out)."""
        waits = {"model": self.model.waited_s, "tools": self.tools.waited_s,
                 "storage": self.storage.waited_s}
        return {name: round(seconds, 1) for name, seconds in waits.items() if seconds > 0}

    def down(self) -> list[str]:
        """What is down and waited for now."""
        return [gate.what for gate in (self.model, self.tools, self.storage) if gate.down]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["OUTAGE_SECONDS_KEY", "STORAGE_OUTAGE_KEY", "Dependencies",
           "OutageGate", "Waited"]
