"""Where the gateway sends a call: an OpenAI-compatible endpoint, or a provider via litellm.

Every upstream answers `(status, JSON body)`; a call that got no HTTP answer raises
`UpstreamUnreachable`. The provider key lives here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import aiohttp

from rollout_operator.runtime.lean_http import LeanHttp
from rollout_operator.runtime.models.naming import (
    PLACEHOLDER_API_KEY,
    import_litellm,
    resolve_model,
)

DEFAULT_TIMEOUT_S = 600.0


class UpstreamUnreachable(ConnectionError):
    """The call got no HTTP answer (connection refused or broken, timeout)."""


class Upstream(Protocol):
    wire_model: str
    """The model name the upstream receives, forced into every request."""

    async def complete(self, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST a chat completion; the status and raw body of the answer."""
        ...

    async def close(self) -> None: ...


class OpenAICompatibleUpstream:
    """`<base_url>/chat/completions`: plain HTTP through `LeanHttp`, HTTPS through aiohttp."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        resolved = resolve_model(model, base_url)
        assert resolved.api_base is not None
        self.wire_model = resolved.bare_name
        self._base = resolved.api_base
        self._headers = {"Authorization": f"Bearer {api_key or PLACEHOLDER_API_KEY}"}
        self._timeout_s = timeout_s
        self._lean = (LeanHttp(self._base, keep=64, headers=self._headers)
                      if self._base.startswith("http://") else None)
        self._session: aiohttp.ClientSession | None = None

    async def complete(self, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        if self._lean is not None:
            import asyncio

            try:
                async with asyncio.timeout(self._timeout_s):
                    return await self._lean.post("/chat/completions", data)
            except (ConnectionError, TimeoutError) as exc:
                raise UpstreamUnreachable(type(exc).__name__) from None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        try:
            async with self._session.post(f"{self._base}/chat/completions", data=data) as reply:
                return reply.status, await reply.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnreachable(type(exc).__name__) from None

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        if self._session is not None:
            await self._session.close()


class LitellmUpstream:
    """A provider model (`provider/model`) called with litellm, as the rest of the runtime does."""

    def __init__(self, model: str, api_key: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        resolved = resolve_model(model, None)
        self.wire_model = resolved.litellm_model
        self._api_key = api_key
        self._timeout_s = timeout_s

    async def complete(self, body: dict[str, Any]) -> tuple[int, bytes]:
        litellm = import_litellm()
        request = dict(body)
        request.pop("model", None)
        try:
            reply = await litellm.acompletion(model=self.wire_model, api_key=self._api_key,
                                              timeout=self._timeout_s, **request)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and 400 <= status < 600:
                message = str(getattr(exc, "message", None) or exc)
                return status, json.dumps({"error": {"message": message,
                                                     "type": type(exc).__name__}}).encode()
            raise UpstreamUnreachable(type(exc).__name__) from None
        return 200, json.dumps(reply.model_dump()).encode()

    async def close(self) -> None:
        return None


def make_upstream(model: str, base_url: str | None, api_key: str | None) -> Upstream:
    """An OpenAI-compatible upstream when a base URL is given, else litellm's provider."""
    if base_url:
        return OpenAICompatibleUpstream(base_url, model, api_key)
    return LitellmUpstream(model, api_key)
