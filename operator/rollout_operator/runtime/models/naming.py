"""Model names and API keys, resolved and checked before any request is made.

The rules are the ones `osmosis test` / `osmosis eval` apply, so that the same `--model`,
`--base-url` and `--api-key` flags reach the same endpoint with the same model name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from rollout_operator.runtime.errors import LocalExecutionError

PLACEHOLDER_API_KEY = "EMPTY"
"""Sent to an OpenAI-compatible endpoint that was given without a key (vLLM, SGLang, Ollama)."""

PROVIDER_KEY_ENV: Mapping[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "xai": "XAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "cohere": "COHERE_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "fireworks_ai": "FIREWORKS_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "anyscale": "ANYSCALE_API_KEY",
    "replicate": "REPLICATE_API_KEY",
    "huggingface": "HUGGINGFACE_API_KEY",
    "azure": "AZURE_API_KEY",
    "ai21": "AI21_API_KEY",
    "sambanova": "SAMBANOVA_API_KEY",
    "nvidia_nim": "NVIDIA_NIM_API_KEY",
    "github": "GITHUB_API_KEY",
}
"""The variable litellm reads for each provider's key; other providers are not checked."""


class ModelConfigError(LocalExecutionError):
    """The model name or its credentials cannot work; the message says what to change."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a model call goes.

    `litellm_model` is the `provider/model` string litellm routes on; `bare_name` is the model
    name the endpoint itself receives; `api_base` is the OpenAI-compatible endpoint, if any.
    """

    litellm_model: str
    api_base: str | None
    provider: str
    bare_name: str


_FORMAT_HINT = (
    "Invalid LiteLLM model format. Use 'provider/model' (for example: openai/gpt-5-mini). "
    "Received model='{model}'. Details: {detail}"
)


def resolve_model(model: str, base_url: str | None) -> ResolvedModel:
    """Turn `--model` (and `--base-url`) into the litellm model string and endpoint.

    With a base URL every name is routed as an OpenAI-compatible model and litellm is not
    imported; without one the provider comes from `litellm.get_llm_provider`.
    """
    name = model.strip()
    if not name:
        raise ModelConfigError("Model cannot be empty. Pass a value with --model.")
    if base_url:
        bare = name.removeprefix("openai/")
        if not bare:
            raise ModelConfigError(
                f"Invalid model for --base-url. Received model='{model}'. "
                "Details: missing model name after 'openai/'"
            )
        return ResolvedModel(f"openai/{bare}", base_url.rstrip("/"), "openai", bare)

    qualified = name if "/" in name else f"openai/{name}"
    provider_part, _, model_part = qualified.partition("/")
    if not provider_part.strip() or not model_part.strip():
        raise ModelConfigError(
            _FORMAT_HINT.format(model=name, detail="missing provider or model name")
        )
    litellm = import_litellm()
    try:
        bare, provider, _key, api_base = litellm.get_llm_provider(model=qualified)
    except Exception as exc:
        detail = _first_line(str(getattr(exc, "message", None) or exc))
        detail = detail.removeprefix("litellm.BadRequestError: ")
        raise ModelConfigError(_FORMAT_HINT.format(model=name, detail=detail)) from None
    # Only a self-hosted vLLM's base (from HOSTED_VLLM_API_BASE) is an endpoint we may call
    # directly; a hosted provider's default base stays litellm's business.
    endpoint = api_base if provider == "hosted_vllm" and api_base else None
    return ResolvedModel(qualified, endpoint, str(provider), str(bare))


def check_api_key(
    resolved: ResolvedModel,
    api_key: str | None,
    base_url: str | None,
    environ: Mapping[str, str],
) -> None:
    """Fail before any request when the provider's key is plainly missing.

    Skipped when a key or base URL is given, when `LITELLM_API_KEY` is set, and for providers
    whose key variable is not known.
    """
    if api_key or base_url or environ.get("LITELLM_API_KEY"):
        return
    env_var = PROVIDER_KEY_ENV.get(resolved.provider)
    if env_var is None or environ.get(env_var):
        return
    raise ModelConfigError(
        f"Missing API key for provider '{resolved.provider}'. "
        f"Set {env_var} or LITELLM_API_KEY, or pass --api-key."
    )


@functools.cache
def import_litellm() -> ModuleType:
    """Import litellm once and quietly (it takes seconds and prints hints on every error).

    Its price map is read from the installed package unless the user asked otherwise: the
    default fetches it from the internet at import time, which hangs in a sandbox without egress.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return text.strip()
