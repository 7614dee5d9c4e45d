"""Choosing a chat client for a model, and the one-token check before a batch starts."""

from __future__ import annotations

import logging
import os

from rollout_operator.runtime.errors import ProviderError, SystemicProviderError
from rollout_operator.runtime.interfaces import ChatModel
from rollout_operator.runtime.models.http_chat import OpenAIHttpChat
from rollout_operator.runtime.models.litellm_chat import LiteLLMChat
from rollout_operator.runtime.models.naming import resolve_model
from rollout_operator.runtime.models.token_capture import (
    Engine,
    TokenCaptureError,
    capture_fields,
    check_capture,
)

logger = logging.getLogger(__name__)

_LEAN_PROVIDERS = frozenset({"openai", "hosted_vllm"})


def make_chat_model(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    lean: bool = True,
    request_timeout: float | None = None,
    capture_tokens: bool = False,
    engine: Engine | None = None,
) -> ChatModel:
    """The client for `model`: the lean HTTP one whenever the endpoint is OpenAI-compatible.

    That is the case with a base URL, or for `hosted_vllm/...` with `HOSTED_VLLM_API_BASE`;
    everything else (hosted providers, `lean=False`) goes through litellm. With a base URL the
    name resolves without importing litellm.

    `capture_tokens` asks every call for token ids and logprobs in `engine`'s words (see
    `token_capture`). Only the lean client does: it sends the fields as they are and reads the
    reply's raw JSON, where the ids are (the prompt's beside the choices); a model that would
    go through litellm raises `TokenCaptureError`.
    """
    resolved = resolve_model(model, base_url)
    lean_path = bool(lean and resolved.api_base and resolved.provider in _LEAN_PROVIDERS)
    if capture_tokens and not lean_path:
        raise TokenCaptureError(
            f"Token capture needs an OpenAI-compatible endpoint (vLLM or SGLang), but "
            f"{resolved.litellm_model} goes to provider '{resolved.provider}' without a base "
            "URL: set spec.model.baseURL (or HOSTED_VLLM_API_BASE for a hosted_vllm/ name), "
            "or remove spec.model.captureTokens"
        )
    if lean_path:
        assert resolved.api_base is not None
        if resolved.provider == "hosted_vllm":
            api_key = api_key or os.environ.get("HOSTED_VLLM_API_KEY")
        return OpenAIHttpChat(
            resolved.api_base,
            resolved.bare_name,
            api_key,
            request_timeout=request_timeout,
            label=resolved.litellm_model,
            extra_fields=capture_fields(engine) if capture_tokens else None,
        )
    return LiteLLMChat(resolved, api_key, request_timeout=request_timeout)


async def preflight(chat: ChatModel, *, require_tokens: bool = False) -> None:
    """Send a one-token `"hi"`: a systemic failure (bad key, wrong URL, unknown model) raises.

    Anything else, a rate limit or a 5xx included, means the endpoint is there; the batch goes
    on and its rows meet the error themselves if it persists. With `require_tokens` (a client
    that asks for token ids) a reply without them raises `TokenCaptureError`: the endpoint
    does not know the fields, and every rollout would be recorded without tokens.
    """
    try:
        result = await chat.chat([{"role": "user", "content": "hi"}], max_tokens=1)
    except SystemicProviderError:
        raise
    except ProviderError as exc:
        logger.debug("Preflight for %s ignored: %s", chat.model, exc)
        return
    if require_tokens:
        check_capture(result, chat.model, str(getattr(chat, "base_url", "the endpoint")))
