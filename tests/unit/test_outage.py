"""The outage gate: callers wait out a dependency together, one probe at a time, within a budget."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rollout_operator.runtime.outage import Dependencies, OutageGate


class Dependency:
    """Something reached over the network: it refuses the next `refusals` requests (and any
    request for `broken`) and answers the others."""

    def __init__(self, refusals: int = 0, broken: str = "") -> None:
        self.refusals = refusals
        self.broken = broken
        self.requests = 0
        self.answered: list[str] = []
        self.refused = 0
        self.refusing = asyncio.Event()

    async def request(self, what: str = "x") -> str:
        self.requests += 1
        await asyncio.sleep(0.001)
        if self.refusals > 0 or (self.broken and what == self.broken):
            self.refusals = max(0, self.refusals - 1)
            self.refused += 1
            self.refusing.set()
            raise ConnectionRefusedError(f"connection refused ({what})")
        self.answered.append(what)
        return what


def refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError)


def gate(budget_s: float = 60.0) -> OutageGate:
    return OutageGate("test dependency", budget_s, base_delay_s=0.001, max_delay_s=0.004)


def test_callers_wait_out_an_outage_together_probing_one_at_a_time() -> None:
    async def main() -> None:
        dependency = Dependency()
        outage = gate()
        first = await outage.call(lambda: dependency.request("before"), refused)
        dependency.refusals = 5  # the first request of the outage and four probes

        async def caller(n: int) -> str:
            await asyncio.sleep(0.0005 * n)  # they arrive while the first is being refused
            return await outage.call(lambda: dependency.request(f"r{n}"), refused)

        results = await asyncio.gather(*(caller(n) for n in range(32)))
        assert first == "before"
        assert results == [f"r{n}" for n in range(32)]
        assert sorted(dependency.answered) == sorted(["before", *results])
        assert outage.outages == 1 and not outage.down and outage.waited_s > 0

    asyncio.run(main())


def test_waiters_send_nothing_while_the_turn_holder_probes() -> None:
    async def main() -> None:
        dependency = Dependency()
        outage = gate()
        dependency.refusals = 7  # the first request of the outage and six probes
        tripped = asyncio.create_task(outage.call(lambda: dependency.request("first"), refused))
        await dependency.refusing.wait()
        assert outage.down
        waiting = [asyncio.create_task(outage.call(lambda n=n: dependency.request(f"w{n}"),
                                                   refused)) for n in range(16)]
        assert await tripped == "first"
        assert [await task for task in waiting] == [f"w{n}" for n in range(16)]
        # One request at a time once the outage began: the probes, then each caller's own.
        assert dependency.refused == 7
        assert dependency.requests == 7 + 17

    asyncio.run(main())


def test_a_probe_ends_the_outage_and_every_waiter_sends_its_request_again() -> None:
    async def main() -> None:
        dependency = Dependency(refusals=1)
        health = Dependency(refusals=3)
        outage = OutageGate("test dependency", 60, base_delay_s=0.001, max_delay_s=0.004,
                            probe=lambda: health.request("health"))
        results = await asyncio.gather(
            *(outage.call(lambda n=n: dependency.request(f"r{n}"), refused) for n in range(8)))
        assert results == [f"r{n}" for n in range(8)]
        assert health.requests == 4 and health.answered == ["health"]
        assert dependency.refused == 1

    asyncio.run(main())


def test_past_the_budget_every_caller_gets_its_error_until_a_request_goes_through() -> None:
    async def main() -> None:
        dependency = Dependency(refusals=10**9)
        outage = gate(budget_s=0.05)
        outcomes = await asyncio.gather(
            *(outage.call(lambda: dependency.request(), refused) for _ in range(8)),
            return_exceptions=True)
        assert all(isinstance(o, ConnectionRefusedError) for o in outcomes)
        assert not outage.down
        waited = outage.waited_s
        await asyncio.sleep(0.01)
        assert outage.waited_s == waited  # no longer waiting, no longer counted

        before = dependency.requests
        with pytest.raises(ConnectionRefusedError):  # given up: no waiting now
            await outage.call(lambda: dependency.request(), refused)
        assert dependency.requests == before + 1

        dependency.refusals = 0
        assert await outage.call(lambda: dependency.request("back"), refused) == "back"
        dependency.refusals = 2  # a new outage is waited out again
        assert await outage.call(lambda: dependency.request("again"), refused) == "again"
        assert outage.outages == 2

    asyncio.run(main())


def test_an_error_only_one_request_meets_is_not_waited_out() -> None:
    async def main() -> None:
        dependency = Dependency(broken="bad")
        health = Dependency()
        outage = OutageGate("test dependency", 60, base_delay_s=0.001, max_delay_s=0.004,
                            probe=lambda: health.request("health"))
        with pytest.raises(ConnectionRefusedError, match="bad"):
            await outage.call(lambda: dependency.request("bad"), refused)
        # The probe answered at once: no outage, and nobody waited.
        assert (dependency.refused, health.requests, outage.outages) == (1, 1, 0)
        assert await outage.call(lambda: dependency.request("good"), refused) == "good"


def test_an_error_of_one_request_after_an_outage_is_its_own() -> None:
    """Without a probe: once others got through, the request that fails again gets its error."""
    async def main() -> None:
        dependency = Dependency(refusals=1, broken="bad")
        outage = gate()
        bad = asyncio.create_task(outage.call(lambda: dependency.request("bad"), refused))
        await dependency.refusing.wait()
        good = await outage.call(lambda: dependency.request("good"), refused)
        with pytest.raises(ConnectionRefusedError, match="bad"):
            await bad
        assert good == "good" and outage.outages == 1

    asyncio.run(main())

    asyncio.run(main())


def test_other_errors_and_a_zero_budget_are_not_waited_for() -> None:
    async def main() -> None:
        dependency = Dependency(refusals=3)
        with pytest.raises(ConnectionRefusedError):
            await OutageGate("x", 0).call(lambda: dependency.request(), refused)
        assert dependency.requests == 1

        async def wrong() -> None:
            raise ValueError("a bad request")

        with pytest.raises(ValueError):
            await gate().call(wrong, refused)

    asyncio.run(main())


def test_waiting_is_reported_to_the_caller_and_by_dependency() -> None:
    async def main() -> None:
        dependencies = Dependencies.with_budget(60)
        dependencies.storage.base_delay_s = 0.001
        dependency = Dependency(refusals=3)
        waits: list[float] = []
        await dependencies.storage.call(lambda: dependency.request(), refused,
                                        on_wait=waits.append)
        assert sum(waits) > 0
        assert list(dependencies.waited()) == ["storage"]
        assert dependencies.down() == []

    asyncio.run(main())


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more seconds"):
        OutageGate("x", -1)


def test_the_wait_is_logged_with_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        dependency = Dependency(refusals=3)
        await gate().call(lambda: dependency.request(), refused)

    with caplog.at_level(logging.WARNING, logger="rollout_operator.runtime.outage"):
        asyncio.run(main())
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("Test dependency unreachable (connection refused (x)); "
                               "waiting for it, up to 60 s")
    assert [line.split(" s of ")[1] for line in lines[1:-1]] == [
        "60 s budget (connection refused (x))"] * 2
    assert all(line.startswith("Test dependency unreachable, waiting ") for line in lines[1:-1])
    assert lines[-1].startswith("Test dependency is back after")
