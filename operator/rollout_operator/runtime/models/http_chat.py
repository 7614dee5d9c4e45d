"""A lean chat client for OpenAI-compatible endpoints (vLLM, SGLang, Ollama, proxies).

It POSTs `/chat/completions` and reads the reply with the shared parser: a fraction of a
millisecond of client CPU per call where litellm spends 5-10 ms, which matters when hundreds of
rollouts share one worker core. A plain `http://` endpoint is posted to with the keep-alive
client of `lean_http` (about half aiohttp's CPU per call); `https://` goes through one pooled
aiohttp session, as does the reachability probe. It does not retry: the agent loop decides,
from `ProviderError.retryable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from rollout_operator.runtime.interfaces import ChatResult, Message, ToolSchema
from rollout_operator.runtime.lean_http import ConnectFailed, ConnectionBroken, LeanHttp
from rollout_operator.runtime.models.failures import (
    OUTAGE_STATUSES,
    CallSite,
    Failure,
    failure_from_exception,
    to_provider_error,
)
from rollout_operator.runtime.models.naming import PLACEHOLDER_API_KEY, resolve_model
from rollout_operator.runtime.models.replies import InvalidReply, error_detail, result_from_reply

REACHABLE_TIMEOUT_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 600.0
"""litellm's default, so that both clients give up on a silent endpoint at the same time."""


class OpenAIHttpChat:
    """`ChatModel` over plain HTTP.

    `model` may be given with or without the `openai/` prefix, which is not sent; `label` is the
    name errors and records show when it differs (`hosted_vllm/...`). `extra_fields` go into
    every request body (`token_capture.capture_fields()`, for instance).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        request_timeout: float | None = None,
        max_connections: int = 1024,
        label: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
    ) -> None:
        resolved = resolve_model(model, base_url)
        assert resolved.api_base is not None
        self.model = label or resolved.litellm_model
        self.wire_model = resolved.bare_name
        self.base_url = resolved.api_base
        self.request_timeout = request_timeout or DEFAULT_REQUEST_TIMEOUT_S
        self._url = f"{self.base_url}/chat/completions"
        self._api_key = api_key or PLACEHOLDER_API_KEY
        self._headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
        }
        self._site = CallSite(self.model, self.base_url, self._api_key)
        self._max_connections = max_connections
        self.extra_fields: dict[str, Any] = dict(extra_fields or {})
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._lean: LeanHttp | None = None
        self._lean_loop: asyncio.AbstractEventLoop | None = None
        self._lean_slots: asyncio.Semaphore | None = None

    def _lean_client(self) -> tuple[LeanHttp, asyncio.Semaphore] | None:
        """The keep-alive client for a plain-HTTP endpoint (None for https), one per loop."""
        if not self.base_url.startswith("http://"):
            return None
        loop = asyncio.get_running_loop()
        if self._lean is None or self._lean_slots is None or self._lean_loop is not loop:
            self._lean = LeanHttp(self.base_url, keep=self._max_connections,
                                  headers={"Authorization": self._headers["Authorization"]})
            self._lean_slots = asyncio.Semaphore(self._max_connections)
            self._lean_loop = loop
        return self._lean, self._lean_slots

    async def _post(self, data: bytes, limit: float) -> tuple[int, bytes]:
        """(status, body) of the chat request; the lean client raises `ConnectFailed` or
        `ConnectionBroken`, aiohttp its own errors, either `TimeoutError` past `limit` seconds."""
        lean = self._lean_client()
        if lean is None:
            async with self._client().post(
                self._url, data=data, timeout=aiohttp.ClientTimeout(total=limit)
            ) as response:
                return response.status, await response.read()
        client, slots = lean
        async with asyncio.timeout(limit), slots:
            return await client.post("/chat/completions", data)

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, skip_auto_headers=("User-Agent",)
            )
            self._session_loop = loop
        return self._session

    async def chat(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] | None = None,
        **params: Any,
    ) -> ChatResult:
        timeout = params.pop("timeout", None) or self.request_timeout
        body: dict[str, Any] = {"model": self.wire_model, "messages": list(messages),
                                **self.extra_fields}
        if tools:
            body["tools"] = list(tools)
        for key, value in params.items():
            if value is not None:
                body[key] = value
        data = json.dumps(body).encode()
        try:
            status, raw = await self._post(data, timeout)
        except ConnectFailed as exc:
            raise to_provider_error(Failure("connect", None, str(exc)), self._site) from exc
        except ConnectionBroken as exc:
            raise to_provider_error(Failure("disconnect", None, str(exc)), self._site) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = failure_from_exception(exc)
            if failure.kind == "timeout":
                failure = Failure("timeout", None, f"no reply within {timeout:g}s")
            raise to_provider_error(failure, self._site) from exc
        if status >= 400:
            raise to_provider_error(Failure("http", status, error_detail(raw)), self._site)
        try:
            return result_from_reply(json.loads(raw))
        except (ValueError, InvalidReply) as exc:
            failure = Failure("invalid_reply", status, str(exc))
            raise to_provider_error(failure, self._site) from exc

    async def reachable(self) -> None:
        """Raise `ProviderError` while the endpoint cannot be reached (no connection, 502, 503,
        504); any other answer to `GET /models`, an error included, means it is there."""
        try:
            async with self._client().get(
                f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=REACHABLE_TIMEOUT_S)
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise to_provider_error(failure_from_exception(exc), self._site) from exc
        if status in OUTAGE_STATUSES:
            raise to_provider_error(Failure("http", status, ""), self._site)

    async def aclose(self) -> None:
        lean, self._lean = self._lean, None
        if lean is not None:
            await lean.close()
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


__all__ = ["DEFAULT_REQUEST_TIMEOUT_S", "OpenAIHttpChat"]
