"""Tool providers: every provider turns every kind of tool result and failure into the same
tool message, against real FastMCP servers in memory and over streamable HTTP in a subprocess."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rollout_operator.runtime.interfaces import ToolOutput, ToolProvider
from rollout_operator.runtime.tools import (
    FastMCPClientTools,
    HttpTools,
    InProcessTools,
    extract_value,
    make_tool_provider,
    serialize_value,
    truncate,
)
from rollout_operator.runtime.tools.sse import SseDecoder
from tests.fixtures.tool_table_server import build_server
from tests.support.loopback import free_port
from tests.support.tool_table import ToolTableProcess

MAX_CHARS = 1000


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolTableProcess]:
    server = ToolTableProcess(tmp_path_factory.mktemp("tool_server") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


ProviderFactory = Callable[[ToolTableProcess, int | None], ToolProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "in_process": lambda srv, n: InProcessTools(build_server(), max_result_chars=n),
    "fastmcp_client_memory": lambda srv, n: FastMCPClientTools(build_server(), max_result_chars=n),
    "fastmcp_client_http": lambda srv, n: FastMCPClientTools(srv.url, max_result_chars=n),
    "http_sse": lambda srv, n: HttpTools(srv.url, max_result_chars=n),
    "http_json": lambda srv, n: HttpTools(srv.json_url, max_result_chars=n),
}


@pytest.fixture(params=list(PROVIDERS))
async def provider(
    request: pytest.FixtureRequest, http_server: ToolTableProcess
) -> AsyncIterator[ToolProvider]:
    tools = PROVIDERS[request.param](http_server, MAX_CHARS)
    try:
        yield tools
    finally:
        await tools.aclose()


@dataclass(frozen=True)
class Case:
    tool: str
    arguments: dict[str, Any]
    content: str | None = None  # the exact content, when it is fully determined
    error_kind: str | None = None
    mentions: tuple[str, ...] = ()  # what an error message must say
    timeout: float | None = 10.0


CASES: dict[str, Case] = {
    "float": Case("multiply", {"first_val": 12, "second_val": 8}, content="96.0"),
    "dict": Case(
        "describe_point",
        {"x": 3, "y": 4},
        content=json.dumps({"x": 3, "y": 4, "label": "(3, 4)", "origin": False}),
    ),
    "bool": Case("is_even", {"n": 4}, content="true"),
    "string": Case("greet", {"name": "Ada"}, content="Hello, Ada!"),
    "list": Case("squares", {"n": 3}, content="[1, 4, 9]"),
    "raising_tool": Case(
        "fail", {"reason": "disk full"}, error_kind="tool", mentions=("the tool failed: disk full",)
    ),
    "unknown_tool": Case("divide", {"a": 1}, error_kind="tool", mentions=("divide",)),
    "invalid_arguments": Case(
        "multiply",
        {"first_val": "twelve", "second_val": 8},
        error_kind="tool",
        mentions=("first_val", "valid number"),
    ),
    "timeout": Case(
        "hang",
        {},
        content="Error: Tool 'hang' timed out after 0.2s",
        error_kind="timeout",
        timeout=0.2,
    ),
    "oversized": Case(
        "repeat",
        {"text": "ab", "times": 3000},
        content="ab" * (MAX_CHARS // 2) + f"\n…[truncated {6000 - MAX_CHARS} chars]",
    ),
}


def check(case: Case, output: ToolOutput) -> None:
    if case.content is not None:
        assert output.content == case.content
    assert output.error_kind == case.error_kind
    assert output.is_error is (case.error_kind is not None)
    if case.error_kind is not None:
        assert output.content.startswith("Error: ")
    for text in case.mentions:
        assert text in output.content


@pytest.mark.parametrize("case_id", list(CASES))
async def test_each_provider_renders_the_case(provider: ToolProvider, case_id: str) -> None:
    case = CASES[case_id]
    async with provider.session() as session:
        output = await session.call(case.tool, case.arguments, case.timeout)
    check(case, output)


@pytest.mark.parametrize("case_id", list(CASES))
async def test_all_providers_give_identical_outputs(
    http_server: ToolTableProcess, case_id: str
) -> None:
    case = CASES[case_id]
    outputs: dict[str, ToolOutput] = {}
    for name, factory in PROVIDERS.items():
        tools = factory(http_server, MAX_CHARS)
        try:
            async with tools.session() as session:
                outputs[name] = await session.call(case.tool, case.arguments, case.timeout)
        finally:
            await tools.aclose()
    reference = outputs["in_process"]
    check(case, reference)
    assert outputs == dict.fromkeys(PROVIDERS, reference)


async def test_a_session_goes_on_after_a_timeout_and_a_failure(provider: ToolProvider) -> None:
    async with provider.session() as session:
        timed_out = await session.call("hang", {"seconds": 30}, 0.2)
        failed = await session.call("fail", {"reason": "x"}, None)
        after = await session.call("multiply", {"first_val": 1.5, "second_val": 2}, None)
    assert timed_out.error_kind == "timeout"
    assert failed.error_kind == "tool"
    assert after == ToolOutput("3.0")


async def test_list_tools_is_the_same_validated_schema_everywhere(
    http_server: ToolTableProcess,
) -> None:
    listings = {}
    for name, factory in PROVIDERS.items():
        tools = factory(http_server, None)
        try:
            listings[name] = await tools.list_tools()
        finally:
            await tools.aclose()
    reference = listings["in_process"]
    assert all(listing == reference for listing in listings.values())
    by_name = {tool["function"]["name"]: tool for tool in reference}
    assert set(by_name) == {
        "multiply", "describe_point", "is_even", "greet", "squares", "nothing", "fail", "hang",
        "repeat",
    }
    assert by_name["multiply"] == {
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


async def test_http_sessions_get_their_own_ids_and_end_them(http_server: ToolTableProcess) -> None:
    tools = HttpTools(http_server.url)
    try:
        async with tools.session() as first, tools.session() as second:
            assert first.session_id is None  # nothing is opened before the first call
            assert (await first.call("is_even", {"n": 2}, None)).content == "true"
            assert (await second.call("is_even", {"n": 3}, None)).content == "false"
            assert first.session_id and second.session_id
            assert first.session_id != second.session_id
            assert first.protocol_version == second.protocol_version == "2025-11-25"
            ended = first.session_id
        # The session was deleted on exit: the server no longer knows its id.
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                http_server.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
                headers={
                    "Accept": "application/json, text/event-stream",
                    "mcp-session-id": ended,
                    "mcp-protocol-version": "2025-11-25",
                },
            )
            assert response.status == 404
    finally:
        await tools.aclose()


@pytest.mark.slow
async def test_http_session_reports_a_dead_server_as_sandbox_error_and_reopens_after_restart(
    tmp_path: Path,
) -> None:
    server = ToolTableProcess(tmp_path / "server.log")
    server.start()
    tools = HttpTools(server.url)
    try:
        async with tools.session() as session:
            assert (await session.call("greet", {"name": "A"}, 5)).content == "Hello, A!"
            server.stop()
            down = await session.call("greet", {"name": "B"}, 5)
            assert down.is_error and down.error_kind == "sandbox"
            assert down.content.startswith("Error: Tool server unreachable")
            before = session.session_id
            await asyncio.to_thread(server.start)
            # The restarted server no longer knows the session: the call, which did not run,
            # goes again in a new one.
            again = await session.call("greet", {"name": "C"}, 5)
            assert again.content == "Hello, C!" and not again.is_error
            assert session.session_id is not None and session.session_id != before
        async with tools.session() as fresh:
            assert (await fresh.call("greet", {"name": "D"}, 5)).content == "Hello, D!"
    finally:
        await tools.aclose()
        server.stop()


@pytest.mark.parametrize("lean", [True, False])
async def test_unreachable_server_is_a_sandbox_error_not_an_exception(lean: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    tools = make_tool_provider(url, lean=lean)
    try:
        async with tools.session() as session:
            output = await session.call("multiply", {"first_val": 1, "second_val": 2}, 5)
        assert output.is_error and output.error_kind == "sandbox"
        assert output.content.startswith("Error: ")
        with pytest.raises(ConnectionError, match=r"Cannot list tools from http://127\.0\.0\.1"):
            await tools.list_tools()
    finally:
        await tools.aclose()


# A tool server that is not FastMCP: it reports an unknown tool as a JSON-RPC error (as the
# MCP specification allows), pings the client in the middle of a call, and fails a call with a
# 500. The lean client must read all of it the way the specification says.


@dataclass
class PlainServer:
    url: str
    received: list[dict[str, Any]]
    peers: set[Any]  # the client addresses requests came from: one per TCP connection


@pytest.fixture
async def plain_mcp_server() -> AsyncIterator[PlainServer]:
    received: list[dict[str, Any]] = []
    peers: set[Any] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            return web.Response(status=200)
        message = await request.json()
        received.append(message)
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        method = message.get("method")
        if method == "initialize":
            return web.json_response(
                {"jsonrpc": "2.0", "id": message["id"],
                 "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                            "serverInfo": {"name": "plain", "version": "1"}}},
                headers={"mcp-session-id": "plain-1"},
            )
        if "method" not in message or method.startswith("notifications/"):
            return web.Response(status=202)
        assert request.headers["mcp-session-id"] == "plain-1"
        assert request.headers["mcp-protocol-version"] == "2025-06-18"
        name = message["params"]["name"]
        if name == "crash":
            return web.json_response({"detail": "boom"}, status=500)
        if name == "nope":
            return web.json_response(
                {"jsonrpc": "2.0", "id": message["id"],
                 "error": {"code": -32602, "message": "Unknown tool: nope"}}
            )
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        ping = json.dumps({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})
        await stream.write(f"id: 1\ndata: \n\nevent: message\ndata: {ping}\n\n".encode())
        reply = {"jsonrpc": "2.0", "id": message["id"],
                 "result": {"content": [{"type": "text", "text": "line one"},
                                        {"type": "image", "data": "", "mimeType": "image/png"},
                                        {"type": "text", "text": "line two"}],
                            "isError": False}}
        body = f"event: message\r\ndata: {json.dumps(reply)}\r\n\r\n".encode()
        await stream.write(body[:17])
        await stream.write(body[17:])
        await asyncio.sleep(0.005)  # the stream ends a moment after the response
        await stream.write_eof()
        return stream

    app = web.Application()
    app.router.add_route("*", "/mcp", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield PlainServer(f"http://127.0.0.1:{port}/mcp", received, peers)
    finally:
        await runner.cleanup()


async def test_lean_client_follows_the_protocol_of_other_servers(
    plain_mcp_server: PlainServer,
) -> None:
    received = plain_mcp_server.received
    tools = HttpTools(plain_mcp_server.url)
    try:
        async with tools.session() as session:
            texts = [await session.call("echo", {}, 5) for _ in range(5)]
            unknown = await session.call("nope", {}, 5)
            crashed = await session.call("crash", {}, 5)
    finally:
        await tools.aclose()
    assert texts == [ToolOutput("line one\nline two")] * 5
    assert unknown == ToolOutput("Error: Unknown tool: nope", is_error=True, error_kind="tool")
    assert crashed.error_kind == "sandbox" and "HTTP 500" in crashed.content
    assert [m.get("method") for m in received[:2]] == ["initialize", "notifications/initialized"]
    pongs = [m for m in received if m.get("id") == "srv-1"]
    assert pongs == [{"jsonrpc": "2.0", "id": "srv-1", "result": {}}] * 5
    # Streams are read to their end, so the pool reuses its connections: one carries the calls,
    # a second the answers to the pings sent while a stream was still open.
    assert len(plain_mcp_server.peers) <= 2


async def test_make_tool_provider_picks_the_provider() -> None:
    server = build_server()
    assert isinstance(make_tool_provider(server), InProcessTools)
    assert isinstance(make_tool_provider(server, lean=False), FastMCPClientTools)
    lean_http = make_tool_provider("http://127.0.0.1:9/mcp", max_result_chars=5)
    assert isinstance(lean_http, HttpTools) and lean_http.max_result_chars == 5
    assert isinstance(make_tool_provider("http://127.0.0.1:9/mcp", lean=False), FastMCPClientTools)
    with pytest.raises(ValueError, match="http"):
        make_tool_provider("tools:8000/mcp")
    with pytest.raises(ValueError, match="max_result_chars"):
        InProcessTools(server, max_result_chars=0)
    with pytest.raises(ValueError, match="http"):
        HttpTools("ftp://127.0.0.1/mcp")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (96.0, "96.0"),
        (3, "3"),
        (True, "true"),
        (False, "false"),
        ("as is", "as is"),
        ({"a": [1, 2]}, '{"a": [1, 2]}'),
        ([1, "b"], '[1, "b"]'),
        (None, "null"),
    ],
)
def test_serialize_value(value: Any, text: str) -> None:
    assert serialize_value(value) == text


@pytest.mark.parametrize(
    ("structured", "texts", "value"),
    [
        ({"result": 5}, ["5"], 5),
        ({"result": 1, "other": 2}, [], {"result": 1, "other": 2}),
        ({"a": 1}, ["ignored"], {"a": 1}),
        (None, ["a", "b"], "a\nb"),
        (None, [], ""),
    ],
)
def test_extract_value(structured: Any, texts: list[str], value: Any) -> None:
    assert extract_value(structured, texts) == value


def test_truncate() -> None:
    assert truncate("abcdef", None) == "abcdef"
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdef", 4) == "abcd\n…[truncated 2 chars]"


def test_sse_decoder_handles_split_chunks_and_line_endings() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b": comment\nid: 7\ndata:\n\nevent: message\nda") == []
    assert decoder.feed(b"ta: {\"a\":\r\ndata: 1}\r\n") == []
    assert decoder.feed(b"\r\ndata:x\n\n") == ['{"a":\n1}', "x"]
