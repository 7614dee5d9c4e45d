"""Asking an OpenAI-compatible endpoint for token ids, and checking that it gave them.

vLLM (0.10.2 on) answers `return_token_ids: true` with the prompt's ids beside the choices
(`prompt_token_ids`) and the reply's on the choice (`token_ids`); SGLang releases that know the
same field put both on the choice. `logprobs: true` adds the sampled tokens' logprobs in
OpenAI's shape (`logprobs.content[].logprob`). SGLang 0.5.13 and later also answer
`return_prompt_token_ids` and `return_meta_info` (the prompt's ids on the choice, the reply's
ids and logprobs in the choice's `meta_info.output_token_logprobs`): a managed SGLang server is
asked with those too. `replies.result_from_reply` reads every one of these shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from rollout_operator.runtime.interfaces import ChatResult
from rollout_operator.runtime.models.naming import ModelConfigError

Engine = Literal["vllm", "sglang"]

_VLLM_FIELDS: dict[str, Any] = {"return_token_ids": True, "logprobs": True}
_SGLANG_FIELDS: dict[str, Any] = {
    **_VLLM_FIELDS, "return_prompt_token_ids": True, "return_meta_info": True,
}


class TokenCaptureError(ModelConfigError):
    """Token ids were asked for, but the endpoint cannot or did not return them."""


def capture_fields(engine: Engine | None = None) -> dict[str, Any]:
    """The request fields that ask `engine` (None: any vLLM-compatible server) for token ids
    and logprobs."""
    return dict(_SGLANG_FIELDS if engine == "sglang" else _VLLM_FIELDS)


def missing_tokens(result: ChatResult) -> list[str]:
    """Which of the reply's prompt ids and completion ids are absent (empty: both there)."""
    missing = []
    if result.prompt_token_ids is None:
        missing.append("prompt_token_ids")
    if result.token_ids is None:
        missing.append("token_ids")
    return missing


def check_capture(result: ChatResult, model: str, endpoint: str) -> None:
    """Raise `TokenCaptureError` when a reply to a capturing request carries no token ids."""
    missing = missing_tokens(result)
    if missing:
        raise TokenCaptureError(
            f"spec.model.captureTokens is set, but {endpoint} answered {model} without "
            f"{' and '.join(missing)}. Token ids come from vLLM 0.10.2 or later "
            "(return_token_ids) or an SGLang release that returns them on "
            "/v1/chat/completions; upgrade the server, or remove captureTokens"
        )


__all__ = ["Engine", "TokenCaptureError", "capture_fields", "check_capture", "missing_tokens"]
