"""Token capture: the request fields vLLM and SGLang answer, the reply shapes they answer with,
the client refusing what cannot work, and the preflight catching an endpoint that ignores it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from rollout_operator.api.spec import ModelSpec
from rollout_operator.runtime.agent_loop import AgentConfig, run_agent_loop
from rollout_operator.runtime.interfaces import ToolOutput
from rollout_operator.runtime.models import (
    OpenAIHttpChat,
    TokenCaptureError,
    make_chat_model,
    preflight,
)
from rollout_operator.runtime.models.replies import result_from_reply
from tests.support.scripted_model import (
    IM_END,
    ScriptedModelServer,
    chat_prompt_ids,
    reply_ids,
)

MESSAGE = {"role": "assistant", "content": "#### 4"}
QUESTION = [{"role": "user", "content": "What is 2 * 2?"}]


def unique(flags: str = "") -> str:
    return f"scripted:{flags + ':' if flags else ''}tok-{uuid.uuid4().hex[:8]}"


def sent(server: ScriptedModelServer, model: str) -> list[dict[str, Any]]:
    return [body for body in server.requests if body.get("model") == model]


# --- reply shapes -------------------------------------------------------------------------------

def test_vllm_reply_prompt_ids_beside_the_choices_and_openai_logprobs() -> None:
    result = result_from_reply({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "prompt_token_ids": [151644, 872, 198],
        "choices": [{"index": 0, "message": MESSAGE, "finish_reason": "stop",
                     "stop_reason": None, "token_ids": [820, 220, 19, 151645],
                     "logprobs": {"content": [
                         {"token": "####", "logprob": -0.01, "bytes": [35], "top_logprobs": []},
                         {"token": " ", "logprob": -0.5, "bytes": [32], "top_logprobs": []},
                         {"token": "4", "logprob": -1.25, "bytes": [52], "top_logprobs": []},
                         {"token": "", "logprob": 0.0, "bytes": [], "top_logprobs": []}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    assert result.prompt_token_ids == [151644, 872, 198]
    assert result.token_ids == [820, 220, 19, 151645]
    assert result.logprobs == [-0.01, -0.5, -1.25, 0.0]
    assert result.message == MESSAGE


def test_sglang_reply_both_id_lists_on_the_choice() -> None:
    result = result_from_reply({
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": MESSAGE, "finish_reason": "stop",
                     "prompt_token_ids": [1, 2, 3], "token_ids": [7, 8],
                     "logprobs": {"content": [{"token": "a", "logprob": -0.5},
                                              {"token": "b", "logprob": -0.75}]}}]})
    assert (result.prompt_token_ids, result.token_ids, result.logprobs) == (
        [1, 2, 3], [7, 8], [-0.5, -0.75])


def test_sglang_meta_info_reply_ids_and_logprobs() -> None:
    tuples = result_from_reply({"choices": [{
        "message": MESSAGE, "finish_reason": "stop", "prompt_token_ids": [1, 2],
        "meta_info": {"id": "r", "output_ids": [7, 8],
                      "output_token_logprobs": [[-0.5, 7, "a"], [-0.25, 8, "b"]]}}]})
    assert (tuples.prompt_token_ids, tuples.token_ids, tuples.logprobs) == (
        [1, 2], [7, 8], [-0.5, -0.25])
    dicts = result_from_reply({"choices": [{
        "message": MESSAGE, "meta_info": {"output_token_logprobs": [
            {"logprob": -1.0, "token_id": 9, "token": "c"}]}}]})
    assert (dicts.token_ids, dicts.logprobs) == ([9], [-1.0])
    ids_only = result_from_reply({"choices": [{
        "message": MESSAGE, "meta_info": {"output_ids": [5, 6]}}]})
    assert (ids_only.token_ids, ids_only.logprobs) == ([5, 6], None)
    # ids on the choice win over meta_info's
    both = result_from_reply({"choices": [{
        "message": MESSAGE, "token_ids": [1], "meta_info": {"output_ids": [2]}}]})
    assert both.token_ids == [1]
    plain = result_from_reply({"choices": [{"message": MESSAGE, "meta_info": {"id": "r"}}]})
    assert (plain.token_ids, plain.logprobs, plain.prompt_token_ids) == (None, None, None)


# --- what the client asks -----------------------------------------------------------------------

async def test_capture_asks_in_vllm_words_and_reads_its_reply(
        scripted_model: ScriptedModelServer) -> None:
    model = unique()
    chat = make_chat_model(model, base_url=scripted_model.base_url, capture_tokens=True)
    try:
        result = await chat.chat(QUESTION, max_tokens=64)
    finally:
        await chat.aclose()
    (body,) = sent(scripted_model, model)
    assert body["return_token_ids"] is True and body["logprobs"] is True
    assert "return_meta_info" not in body and body["max_tokens"] == 64
    assert result.prompt_token_ids == chat_prompt_ids(QUESTION)
    assert result.token_ids == reply_ids(result.message) and result.token_ids[-1] == IM_END
    assert result.logprobs is not None and len(result.logprobs) == len(result.token_ids)
    assert result.usage.prompt_tokens == len(result.prompt_token_ids)


@pytest.mark.parametrize("flag", ["sglang", "sglang-meta"])
async def test_capture_of_a_managed_sglang_server(
        scripted_model: ScriptedModelServer, flag: str) -> None:
    model = unique(flag)
    chat = make_chat_model(model, base_url=scripted_model.base_url, capture_tokens=True,
                           engine="sglang")
    try:
        result = await chat.chat(QUESTION)
    finally:
        await chat.aclose()
    (body,) = sent(scripted_model, model)
    assert {k: body[k] for k in ("return_token_ids", "logprobs", "return_prompt_token_ids",
                                 "return_meta_info")} == dict.fromkeys(
        ("return_token_ids", "logprobs", "return_prompt_token_ids", "return_meta_info"), True)
    assert result.prompt_token_ids == chat_prompt_ids(QUESTION)
    assert result.token_ids == reply_ids(result.message)
    assert result.logprobs is not None and len(result.logprobs) == len(result.token_ids)


async def test_without_capture_nothing_is_asked(scripted_model: ScriptedModelServer) -> None:
    model = unique()
    chat = make_chat_model(model, base_url=scripted_model.base_url)
    try:
        result = await chat.chat(QUESTION)
    finally:
        await chat.aclose()
    (body,) = sent(scripted_model, model)
    assert set(body) == {"model", "messages"}
    assert (result.token_ids, result.prompt_token_ids, result.logprobs) == (None, None, None)


class _Calculator:
    async def call(self, name: str, arguments: dict[str, Any],
                   timeout: float | None) -> ToolOutput:  # noqa: ASYNC109
        return ToolOutput(content=str(arguments["first_val"] * arguments["second_val"]))


async def test_every_turn_of_a_loop_gets_its_prompt_and_reply_ids(
        scripted_model: ScriptedModelServer) -> None:
    chat = make_chat_model(unique(), base_url=scripted_model.base_url, capture_tokens=True)
    tools = [{"type": "function", "function": {"name": "multiply", "parameters": {}}}]
    try:
        loop = await run_agent_loop([{"role": "system", "content": "calc"}, *QUESTION], chat,
                                    tools, _Calculator(), AgentConfig(max_turns=4))
    finally:
        await chat.aclose()
    assert loop.completed and loop.num_llm_calls == 2
    assert [t.message_index for t in loop.turns] == [2, 4]
    first, second = loop.turns
    assert first.prompt_token_ids == chat_prompt_ids(loop.messages[:2], tools)
    assert second.prompt_token_ids == chat_prompt_ids(loop.messages[:4], tools)
    assert first.token_ids == reply_ids(loop.messages[2])
    assert second.token_ids == reply_ids(loop.messages[4])
    # an append-only template: the second prompt starts with the first prompt and reply
    assert first.prompt_token_ids is not None and first.token_ids is not None
    head = first.prompt_token_ids + first.token_ids
    assert second.prompt_token_ids[:len(head)] == head
    assert all(t.logprobs is not None and len(t.logprobs) == len(t.token_ids or [])
               for t in loop.turns)


# --- refusing what cannot work ------------------------------------------------------------------

def test_capture_through_litellm_is_refused() -> None:
    with pytest.raises(TokenCaptureError, match="provider 'anthropic' without a base URL"):
        make_chat_model("anthropic/claude-sonnet-4-5", capture_tokens=True)
    with pytest.raises(TokenCaptureError, match=r"spec\.model\.baseURL"):
        make_chat_model("openai/gpt-4o-mini", base_url="http://127.0.0.1:1/v1", lean=False,
                        capture_tokens=True)
    assert isinstance(make_chat_model("openai/m", base_url="http://127.0.0.1:1/v1",
                                      capture_tokens=True), OpenAIHttpChat)


async def test_preflight_fails_when_the_endpoint_ignores_the_fields(
        scripted_model: ScriptedModelServer) -> None:
    # `sglang-meta` answers only SGLang 0.5.13's spelling: asked in vLLM's, it returns nothing
    chat = make_chat_model(unique("sglang-meta"), base_url=scripted_model.base_url,
                           capture_tokens=True)
    try:
        with pytest.raises(TokenCaptureError, match=(
                r"captureTokens is set, but http://127\.0\.0\.1:\d+/v1 answered .* without "
                r"prompt_token_ids and token_ids")):
            await preflight(chat, require_tokens=True)
        await preflight(chat)  # without the requirement the reply is fine
    finally:
        await chat.aclose()
    chat = make_chat_model(unique(), base_url=scripted_model.base_url, capture_tokens=True)
    try:
        await preflight(chat, require_tokens=True)
    finally:
        await chat.aclose()


def test_spec_capture_needs_an_openai_compatible_endpoint() -> None:
    with pytest.raises(ValidationError, match=r"captureTokens needs an OpenAI-compatible "
                       r"endpoint .* 'openai/gpt-4o-mini' has no baseURL"):
        ModelSpec.model_validate({"name": "openai/gpt-4o-mini", "captureTokens": True})
    assert ModelSpec.model_validate({"name": "openai/m", "baseURL": "http://vllm:8000/v1",
                                     "captureTokens": True}).capture_tokens
    assert ModelSpec.model_validate({"name": "hosted_vllm/m", "captureTokens": True})
    assert ModelSpec.model_validate({"serve": {"model": "Qwen/Qwen3-0.6B", "engine": "sglang"},
                                     "captureTokens": True}).capture_tokens
    assert not ModelSpec.model_validate({"name": "openai/gpt-4o-mini"}).capture_tokens


def test_the_run_config_carries_the_option_and_the_managed_engine() -> None:
    from rollout_operator.api.spec import RolloutRunSpec
    from rollout_operator.runtime.run_config import RunConfig

    def config(model: dict[str, Any]) -> RunConfig:
        spec = RolloutRunSpec.model_validate({
            "repo": {"url": "https://git.example.com/team/calculator.git"},
            "dataset": {"path": "data.jsonl"}, "model": model,
            "output": {"url": "s3://bucket/runs"}})
        sent = RunConfig(spec=spec, namespace="ns", name="r", uid="u-1",
                         run_prefix="s3://bucket/runs/ns/r-u").to_env_value()
        return RunConfig.from_json(sent)

    sglang = config({"serve": {"engine": "sglang", "model": "Qwen/Qwen3-0.6B"},
                     "captureTokens": True})
    assert (sglang.capture_tokens, sglang.engine) == (True, "sglang")
    external = config({"name": "openai/m", "baseURL": "http://vllm:8000/v1"})
    assert (external.capture_tokens, external.engine) == (False, None)
    # the capture fields go with the client, not with the sampling parameters
    assert "logprobs" not in config({"name": "openai/m", "baseURL": "http://vllm:8000/v1",
                                     "captureTokens": True}).completion_params()
