"""The scripted model's lean HTTP server answers as its aiohttp server does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rollout_operator.runtime.errors import ProviderError
from rollout_operator.runtime.models.http_chat import OpenAIHttpChat
from tests.support.loopback import site_port
from tests.support.scripted_model import ScriptedModel, serve_lean

TOOLS = [{"type": "function", "function": {"name": "multiply", "parameters": {}}}]


def _question(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "calculator"}, {"role": "user", "content": text}]


@pytest.fixture
async def lean_url() -> AsyncIterator[str]:
    server = await serve_lean(ScriptedModel(latency_ms=20))
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def aiohttp_url() -> AsyncIterator[str]:
    runner = web.AppRunner(ScriptedModel(latency_ms=20).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site_port(site)}"
    finally:
        await runner.cleanup()


def _comparable(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply without the parts that differ per request (ids, creation time)."""
    reply = json.loads(json.dumps(reply))
    reply.pop("id"), reply.pop("created")
    for choice in reply["choices"]:
        for call in choice["message"].get("tool_calls") or ():
            call.pop("id")
    return reply


@pytest.mark.parametrize(
    "body",
    [
        {"model": "scripted", "messages": _question("What is 6 * 7?"), "tools": TOOLS},
        {"model": "scripted", "messages": [
            *_question("What is 6 * 7?"),
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "42.0", "tool_call_id": "c"},
        ]},
        {"model": "scripted:logprobs:bad-tools", "messages": _question("What is 2 * 3?")},
        {"model": "scripted:status-429", "messages": _question("hi")},
        {"model": "scripted:echo-auth", "messages": _question("hi")},
    ],
)
async def test_same_answers_as_the_aiohttp_server(
    lean_url: str, aiohttp_url: str, body: dict[str, Any]
) -> None:
    answers = []
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http:
        for base in (lean_url, aiohttp_url):
            async with http.post(f"{base}/v1/chat/completions", json=body) as response:
                answers.append((response.status, response.content_type, await response.json()))
    (lean_status, lean_type, lean), (status, content_type, reply) = answers
    assert (lean_status, lean_type) == (status, content_type)
    if status == 200:
        lean, reply = _comparable(lean), _comparable(reply)
    assert lean == reply


async def test_the_lean_client_runs_a_conversation(lean_url: str) -> None:
    chat = OpenAIHttpChat(f"{lean_url}/v1", "openai/scripted", max_connections=1)
    try:
        first = await chat.chat(_question("What is 6 * 7?"), TOOLS)
        assert first.tool_calls and first.tool_calls[0]["function"]["name"] == "multiply"
        history = [*_question("What is 6 * 7?"), first.message,
                   {"role": "tool", "content": "42.0", "tool_call_id": first.tool_calls[0]["id"]}]
        second = await chat.chat(history, TOOLS)
        assert second.message["content"] == "The result is 42.0\n#### 42.0"
    finally:
        await chat.aclose()
    limited = OpenAIHttpChat(f"{lean_url}/v1", "openai/scripted:status-429")
    try:
        with pytest.raises(ProviderError, match="429"):
            await limited.chat(_question("hi"))
    finally:
        await limited.aclose()


async def test_keep_alive_answers_in_order_on_one_connection(lean_url: str) -> None:
    port = int(lean_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for question in ("What is 2 * 3?", "What is 4 * 5?"):  # both sent before any answer
            payload = json.dumps({"model": "scripted", "messages": _question(question)}).encode()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        await writer.drain()
        arguments = []
        for _ in range(2):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            assert head.startswith("HTTP/1.1 200 OK\r\n")
            length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
            reply = json.loads(await reader.readexactly(length))
            call = reply["choices"][0]["message"]["tool_calls"][0]
            arguments.append(json.loads(call["function"]["arguments"]))
    finally:
        writer.close()
    assert arguments == [{"first_val": 2.0, "second_val": 3.0},
                         {"first_val": 4.0, "second_val": 5.0}]


async def test_requests_wait_their_latency_and_overlap(lean_url: str) -> None:
    body = {"model": "scripted:sleep-200", "messages": _question("What is 1 * 1?")}

    async def one(http: aiohttp.ClientSession) -> float:
        start = asyncio.get_running_loop().time()
        async with http.post(f"{lean_url}/chat/completions", json=body) as response:
            assert response.status == 200
            await response.read()
        return asyncio.get_running_loop().time() - start

    async with aiohttp.ClientSession() as http:
        start = asyncio.get_running_loop().time()
        waits = await asyncio.gather(*(one(http) for _ in range(20)))
        total = asyncio.get_running_loop().time() - start
    assert min(waits) >= 0.22  # 20 ms of latency + 200 ms of `sleep`
    assert total < sum(waits)  # answered side by side, not one after another


async def test_drop_closes_the_connection_mid_body(lean_url: str) -> None:
    body = {"model": "scripted:drop", "messages": _question("hi")}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(f"{lean_url}/v1/chat/completions", json=body) as response:
                assert response.status == 200
                await response.read()


@pytest.mark.parametrize(
    ("method", "path", "data", "status"),
    [
        ("GET", "/v1/models", None, 200),
        ("POST", "/v1/other", b"{}", 404),
        ("POST", "/v1/chat/completions", b"not json", 400),
        ("POST", "/v1/chat/completions", b"[1, 2]", 400),
    ],
)
async def test_other_requests(
    lean_url: str, method: str, path: str, data: bytes | None, status: int
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{lean_url}{path}", data=data) as response,
    ):
        assert response.status == status
        body = await response.json()
    if status == 200:
        assert body == {"object": "list", "data": [{"id": "scripted"}]}
    else:
        assert body["error"]["message"]


async def test_a_chunked_body_is_refused(lean_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "scripted", '
        yield b'"messages": []}'

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{lean_url}/v1/chat/completions", data=chunks()) as response,
    ):
        assert response.status == 411
