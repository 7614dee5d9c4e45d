"""Model clients against the scripted OpenAI-compatible server: naming, keys, parity, errors."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import pytest

from rollout_operator.runtime.errors import ProviderError, SystemicProviderError
from rollout_operator.runtime.interfaces import ChatModel, ChatResult
from rollout_operator.runtime.models import (
    CallSite,
    Failure,
    LiteLLMChat,
    ModelConfigError,
    OpenAIHttpChat,
    ResolvedModel,
    check_api_key,
    make_chat_model,
    preflight,
    resolve_model,
    to_provider_error,
)
from tests.support.scripted_model import ScriptedModelServer

MULTIPLY = {
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Calculate the product of two numbers",
        "parameters": {
            "type": "object",
            "properties": {"first_val": {"type": "number"}, "second_val": {"type": "number"}},
            "required": ["first_val", "second_val"],
        },
        "strict": False,
    },
}
CLIENTS = ["lean", "litellm"]
KEY = "sk-test-secret-4711"


def unique(flags: str = "") -> str:
    """A model name no other test uses, so its recorded requests can be told apart."""
    return f"scripted:{flags + ':' if flags else ''}run-{uuid.uuid4().hex[:8]}"


def sent(server: ScriptedModelServer, model: str) -> list[dict[str, Any]]:
    return [body for body in server.requests if body.get("model") == model]


def same_ids(value: Any) -> Any:
    """The server numbers tool calls across all requests; compare with the numbers blanked."""
    text = json.dumps(value, default=lambda o: o.__dict__ if hasattr(o, "__dict__") else repr(o))
    return json.loads(re.sub(r"call_\d+_(\d+)", r"call_N_\1", text))


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., ChatModel]]:
    made: list[ChatModel] = []

    def make(kind: str, model: str, base_url: str, **kwargs: Any) -> ChatModel:
        chat = make_chat_model(model, base_url=base_url, lean=kind == "lean", **kwargs)
        assert isinstance(chat, OpenAIHttpChat if kind == "lean" else LiteLLMChat)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        await chat.aclose()


# --- model naming and the API-key check (osmosis-compat 3.1, check 14) ---------------------------

@pytest.mark.parametrize(
    ("model", "base_url", "expected"),
    [
        ("gpt-5-mini", None, ResolvedModel("openai/gpt-5-mini", None, "openai", "gpt-5-mini")),
        ("openai/gpt-5-mini", None,
         ResolvedModel("openai/gpt-5-mini", None, "openai", "gpt-5-mini")),
        ("anthropic/claude-sonnet-4-5", None,
         ResolvedModel("anthropic/claude-sonnet-4-5", None, "anthropic", "claude-sonnet-4-5")),
        ("my-model", "http://h:8000/v1",
         ResolvedModel("openai/my-model", "http://h:8000/v1", "openai", "my-model")),
        ("Qwen/Qwen3-8B", "http://h:8000/v1/",
         ResolvedModel("openai/Qwen/Qwen3-8B", "http://h:8000/v1", "openai", "Qwen/Qwen3-8B")),
        ("openai/my-model", "http://h:8000/v1",
         ResolvedModel("openai/my-model", "http://h:8000/v1", "openai", "my-model")),
    ],
)
def test_resolve_model(model: str, base_url: str | None, expected: ResolvedModel) -> None:
    assert resolve_model(model, base_url) == expected


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("Qwen/Qwen3-8B",
         "Invalid LiteLLM model format. Use 'provider/model' (for example: openai/gpt-5-mini). "
         "Received model='Qwen/Qwen3-8B'. Details: LLM Provider NOT provided."),
        ("openai/",
         "Invalid LiteLLM model format. Use 'provider/model' (for example: openai/gpt-5-mini). "
         "Received model='openai/'. Details: missing provider or model name"),
        ("  ", "Model cannot be empty. Pass a value with --model."),
    ],
)
def test_resolve_model_rejects_unroutable_names(model: str, message: str) -> None:
    with pytest.raises(ModelConfigError) as caught:
        resolve_model(model, None)
    assert str(caught.value).startswith(message)


def test_base_url_models_never_import_litellm(scripted_model: ScriptedModelServer) -> None:
    code = (
        "import asyncio, sys\n"
        "from rollout_operator.runtime.models import make_chat_model, preflight\n"
        f"chat = make_chat_model('scripted', base_url='{scripted_model.base_url}')\n"
        "async def main():\n"
        "    await preflight(chat)\n"
        "    reply = await chat.chat([{'role': 'user', 'content': 'What is 2 * 3?'}])\n"
        "    await chat.aclose()\n"
        "    return reply\n"
        "reply = asyncio.run(main())\n"
        "assert reply.tool_calls, reply\n"
        "print(type(chat).__name__, 'litellm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split() == ["OpenAIHttpChat", "False"]


@pytest.mark.parametrize(
    ("model", "api_key", "base_url", "environ", "error"),
    [
        ("gpt-5-mini", None, None, {},
         "Missing API key for provider 'openai'. Set OPENAI_API_KEY or LITELLM_API_KEY, "
         "or pass --api-key."),
        ("anthropic/claude-sonnet-4-5", None, None, {"OPENAI_API_KEY": "x"},
         "Missing API key for provider 'anthropic'. Set ANTHROPIC_API_KEY or LITELLM_API_KEY, "
         "or pass --api-key."),
        ("together_ai/meta-llama/Llama-3-8b", None, None, {},
         "Missing API key for provider 'together_ai'. Set TOGETHERAI_API_KEY or "
         "LITELLM_API_KEY, or pass --api-key."),
        ("gpt-5-mini", None, None, {"OPENAI_API_KEY": "sk-1"}, None),
        ("gpt-5-mini", None, None, {"LITELLM_API_KEY": "sk-1"}, None),
        ("gpt-5-mini", "sk-1", None, {}, None),
        ("my-model", None, "http://h:8000/v1", {}, None),
        ("ollama/llama3", None, None, {}, None),
    ],
)
def test_check_api_key(
    model: str, api_key: str | None, base_url: str | None, environ: dict[str, str],
    error: str | None,
) -> None:
    resolved = resolve_model(model, base_url)
    if error is None:
        check_api_key(resolved, api_key, base_url, environ)
    else:
        with pytest.raises(ModelConfigError) as caught:
            check_api_key(resolved, api_key, base_url, environ)
        assert str(caught.value) == error


def test_client_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_chat_model("m", base_url="http://h:8000/v1"), OpenAIHttpChat)
    assert isinstance(make_chat_model("m", base_url="http://h:8000/v1", lean=False), LiteLLMChat)
    assert isinstance(make_chat_model("gpt-5-mini"), LiteLLMChat)
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://vllm:8000/v1")
    chat = make_chat_model("hosted_vllm/Qwen/Qwen3-8B")
    assert isinstance(chat, OpenAIHttpChat)
    assert (chat.base_url, chat.wire_model) == ("http://vllm:8000/v1", "Qwen/Qwen3-8B")
    assert chat.model == "hosted_vllm/Qwen/Qwen3-8B"


# --- both clients send the same request and read the same reply ---------------------------------

async def run_conversation(chat: ChatModel, **params: Any) -> list[ChatResult]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "What is 12 * 8?"},
    ]
    results = []
    for _ in range(2):
        result = await chat.chat(messages, [MULTIPLY], **params)
        results.append(result)
        messages.append(result.message)
        for call in result.tool_calls:
            messages.append({"role": "tool", "content": "96.0", "tool_call_id": call["id"]})
    return results


@pytest.mark.parametrize(
    ("flags", "params"),
    [
        ("", {"temperature": 0.3, "max_tokens": 256, "top_p": 0.9}),
        ("logprobs", {"temperature": 1.0}),
        ("openai-logprobs", {"logprobs": True}),
    ],
)
async def test_clients_send_and_read_the_same(
    scripted_model: ScriptedModelServer, clients: Callable[..., ChatModel],
    flags: str, params: dict[str, Any],
) -> None:
    model = unique(flags)
    results: dict[str, list[ChatResult]] = {}
    bodies: dict[str, list[dict[str, Any]]] = {}
    for kind in CLIENTS:
        before = len(sent(scripted_model, model))
        results[kind] = await run_conversation(
            clients(kind, model, scripted_model.base_url), **params
        )
        bodies[kind] = sent(scripted_model, model)[before:]

    lean, full = results["lean"], results["litellm"]
    assert [same_ids(asdict(r)) for r in lean] == [same_ids(asdict(r)) for r in full]
    assert same_ids(bodies["lean"]) == same_ids(bodies["litellm"])

    first, second = bodies["lean"]
    assert first["model"] == model
    assert first["tools"] == [MULTIPLY] and second["tools"] == [MULTIPLY]
    assert "tool_choice" not in first
    assert {k: first[k] for k in params} == params
    assert set(first) == {"model", "messages", "tools", *params}

    call, answer = lean
    assert call.finish_reason == "tool_calls" and answer.finish_reason == "stop"
    # Upstream stores model_dump(exclude_none=True): no `content: None` beside tool calls.
    assert "content" not in call.message
    assert call.tool_calls[0]["function"]["name"] == "multiply"
    assert second["messages"][2] == call.message
    assert answer.message == {"role": "assistant", "content": "The result is 96.0\n#### 96.0"}
    assert call.usage.prompt_tokens > 0 and call.usage.completion_tokens > 0

    if flags == "logprobs":
        n = call.usage.completion_tokens
        assert call.token_ids == list(range(n)) and call.logprobs == [-0.5] * n
    elif flags == "openai-logprobs":
        n = call.usage.completion_tokens
        assert call.token_ids is None
        assert call.logprobs == [-0.25 * (i % 4) for i in range(n)]
    else:
        assert call.token_ids is None and call.logprobs is None


RAW_CHOICES = [
    {"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "multiply", "arguments": {"first_val": 2}}},
        {"id": "c2", "type": "function", "index": 1,
         "function": {"name": "multiply", "arguments": None}},
    ]}, "finish_reason": "stop"},
    {"message": {"role": "assistant", "content": "<think>12 times 8</think>#### 96",
                 "refusal": None, "audio": None}, "finish_reason": None},
    {"message": {"role": "assistant", "content": "#### 96", "reasoning_content": "easy",
                 "annotations": []}, "finish_reason": "length"},
    {"message": {"role": "assistant", "content": "#### 96", "reasoning": "vllm style",
                 "custom_field": {"a": 1}}, "finish_reason": "eos"},
    {"message": {"role": "assistant", "content": "#### 96", "refusal": "no"},
     "finish_reason": "content_filter", "token_ids": [5, 6], "logprobs": [-0.1, -0.2]},
]


@pytest.mark.parametrize("raw", RAW_CHOICES)
async def test_clients_normalise_replies_alike(
    scripted_model: ScriptedModelServer, clients: Callable[..., ChatModel], raw: dict[str, Any]
) -> None:
    model = unique("reply-json")
    messages = [{"role": "user", "content": json.dumps(raw)}]
    lean = await clients("lean", model, scripted_model.base_url).chat(messages)
    full = await clients("litellm", model, scripted_model.base_url).chat(messages)
    assert lean == full
    assert lean.message.get("role") == "assistant"
    assert None not in lean.message.values()


async def test_placeholder_and_given_keys_are_sent(
    scripted_model: ScriptedModelServer, clients: Callable[..., ChatModel]
) -> None:
    model = unique("echo-auth")
    hi = [{"role": "user", "content": "hi"}]
    for kind in CLIENTS:
        anonymous = await clients(kind, model, scripted_model.base_url).chat(hi)
        keyed = await clients(kind, model, scripted_model.base_url, api_key=KEY).chat(hi)
        assert anonymous.message["content"] == "Bearer EMPTY", kind
        assert keyed.message["content"] == f"Bearer {KEY}", kind


async def test_lean_client_carries_many_calls_at_once(scripted_model: ScriptedModelServer) -> None:
    chat = OpenAIHttpChat(scripted_model.base_url, unique(), max_connections=16)
    try:
        prompts = [f"What is {i} * 3?" for i in range(64)]
        replies = await asyncio.gather(
            *(chat.chat([{"role": "user", "content": p}], [MULTIPLY]) for p in prompts)
        )
    finally:
        await chat.aclose()
    values = [json.loads(r.tool_calls[0]["function"]["arguments"])["first_val"] for r in replies]
    assert values == [float(i) for i in range(64)]


# --- errors (check 20) ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("flags", "systemic", "retryable", "status", "words"),
    [
        ("status-401", True, False, 401, "Authentication failed (HTTP 401)"),
        ("status-403", True, False, 403, "(HTTP 403)"),
        ("status-404", True, False, 404, "Not found (HTTP 404)"),
        ("status-400", False, False, 400, "Request rejected (HTTP 400)"),
        ("status-429", False, True, 429, "Rate limited (HTTP 429)"),
        ("status-500", False, True, 500, "Server error (HTTP 500)"),
        ("status-503", False, True, 503, "Server error (HTTP 503)"),
        ("sleep-1500", False, True, None, "timed out: no reply within 0.3s"),
        ("drop", False, True, None, "dropped before the reply was complete"),
    ],
)
@pytest.mark.parametrize("kind", CLIENTS)
async def test_error_mapping(
    scripted_model: ScriptedModelServer, clients: Callable[..., ChatModel], kind: str,
    flags: str, systemic: bool, retryable: bool, status: int | None, words: str,
) -> None:
    model = unique(flags)
    chat = clients(kind, model, scripted_model.base_url, api_key=KEY)
    with pytest.raises(ProviderError) as caught:
        await chat.chat([{"role": "user", "content": "hi"}], timeout=0.3)
    error = caught.value
    assert isinstance(error, SystemicProviderError) is systemic
    assert (error.retryable, error.status) == (retryable, status)
    message = str(error)
    assert words in message
    assert f"'openai/{model}'" in message and scripted_model.base_url in message
    if status is not None:
        assert f"scripted status {status}" in message
    assert KEY not in message


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:1/v1", "http://no-such-host.invalid/v1"],
    ids=["refused", "dns"],
)
async def test_unreachable_endpoint_is_systemic(
    clients: Callable[..., ChatModel], kind: str, base_url: str
) -> None:
    chat = clients(kind, "scripted", base_url, request_timeout=10)
    with pytest.raises(SystemicProviderError) as caught:
        await chat.chat([{"role": "user", "content": "hi"}])
    assert str(caught.value).startswith(f"Cannot connect to {base_url} for model 'openai/scripted'")


def test_messages_never_carry_the_key() -> None:
    site = CallSite("openai/m", "http://h/v1", KEY)
    error = to_provider_error(Failure("http", 401, f"Incorrect API key provided: {KEY}"), site)
    assert KEY not in str(error) and "***" in str(error)


def test_provider_not_provided_is_systemic() -> None:
    site = CallSite("foo", "provider 'unknown'")
    error = to_provider_error(Failure("no_provider", 400, "LLM Provider NOT provided."), site)
    assert isinstance(error, SystemicProviderError)


async def test_litellm_budget_error_is_systemic() -> None:
    from litellm import BudgetExceededError  # type: ignore[attr-defined]

    from rollout_operator.runtime.models import failure_from_exception

    failure = failure_from_exception(BudgetExceededError(current_cost=2.0, max_budget=1.0))
    assert failure.kind == "budget"
    assert isinstance(to_provider_error(failure, CallSite("m", "e")), SystemicProviderError)


# --- preflight ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", CLIENTS)
async def test_preflight(
    scripted_model: ScriptedModelServer, clients: Callable[..., ChatModel], kind: str
) -> None:
    ok = unique()
    await preflight(clients(kind, ok, scripted_model.base_url))
    assert sent(scripted_model, ok) == [
        {"model": ok, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    ]
    await preflight(clients(kind, unique("status-429"), scripted_model.base_url))
    await preflight(clients(kind, unique("status-500"), scripted_model.base_url))
    with pytest.raises(SystemicProviderError, match="HTTP 401"):
        await preflight(clients(kind, unique("status-401"), scripted_model.base_url))
    with pytest.raises(SystemicProviderError, match="Cannot connect"):
        await preflight(clients(kind, "scripted", "http://127.0.0.1:1/v1"))


def test_prompt_token_ids_from_vllm_replies() -> None:
    from rollout_operator.runtime.models.replies import result_from_reply

    message = {"role": "assistant", "content": "#### 4"}
    beside = result_from_reply({"prompt_token_ids": [1, 2, 3], "choices": [
        {"message": message, "finish_reason": "stop", "token_ids": [7, 8]}]})
    assert (beside.prompt_token_ids, beside.token_ids) == ([1, 2, 3], [7, 8])
    on_choice = result_from_reply({"choices": [
        {"message": message, "finish_reason": "stop", "prompt_token_ids": [4, 5]}]})
    assert on_choice.prompt_token_ids == [4, 5]
    assert result_from_reply({"choices": [{"message": message}]}).prompt_token_ids is None
