"""A lean chat client for OpenAI-compatible endpoints (vLLM, SGLang, Ollama, proxies).

It POSTs `/chat/completions` with one pooled aiohttp session and reads the reply with the
shared parser: a fraction of a millisecond of client CPU per call where litellm spends 5-10 ms,
which matters when hundreds of rollouts share one worker core. It does not retry: the agent loop
decides, from `ProviderError.retryable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from rollout_operator.runtime.interfaces import ChatResult, Message, ToolSchema
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
            async with self._client().post(
                self._url, data=data, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                raw = await response.read()
                status = response.status
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
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


__all__ = ["DEFAULT_REQUEST_TIMEOUT_S", "OpenAIHttpChat"]
