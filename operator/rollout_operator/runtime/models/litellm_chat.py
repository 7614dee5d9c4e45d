"""The general chat client: any provider litellm knows, called the way upstream calls it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollout_operator.runtime.interfaces import ChatResult, Message, ToolSchema
from rollout_operator.runtime.models.failures import (
    CallSite,
    Failure,
    failure_from_exception,
    to_provider_error,
)
from rollout_operator.runtime.models.naming import (
    PLACEHOLDER_API_KEY,
    ResolvedModel,
    import_litellm,
)
from rollout_operator.runtime.models.replies import finish_reason, token_data, usage_from


class LiteLLMChat:
    """`ChatModel` on `litellm.acompletion`.

    litellm's own retries are turned off (`max_retries=0`): the agent loop retries retryable
    errors itself, and two retry layers would multiply the wait on a failing endpoint.
    """

    def __init__(
        self,
        resolved: ResolvedModel,
        api_key: str | None = None,
        *,
        request_timeout: float | None = None,
    ) -> None:
        self._litellm = import_litellm()
        self.model = resolved.litellm_model
        self.resolved = resolved
        self.request_timeout = request_timeout
        if not api_key and resolved.api_base and resolved.provider == "openai":
            api_key = PLACEHOLDER_API_KEY
        self._api_key = api_key
        endpoint = resolved.api_base or f"provider '{resolved.provider}'"
        self._site = CallSite(self.model, endpoint, api_key)

    async def chat(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] | None = None,
        **params: Any,
    ) -> ChatResult:
        kwargs: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        timeout = kwargs.pop("timeout", None) or self.request_timeout
        if tools:
            kwargs["tools"] = list(tools)
        if self.resolved.api_base:
            kwargs["api_base"] = self.resolved.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        if timeout:
            kwargs["timeout"] = timeout
        try:
            response = await self._litellm.acompletion(
                model=self.model, messages=list(messages), max_retries=0, **kwargs
            )
        except Exception as exc:
            failure = failure_from_exception(exc)
            if failure.kind == "timeout" and timeout:
                failure = Failure("timeout", failure.status, f"no reply within {timeout:g}s")
            raise to_provider_error(failure, self._site) from exc
        choice = response.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        token_ids, logprobs = token_data(
            getattr(choice, "token_ids", None), getattr(choice, "logprobs", None)
        )
        usage = getattr(response, "usage", None)
        return ChatResult(
            message=message,
            finish_reason=finish_reason(choice.finish_reason, message),
            usage=usage_from(usage.model_dump() if usage is not None else None),
            token_ids=token_ids,
            logprobs=logprobs,
        )

    async def aclose(self) -> None:
        """litellm keeps its HTTP clients in a process-wide cache shared by every caller."""
