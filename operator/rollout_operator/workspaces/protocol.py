"""A client of the rollout protocol (0.4) a 0.3 rollout server speaks: `POST /rollout`,
long-polled `GET /rollout/{id}/result` with the lease header, `POST /rollout/cancel`,
`GET /health`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

PROTOCOL_VERSION = "0.4"
TERMINAL = frozenset({"success", "failure", "cancelled"})
LEASE_HEADER = "X-Osmosis-Rollout-Lease"


class RolloutServerError(Exception):
    """The rollout server answered something the protocol does not allow, or nothing."""


class AtCapacity(Exception):
    """429: the server has no capacity now; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"at capacity; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RolloutResult:
    rollout_id: str
    status: str
    sample: dict[str, Any] | None
    err_message: str | None
    err_category: str | None


class RolloutClient:
    """Talks to one rollout server at `base_url` (`http://127.0.0.1:<port>`)."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        async with self._client().get(f"{self.base_url}/health",
                                      timeout=aiohttp.ClientTimeout(total=timeout_s)) as reply:
            if reply.status != 200:
                raise RolloutServerError(f"/health answered HTTP {reply.status}")
            body = await reply.json(content_type=None)
            return body if isinstance(body, dict) else {}

    async def start(self, request: dict[str, Any]) -> str:
        """Submit a rollout; its polling lease token."""
        async with self._client().post(f"{self.base_url}/rollout", json=request,
                                       timeout=aiohttp.ClientTimeout(total=60)) as reply:
            if reply.status == 429:
                raise AtCapacity(_retry_after(reply.headers.get("Retry-After")))
            body = await reply.json(content_type=None) if reply.content_length != 0 else None
            if reply.status != 202 or not isinstance(body, dict):
                raise RolloutServerError(f"POST /rollout answered HTTP {reply.status}: "
                                         f"{str(body)[:300]}")
            return str(body.get("polling_lease_token") or "")

    async def result(self, rollout_id: str, lease: str) -> RolloutResult:
        """Long-poll until the rollout is terminal."""
        while True:
            async with self._client().get(
                f"{self.base_url}/rollout/{rollout_id}/result", headers={LEASE_HEADER: lease},
                timeout=aiohttp.ClientTimeout(total=120),
            ) as reply:
                body = await reply.json(content_type=None)
                if reply.status != 200 or not isinstance(body, dict):
                    raise RolloutServerError(f"GET /rollout/{rollout_id}/result answered HTTP "
                                             f"{reply.status}: {str(body)[:300]}")
            status = str(body.get("status"))
            if status in TERMINAL:
                sample = body.get("sample")
                return RolloutResult(rollout_id, status,
                                     sample if isinstance(sample, dict) else None,
                                     body.get("err_message"), body.get("err_category"))
            await asyncio.sleep(0.05)  # the server long-polls; this only guards against one
            # that answers a running rollout at once

    async def cancel(self, ids: list[str]) -> None:
        async with self._client().post(f"{self.base_url}/rollout/cancel", json={"ids": ids},
                                       timeout=aiohttp.ClientTimeout(total=30)):
            pass

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def capacity(health: dict[str, Any]) -> int | None:
    """What `/health` says the server can run at once (`max_queue_depth`, else the backend's
    `concurrency.max_concurrent`); None when it does not say."""
    depth = health.get("max_queue_depth")
    if isinstance(depth, int) and depth > 0:
        return depth
    concurrency = health.get("concurrency")
    if isinstance(concurrency, dict):
        value = concurrency.get("max_concurrent")
        if isinstance(value, int) and value > 0:
            return value
    return None


def _retry_after(value: str | None) -> float:
    try:
        return max(0.1, float(value or 5))
    except ValueError:
        return 5.0
