"""`evaluate_rubric`: grade a solution against a natural-language rubric with an LLM judge.

Two call forms exist in the wild and both are served by one function:

- the classic Osmosis SDK 0.2.17 form, synchronous, configured by a `model_info` dict:
  `evaluate_rubric(rubric, solution_str, model_info, *, ground_truth=None, ...) -> float`
  (or a `RewardRubricRunResult` dict with `return_details=True`);
- the newer form (osmosis-ai 0.2.25 and later), asynchronous, named by `model="provider/model"`:
  `await evaluate_rubric(solution_str=..., rubric=..., model="openai/gpt-5-mini") -> RubricResult`.

Every call goes through litellm, imported on the first call only. Beyond the SDK, `model_info`
may carry `api_base` (or `base_url`) and the newer form takes `api_base=`, so a judge can be any
OpenAI-compatible server (vLLM, SGLang, Ollama); with a base URL and no key found, the
placeholder key `"EMPTY"` is sent.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, overload

from rollout_operator.runtime.osmosis_compat.judge_errors import (
    MissingAPIKeyError,
    ModelNotFoundError,
    ProviderRequestError,
)
from rollout_operator.runtime.osmosis_compat.judge_prompts import (
    SCORE_SCHEMA,
    JudgeReplyError,
    JudgeVerdict,
    parse_verdict,
    system_prompt,
    user_prompt,
)


class ModelInfo(TypedDict, total=False):
    """The judge configuration of the classic form (all keys optional to the type checker)."""

    provider: str
    model: str
    api_key: str | None
    api_key_env: str
    score_min: float
    score_max: float
    system_prompt: str | None
    original_input: str | None
    timeout: float
    reasoning_effort: str | None
    api_base: str
    base_url: str


class RewardRubricRunResult(TypedDict):
    """What the classic form returns with `return_details=True`."""

    score: float
    explanation: str
    raw: Any


@dataclass(frozen=True, slots=True)
class RubricResult:
    """What the newer, asynchronous form resolves to."""

    score: float
    explanation: str
    raw: Any = None


PROVIDER_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "xai": "XAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "google": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "azure": "AZURE_API_KEY",
    "bedrock": "AWS_ACCESS_KEY_ID",
    "vertex_ai": "GOOGLE_APPLICATION_CREDENTIALS",
}
"""The environment variable each known provider's key is read from when none is given."""

# For these the variable only has to exist: litellm reads the credentials itself.
_CREDENTIAL_ENV_ONLY = frozenset({"bedrock", "vertex_ai"})

DEFAULT_TIMEOUT_S = 30.0
"""A judge request's timeout when neither the call nor `model_info` gives one (as 0.2.17)."""
_PROVIDER_TIMEOUT_S = {"xai": 45.0, "gemini": 45.0, "cerebras": 60.0, "openrouter": 60.0}
_MODEL_TIMEOUT_S = (("openai", "gpt-5", 45.0), ("xai", "grok-4", 60.0))

PLACEHOLDER_API_KEY = "EMPTY"


@dataclass(frozen=True, slots=True)
class JudgeCall:
    """One fully resolved judge request."""

    provider: str
    model: str
    api_key: str | None
    api_base: str | None
    timeout: float
    reasoning_effort: str | None
    score_min: float
    score_max: float
    system: str
    user: str

    @property
    def litellm_model(self) -> str:
        return litellm_model_name(self.provider, self.model)


def is_gpt5(model: str) -> bool:
    """GPT-5 models take no `temperature` and get a longer default timeout."""
    return model.rsplit("/", 1)[-1].lower().startswith("gpt-5")


def litellm_model_name(provider: str, model: str) -> str:
    """`openai` GPT-5 models go through the Responses API; the rest are `provider/model`."""
    provider = provider.lower().strip()
    if provider == "openai" and model.lower().strip().startswith("gpt-5"):
        return f"openai/responses/{model}"
    return f"{provider}/{model}" if provider else model


def default_timeout(provider: str, model: str) -> float:
    """Seconds per judge request by provider and model family, as 0.2.17 chooses them."""
    provider = provider.lower().strip()
    model = model.lower().strip()
    for known_provider, family, seconds in _MODEL_TIMEOUT_S:
        if provider == known_provider and model.startswith(family):
            return seconds
    return _PROVIDER_TIMEOUT_S.get(provider, DEFAULT_TIMEOUT_S)


def _missing_key(env_name: str, provider: str) -> MissingAPIKeyError:
    return MissingAPIKeyError(
        f"Environment variable '{env_name}' is not set. Export it with your {provider} API key "
        "before calling evaluate_rubric. You can also pass the key itself as "
        "model_info['api_key'] (or api_key= with model='provider/model')."
    )


def resolve_api_key(
    provider: str,
    explicit: object = None,
    key_env: object = None,
    api_base: str | None = None,
) -> str | None:
    """Find the judge's key: the explicit key, then `key_env`, then the provider's variable.

    None means "let litellm find the credentials" (providers it authenticates by itself, or
    providers we have no variable for).
    """
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip()
    if isinstance(key_env, str) and key_env.strip():
        name = key_env.strip()
        value = os.environ.get(name, "").strip()
        if not value:
            raise _missing_key(name, provider)
        return value
    default_env = PROVIDER_KEY_ENV.get(provider)
    if default_env is None:
        generic = os.environ.get(f"{provider.upper()}_API_KEY", "").strip()
        return generic or (PLACEHOLDER_API_KEY if api_base else None)
    value = os.environ.get(default_env, "").strip()
    if value:
        return None if provider in _CREDENTIAL_ENV_ONLY else value
    if api_base:
        return PLACEHOLDER_API_KEY
    raise _missing_key(default_env, provider)


def _required_text(value: object, message: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(message)
    return value


def _optional_text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"'{name}' must be a string or None, got {type(value).__name__}")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"'{name}' must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except ValueError:
        raise TypeError(f"'{name}' must be a number, got {value!r}") from None


def _score_range(score_min: object, score_max: object) -> tuple[float, float]:
    low = _number(score_min, "score_min")
    high = _number(score_max, "score_max")
    if high <= low:
        raise ValueError(
            f"'score_max' must be greater than 'score_min' (got score_min={low:g}, "
            f"score_max={high:g})"
        )
    return low, high


def _timeout(value: object, provider: str, model: str) -> float:
    if value is None or value == 0:
        return default_timeout(provider, model)
    seconds = _number(value, "timeout")
    if seconds <= 0:
        raise ValueError(f"'timeout' must be a positive number of seconds, got {seconds:g}")
    return seconds


def _metadata(value: object) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise TypeError(f"'metadata' must be a dict or None, got {type(value).__name__}")


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _judge_call(
    *,
    provider: str,
    model: str,
    api_key: str | None,
    api_base: str | None,
    rubric: object,
    solution_str: object,
    score_min: object,
    score_max: object,
    reasoning_effort: object,
    timeout: object,
    custom_system_prompt: object,
    original_input: object,
    ground_truth: object,
    metadata: object,
) -> JudgeCall:
    """Check the arguments both forms share, in the SDK's order, and build the request.

    `score_min` and `score_max` arrive with their defaults already filled in.
    """
    rubric_text = _required_text(rubric, "'rubric' must be a non-empty string")
    solution = _required_text(solution_str, "'solution_str' must be a non-empty string")
    low, high = _score_range(score_min, score_max)
    effort = _optional_text(reasoning_effort, "reasoning_effort")
    seconds = _timeout(timeout, provider, model)
    custom = _optional_text(custom_system_prompt, "system_prompt")
    original = _optional_text(original_input, "original_input")
    truth = _optional_text(ground_truth, "ground_truth")
    extra = _metadata(metadata)
    return JudgeCall(
        provider=provider,
        model=model,
        api_key=api_key,
        api_base=api_base or None,
        timeout=seconds,
        reasoning_effort=effort or None,
        score_min=low,
        score_max=high,
        system=system_prompt(low, high, custom),
        user=user_prompt(
            rubric_text,
            solution,
            low,
            high,
            original_input=original,
            ground_truth=truth,
            metadata=extra,
        ),
    )


def classic_call(
    rubric: object,
    solution_str: object,
    model_info: object,
    *,
    ground_truth: object = None,
    original_input: object = None,
    metadata: object = None,
    score_min: object = None,
    score_max: object = None,
    timeout: object = None,
    api_key: object = None,
    system_prompt: object = None,
    api_base: object = None,
) -> JudgeCall:
    """Validate the classic form's arguments, in the SDK's order, into one judge request."""
    if not isinstance(model_info, Mapping):
        raise TypeError(
            "'model_info' must be a dict such as {'provider': 'openai', 'model': 'gpt-5-mini'}, "
            f"got {type(model_info).__name__}"
        )
    provider = (
        _required_text(model_info.get("provider"), "'model_info' must include a 'provider' string")
        .strip()
        .lower()
    )
    model = _required_text(
        model_info.get("model"), "'model_info' must include a 'model' string"
    ).strip()
    base = _optional_text(
        _first(api_base, model_info.get("api_base"), model_info.get("base_url")), "api_base"
    )
    key = resolve_api_key(
        provider, _first(api_key, model_info.get("api_key")), model_info.get("api_key_env"), base
    )
    return _judge_call(
        provider=provider,
        model=model,
        api_key=key,
        api_base=base,
        rubric=rubric,
        solution_str=solution_str,
        score_min=_first(score_min, model_info.get("score_min"), 0.0),
        score_max=_first(score_max, model_info.get("score_max"), 1.0),
        reasoning_effort=model_info.get("reasoning_effort"),
        timeout=_first(timeout, model_info.get("timeout")),
        custom_system_prompt=_first(system_prompt, model_info.get("system_prompt")),
        original_input=_first(original_input, model_info.get("original_input")),
        ground_truth=ground_truth,
        metadata=metadata,
    )


def model_call(
    *,
    rubric: object,
    solution_str: object,
    model: object,
    ground_truth: object = None,
    original_input: object = None,
    metadata: object = None,
    score_min: object = None,
    score_max: object = None,
    api_key: object = None,
    timeout: object = None,
    system_prompt: object = None,
    api_base: object = None,
) -> JudgeCall:
    """Validate the newer form's arguments (`model="provider/model"`) into one judge request."""
    name = _required_text(model, "'model' must be a non-empty 'provider/model' string").strip()
    provider, sep, bare = name.partition("/")
    if not sep or not provider or not bare:
        raise ValueError(
            f"'model' must be 'provider/model' (for example 'openai/gpt-5-mini'), got {name!r}"
        )
    provider = provider.lower()
    base = _optional_text(api_base, "api_base")
    key = resolve_api_key(provider, api_key, None, base)
    return _judge_call(
        provider=provider,
        model=bare,
        api_key=key,
        api_base=base,
        rubric=rubric,
        solution_str=solution_str,
        score_min=_first(score_min, 0.0),
        score_max=_first(score_max, 1.0),
        reasoning_effort=None,
        timeout=timeout,
        custom_system_prompt=system_prompt,
        original_input=original_input,
        ground_truth=ground_truth,
        metadata=metadata,
    )


def _litellm() -> Any:
    import litellm

    return litellm


def completion_arguments(call: JudgeCall, litellm: Any) -> dict[str, Any]:
    """The keyword arguments of the litellm call for `call`."""
    if litellm.supports_response_schema(model=call.model, custom_llm_provider=call.provider):
        response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": "rubric_score", "strict": True, "schema": SCORE_SCHEMA},
        }
    else:
        response_format = {"type": "json_object"}
    arguments: dict[str, Any] = {
        "model": call.litellm_model,
        "messages": [
            {"role": "system", "content": call.system},
            {"role": "user", "content": call.user},
        ],
        "response_format": response_format,
        "timeout": call.timeout,
        "drop_params": True,
    }
    if not is_gpt5(call.model):
        arguments["temperature"] = 0
    if call.reasoning_effort:
        arguments["reasoning_effort"] = call.reasoning_effort
    if call.api_key is not None:
        arguments["api_key"] = call.api_key
    if call.api_base is not None:
        arguments["api_base"] = call.api_base
    return arguments


def _is_not_found(error: Exception, litellm: Any) -> bool:
    not_found = getattr(litellm, "NotFoundError", None)
    if isinstance(not_found, type) and isinstance(error, not_found):
        return True
    return any(cls.__name__ == "NotFoundError" for cls in type(error).__mro__)


def _request_failed(call: JudgeCall, error: Exception, litellm: Any) -> ProviderRequestError:
    kind = ModelNotFoundError if _is_not_found(error, litellm) else ProviderRequestError
    return kind(call.provider, call.model, str(error) or type(error).__name__)


def _reply_text(response: Any) -> str | None:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        content = None
    if content is None or not isinstance(content, str | list):
        # A response object that only offers its dump (as litellm's do) is read from that.
        dumped = _raw(response)
        try:
            content = dumped["choices"][0]["message"]["content"]
        except (IndexError, KeyError, TypeError):
            return None
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return content if isinstance(content, str) else None


def _raw(response: Any) -> Any:
    dump = getattr(response, "model_dump", None)
    return dump() if callable(dump) else response


def _verdict(call: JudgeCall, response: Any) -> tuple[float, str, Any]:
    try:
        verdict: JudgeVerdict = parse_verdict(_reply_text(response))
    except JudgeReplyError as error:
        raise ProviderRequestError(call.provider, call.model, str(error)) from error
    score = min(max(verdict.score, call.score_min), call.score_max)
    return score, verdict.explanation, _raw(response)


def run_judge(call: JudgeCall) -> tuple[float, str, Any]:
    """Send `call` with `litellm.completion`; return the clamped score, explanation, raw reply."""
    litellm = _litellm()
    try:
        response = litellm.completion(**completion_arguments(call, litellm))
    except Exception as error:
        raise _request_failed(call, error, litellm) from error
    return _verdict(call, response)


async def arun_judge(call: JudgeCall) -> RubricResult:
    """Send `call` with `litellm.acompletion`."""
    litellm = _litellm()
    try:
        response = await litellm.acompletion(**completion_arguments(call, litellm))
    except Exception as error:
        raise _request_failed(call, error, litellm) from error
    score, explanation, raw = _verdict(call, response)
    return RubricResult(score=score, explanation=explanation, raw=raw)


@overload
def evaluate_rubric(
    rubric: str,
    solution_str: str,
    model_info: ModelInfo | Mapping[str, Any],
    *,
    ground_truth: str | None = ...,
    original_input: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    score_min: float | None = ...,
    score_max: float | None = ...,
    timeout: float | None = ...,
    return_details: Literal[False] = ...,
    api_key: str | None = ...,
    system_prompt: str | None = ...,
    api_base: str | None = ...,
) -> float: ...


@overload
def evaluate_rubric(
    rubric: str,
    solution_str: str,
    model_info: ModelInfo | Mapping[str, Any],
    *,
    ground_truth: str | None = ...,
    original_input: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    score_min: float | None = ...,
    score_max: float | None = ...,
    timeout: float | None = ...,
    return_details: Literal[True],
    api_key: str | None = ...,
    system_prompt: str | None = ...,
    api_base: str | None = ...,
) -> RewardRubricRunResult: ...


@overload
def evaluate_rubric(
    rubric: str | None = ...,
    solution_str: str | None = ...,
    model_info: None = ...,
    *,
    model: str,
    ground_truth: str | None = ...,
    original_input: str | None = ...,
    metadata: Mapping[str, Any] | None = ...,
    score_min: float | None = ...,
    score_max: float | None = ...,
    api_key: str | None = ...,
    timeout: float | None = ...,
    system_prompt: str | None = ...,
    api_base: str | None = ...,
) -> Coroutine[Any, Any, RubricResult]: ...


def evaluate_rubric(
    rubric: str | None = None,
    solution_str: str | None = None,
    model_info: ModelInfo | Mapping[str, Any] | None = None,
    *,
    ground_truth: str | None = None,
    original_input: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    score_min: float | None = None,
    score_max: float | None = None,
    timeout: float | None = None,
    return_details: bool = False,
    model: str | None = None,
    api_key: str | None = None,
    system_prompt: str | None = None,
    api_base: str | None = None,
) -> float | RewardRubricRunResult | Coroutine[Any, Any, RubricResult]:
    """Score `solution_str` against `rubric` with an LLM judge.

    Classic form (synchronous): `model_info` names `provider` and `model`, and may hold
    `api_key` / `api_key_env`, `score_min` / `score_max`, `system_prompt`, `original_input`,
    `timeout`, `reasoning_effort` and, as our extension, `api_base` (alias `base_url`) for an
    OpenAI-compatible server. Keyword arguments win over `model_info`. Returns the judge's score
    clamped to `[score_min, score_max]` (default `[0, 1]`), or `{score, explanation, raw}` with
    `return_details=True`.

    Newer form (asynchronous): pass `model="provider/model"` and no `model_info`; the call returns
    an awaitable of `RubricResult(score, explanation, raw)`.

    Arguments are checked before any request: `TypeError` for a missing provider, model, rubric
    or solution; `MissingAPIKeyError` when no key can be found; `ValueError` when
    `score_max <= score_min`. A failed request, or a reply without a finite `score` and a
    non-empty `explanation`, raises `ProviderRequestError` (`ModelNotFoundError` for an unknown
    model).
    """
    if model_info is None and model is not None:
        if return_details:
            raise TypeError(
                "'return_details' belongs to the classic form (model_info=...); "
                "the model= form always resolves to a RubricResult"
            )
        call = model_call(
            rubric=rubric,
            solution_str=solution_str,
            model=model,
            ground_truth=ground_truth,
            original_input=original_input,
            metadata=metadata,
            score_min=score_min,
            score_max=score_max,
            api_key=api_key,
            timeout=timeout,
            system_prompt=system_prompt,
            api_base=api_base,
        )
        return arun_judge(call)
    if model is not None:
        raise TypeError(
            "Pass either model_info={...} (classic, synchronous) or model='provider/model' "
            "(asynchronous), not both"
        )
    if model_info is None:
        raise TypeError(
            "evaluate_rubric() needs model_info={'provider': ..., 'model': ...} "
            "or model='provider/model'"
        )
    call = classic_call(
        rubric,
        solution_str,
        model_info,
        ground_truth=ground_truth,
        original_input=original_input,
        metadata=metadata,
        score_min=score_min,
        score_max=score_max,
        timeout=timeout,
        api_key=api_key,
        system_prompt=system_prompt,
        api_base=api_base,
    )
    score, explanation, raw = run_judge(call)
    if return_details:
        return RewardRubricRunResult(score=score, explanation=explanation, raw=raw)
    return score
