"""The model gateway against the scripted model (the real OpenAI protocol on loopback)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from rollout_operator.gateway.server import Gateway
from rollout_operator.gateway.upstream import LitellmUpstream, OpenAICompatibleUpstream
from tests.support.scripted_model import ScriptedModelServer

TOKEN = "run-token-0123456789"
PROVIDER_KEY = "sk-provider-secret-abcdef123456"
PROMPT = [{"role": "user", "content": "What is 6 * 7?"}]


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


async def _gateway(model: ScriptedModelServer, name: str = "scripted") -> Gateway:
    upstream = OpenAICompatibleUpstream(model.base_url, f"openai/{name}", PROVIDER_KEY)
    gateway = Gateway(upstream, TOKEN, provider_key=PROVIDER_KEY, heartbeat_s=0.05)
    await gateway.start()
    gateway.ledger.open("r1")
    return gateway


@pytest.fixture
async def gateway(model: ScriptedModelServer) -> AsyncIterator[Gateway]:
    gateway = await _gateway(model)
    yield gateway
    await gateway.close()


async def _post(gateway: Gateway, body: dict[str, Any], *, rollout: str = "r1",
                token: str = TOKEN) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{gateway.rollout_url(rollout)}/chat/completions", json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as reply:
        text = await reply.text()
        try:
            return reply.status, json.loads(text)
        except ValueError:
            return reply.status, text


async def test_a_call_is_forwarded_with_the_configured_model(
    gateway: Gateway, model: ScriptedModelServer
) -> None:
    before = len(model.requests)
    status, reply = await _post(gateway, {"model": "anything-the-agent-says", "messages": PROMPT,
                                          "tools": [{"type": "function", "function": {
                                              "name": "multiply", "parameters": {}}}]})
    assert status == 200, reply
    assert reply["model"] == "anything-the-agent-says"
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"first_val": 6.0, "second_val": 7.0}
    sent = model.requests[before:]
    assert [request["model"] for request in sent] == ["scripted"]
    assert sent[0]["tools"][0]["function"]["name"] == "multiply"
    account = gateway.ledger.get("r1")
    assert account is not None and len(account.calls) == 1
    assert account.total_tokens == reply["usage"]["total_tokens"] > 0


async def test_usage_adds_up_per_rollout(gateway: Gateway) -> None:
    gateway.ledger.open("r2")
    totals = []
    for rollout in ("r1", "r2", "r1"):
        status, reply = await _post(gateway, {"messages": PROMPT}, rollout=rollout)
        assert status == 200
        totals.append((rollout, reply["usage"]["total_tokens"]))
    r1 = gateway.ledger.close("r1")
    r2 = gateway.ledger.close("r2")
    assert r1 is not None and r2 is not None
    assert r1.total_tokens == sum(t for r, t in totals if r == "r1")
    assert r2.total_tokens == sum(t for r, t in totals if r == "r2")
    assert len(r1.calls) == 2 and len(r2.calls) == 1


async def test_a_wrong_bearer_gets_401(gateway: Gateway) -> None:
    status, reply = await _post(gateway, {"messages": PROMPT}, token="not-the-token")
    assert status == 401
    assert reply["error"]["code"] == "unauthorized"


async def test_an_unknown_rollout_gets_422(gateway: Gateway) -> None:
    status, _ = await _post(gateway, {"messages": PROMPT}, rollout="never-opened")
    assert status == 422
    status, _ = await _post(gateway, {"messages": PROMPT}, rollout="..")
    assert status in (404, 422)


@pytest.mark.parametrize("field", ["base_url", "api_base", "api_key", "extra_headers",
                                   "litellm_logging", "aws_region_name"])
async def test_control_fields_get_400(gateway: Gateway, field: str) -> None:
    status, reply = await _post(gateway, {"messages": PROMPT, field: "x"})
    assert status == 400
    assert reply["error"]["message"] == (
        f"Request fields cannot override gateway configuration: {field}")


async def test_n_other_than_1_gets_400(gateway: Gateway) -> None:
    status, reply = await _post(gateway, {"messages": PROMPT, "n": 2})
    assert (status, reply["error"]["message"]) == (400, "n must be 1")


async def test_stream_gets_one_chunk_then_done(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        f"{gateway.rollout_url('r1')}/chat/completions",
        json={"model": "m", "messages": PROMPT, "stream": True,
              "stream_options": {"include_usage": True}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/event-stream"
        text = await reply.text()
    events = [block for block in text.split("\n\n") if block]
    assert events[0] == ": keepalive"
    data = [block.removeprefix("data: ") for block in events if block.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "m"
    delta = chunk["choices"][0]["delta"]
    assert delta["role"] == "assistant"
    assert delta["tool_calls"][0]["index"] == 0
    assert delta["tool_calls"][0]["function"]["name"] == "multiply"
    assert chunk["usage"]["total_tokens"] > 0


async def test_the_openai_client_reads_the_stream(gateway: Gateway) -> None:
    openai = pytest.importorskip("openai")
    client = openai.AsyncOpenAI(base_url=gateway.rollout_url("r1"), api_key=TOKEN)
    stream = await client.chat.completions.create(
        model="whatever", messages=[{"role": "user", "content": "hello"}], stream=True)
    contents = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    await client.close()
    assert contents == ["I cannot tell.\n#### 0"]


async def test_token_ids_and_logprobs_are_captured_not_passed_on(
    model: ScriptedModelServer,
) -> None:
    gateway = await _gateway(model, "scripted:logprobs")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT})
        assert status == 200
        assert "token_ids" not in reply["choices"][0]
        account = gateway.ledger.get("r1")
        assert account is not None
        call = account.calls[0]
        completion = reply["usage"]["completion_tokens"]
        assert call.completion_token_ids == list(range(completion))
        assert call.logprobs == [-0.5] * completion
    finally:
        await gateway.close()


async def test_openai_logprobs_are_captured_and_kept_for_the_client(
    model: ScriptedModelServer,
) -> None:
    gateway = await _gateway(model, "scripted:openai-logprobs")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT, "logprobs": True})
        assert status == 200
        content = reply["choices"][0]["logprobs"]["content"]
        account = gateway.ledger.get("r1")
        assert account is not None
        assert account.calls[0].logprobs == [item["logprob"] for item in content]
    finally:
        await gateway.close()


async def test_upstream_4xx_passes_through_without_the_key(
    model: ScriptedModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await _gateway(model, "scripted:echo-auth:status-401")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT})
        assert status == 401
        assert PROVIDER_KEY not in json.dumps(reply)
    finally:
        await gateway.close()
    assert PROVIDER_KEY not in caplog.text


async def test_the_provider_key_goes_upstream_only(model: ScriptedModelServer) -> None:
    gateway = await _gateway(model, "scripted:echo-auth")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT})
        assert status == 200
        # the scripted model answers with the Authorization it received: the key reached it,
        # and the gateway masked it in the answer to the agent
        assert reply["choices"][0]["message"]["content"] == "Bearer ***"
    finally:
        await gateway.close()


async def test_upstream_5xx_and_silence_become_502(model: ScriptedModelServer) -> None:
    gateway = await _gateway(model, "scripted:status-500")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT})
        assert status == 502
        assert reply["error"]["type"] == "bad_gateway"
    finally:
        await gateway.close()
    upstream = OpenAICompatibleUpstream("http://127.0.0.1:9/v1", "openai/scripted", PROVIDER_KEY)
    gateway = Gateway(upstream, TOKEN, provider_key=PROVIDER_KEY)
    await gateway.start()
    gateway.ledger.open("r1")
    try:
        status, reply = await _post(gateway, {"messages": PROMPT})
        assert status == 502 and PROVIDER_KEY not in json.dumps(reply)
    finally:
        await gateway.close()


async def test_the_driver_opens_and_closes_rollouts(model: ScriptedModelServer) -> None:
    upstream = OpenAICompatibleUpstream(model.base_url, "openai/scripted", PROVIDER_KEY)
    gateway = Gateway(upstream, TOKEN, provider_key=PROVIDER_KEY, admin_token="admin-0123456789")
    await gateway.start()
    url = f"{gateway.url}/v1/rollouts/abc123"
    admin = {"Authorization": "Bearer admin-0123456789"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(url, headers={"Authorization": f"Bearer {TOKEN}"}) as reply:
                assert reply.status == 401  # the rollouts' bearer is not the driver's
            async with session.put(url, headers=admin) as reply:
                assert reply.status == 200
            status, answer = await _post(gateway, {"messages": PROMPT}, rollout="abc123")
            assert status == 200
            async with session.delete(url, headers=admin) as reply:
                assert reply.status == 200
                account = await reply.json()
            assert account["rollout_id"] == "abc123"
            assert [call["total_tokens"] for call in account["calls"]] == [
                answer["usage"]["total_tokens"]]
            status, _ = await _post(gateway, {"messages": PROMPT}, rollout="abc123")
            assert status == 422  # closed
    finally:
        await gateway.close()


async def test_a_slow_model_gets_heartbeats_before_the_chunk(model: ScriptedModelServer) -> None:
    gateway = await _gateway(model, "scripted:sleep-300")
    try:
        async with aiohttp.ClientSession() as session, session.post(
            f"{gateway.rollout_url('r1')}/chat/completions",
            json={"messages": PROMPT, "stream": True},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as reply:
            text = await reply.text()
    finally:
        await gateway.close()
    events = [block for block in text.split("\n\n") if block]
    first_data = next(i for i, block in enumerate(events) if block.startswith("data: "))
    assert first_data >= 2 and set(events[:first_data]) == {": keepalive"}
    assert events[first_data + 1:] == ["data: [DONE]"]


async def test_a_stream_whose_call_fails_carries_the_error(model: ScriptedModelServer) -> None:
    gateway = await _gateway(model, "scripted:status-503")
    try:
        async with aiohttp.ClientSession() as session, session.post(
            f"{gateway.rollout_url('r1')}/chat/completions",
            json={"messages": PROMPT, "stream": True},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as reply:
            text = await reply.text()
    finally:
        await gateway.close()
    data = [block.removeprefix("data: ") for block in text.split("\n\n")
            if block.startswith("data: ")]
    assert data[-1] == "[DONE]"
    assert json.loads(data[0])["error"]["type"] == "bad_gateway"


async def test_a_provider_model_goes_through_litellm(
    model: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", model.base_url)
    upstream = LitellmUpstream("hosted_vllm/scripted", PROVIDER_KEY)
    gateway = Gateway(upstream, TOKEN, provider_key=PROVIDER_KEY)
    await gateway.start()
    gateway.ledger.open("r1")
    before = len(model.requests)
    try:
        status, reply = await _post(gateway, {"model": "agent-side", "messages": PROMPT,
                                              "tools": [{"type": "function", "function": {
                                                  "name": "multiply", "parameters": {}}}]})
    finally:
        await gateway.close()
    assert status == 200, reply
    assert reply["model"] == "agent-side"
    assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "multiply"
    assert [request["model"] for request in model.requests[before:]] == ["scripted"]
    account = gateway.ledger.get("r1")
    assert account is not None and account.total_tokens == reply["usage"]["total_tokens"] > 0
