"""The lean MCP tool server (`runtime.mcp_http`): a standard MCP server that FastMCP's own
`Client` and our `HttpTools` use, answering exactly as FastMCP's server does, in this process and
as `python -m rollout_operator.runtime.tool_server` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import aiohttp
import fastmcp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import StaticTokenVerifier
from multidict import CIMultiDict
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from rollout_operator.runtime.interfaces import ToolOutput, ToolProvider
from rollout_operator.runtime.mcp_http import SESSIONS, McpSession, SessionTable, mcp_http_app
from rollout_operator.runtime.mcp_http.protocol import (
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST_HANDSHAKE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    STATELESS_VERSIONS,
)
from rollout_operator.runtime.tool_server import serve_tools
from rollout_operator.runtime.tools import FastMCPClientTools, HttpTools, InProcessTools
from tests.fixtures.tool_table_server import build_server
from tests.support.cli import cli_env, rolloutctl_argv
from tests.support.loopback import HOST, site_port
from tests.support.tool_server_process import TOOL_TABLE_MCP, ToolServerProcess
from tests.support.tool_table import ToolTableProcess
from tests.unit.test_tools import CASES, MAX_CHARS, check

STATELESS = STATELESS_VERSIONS[-1]
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": STATELESS,
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
TOOL_NAMES = {
    "multiply", "describe_point", "is_even", "greet", "squares", "nothing", "fail", "hang",
    "repeat",
}  # fmt: skip


@pytest.fixture(scope="module")
def fastmcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolTableProcess]:
    """The tool table on FastMCP's own streamable-HTTP server (SSE and JSON ports)."""
    server = ToolTableProcess(tmp_path_factory.mktemp("fastmcp") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lean_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServerProcess]:
    """The tool table on the lean server, as `python -m rollout_operator.runtime.tool_server`."""
    log = tmp_path_factory.mktemp("lean") / "server.log"
    with ToolServerProcess(TOOL_TABLE_MCP, "lean", log) as server:
        yield server


@dataclass
class Served:
    url: str
    app: web.Application

    @property
    def sessions(self) -> SessionTable:
        return self.app[SESSIONS]


@web.middleware
async def _refuse_stateless(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer stateless requests as servers that only know the handshake do."""
    if request.headers.get("mcp-protocol-version") in STATELESS_VERSIONS:
        error = {"code": INVALID_REQUEST, "message": "Bad Request: Missing session ID"}
        return web.json_response({"jsonrpc": "2.0", "id": None, "error": error}, status=400)
    return await handler(request)


@asynccontextmanager
async def serving(
    server: FastMCP[Any], *, handshake_only: bool = False, **options: Any
) -> AsyncIterator[Served]:
    """`server` on the lean server in this process, on a free loopback port."""
    app = mcp_http_app(server, **options)
    if handshake_only:
        app.middlewares.append(_refuse_stateless)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    try:
        yield Served(f"http://{HOST}:{site_port(site)}/mcp", app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def lean() -> AsyncIterator[Served]:
    async with serving(build_server()) as served:
        yield served


@pytest.fixture(params=["in_process", "subprocess"])
async def lean_url(
    request: pytest.FixtureRequest, lean_process: ToolServerProcess
) -> AsyncIterator[str]:
    if request.param == "subprocess":
        yield lean_process.url
    else:
        async with serving(build_server()) as served:
            yield served.url


# -- a raw MCP client, to look at the wire ------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: Any

    @property
    def error_code(self) -> int:
        return int(self.body["error"]["code"])


async def post(
    http: aiohttp.ClientSession, url: str, message: Any, headers: dict[str, str] | None = None
) -> Reply:
    async with http.post(url, data=json.dumps(message), headers={**ACCEPT, **(headers or {})}) as r:
        raw = await r.read()
        return Reply(r.status, CIMultiDict(r.headers), json.loads(raw) if raw else None)


def request(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize(version: str) -> dict[str, Any]:
    return request(1, "initialize", {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    })  # fmt: skip


async def open_session(
    http: aiohttp.ClientSession, url: str, version: str = LATEST_HANDSHAKE
) -> dict[str, str]:
    """Initialize a session; the headers its later requests carry."""
    reply = await post(http, url, initialize(version))
    assert reply.status == 200, reply
    headers = {"mcp-session-id": reply.headers["mcp-session-id"],
               "mcp-protocol-version": reply.body["result"]["protocolVersion"]}
    assert (await post(http, url, notification("notifications/initialized"), headers)).status == 202
    return headers


def stateless_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"mcp-protocol-version": STATELESS, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def stateless(
    http: aiohttp.ClientSession, url: str, method: str, params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    name = (params or {}).get("name")
    message = request(5, method, {**(params or {}), "_meta": ENVELOPE})
    return await post(http, url, message, headers or stateless_headers(method, name))


# -- any MCP client can use it ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_fastmcps_client_lists_and_calls_tools(
    lean_url: str, mode: Literal["auto", "legacy"]
) -> None:
    async with fastmcp.Client(lean_url, mode=mode) as client:
        tools = await client.list_tools()
        product = await client.call_tool("multiply", {"first_val": 12, "second_val": 8})
        failed = await client.call_tool("fail", {"reason": "disk full"}, raise_on_error=False)
        point = await client.call_tool("describe_point", {"x": 0, "y": 0})
    assert {tool.name for tool in tools} == TOOL_NAMES
    assert product.data == 96.0 and not product.is_error
    assert failed.is_error
    assert failed.content[0].text == "Error calling tool 'fail': the tool failed: disk full"
    assert point.structured_content == {"x": 0, "y": 0, "label": "(0, 0)", "origin": True}


async def test_fastmcps_client_speaks_the_stateless_revision_without_sessions(
    lean: Served,
) -> None:
    async with fastmcp.Client(lean.url) as client:
        await client.call_tool("is_even", {"n": 2})
        assert len(lean.sessions) == 0
    async with fastmcp.Client(lean.url, mode="legacy") as client:
        await client.call_tool("is_even", {"n": 2})
        assert len(lean.sessions) == 1
    assert len(lean.sessions) == 0  # the client ended its session


async def test_http_tools_lists_and_calls_tools(lean_url: str) -> None:
    stateless_tools, handshake_tools = HttpTools(lean_url), HttpTools(lean_url, discover=False)
    try:
        listed = await stateless_tools.list_tools()
        assert await handshake_tools.list_tools() == listed
        async with stateless_tools.session() as stateless_session, \
                handshake_tools.session() as handshake_session:
            for session in (stateless_session, handshake_session):
                product = await session.call("multiply", {"first_val": 12, "second_val": 8}, 5)
                assert product == ToolOutput("96.0")
    finally:
        await stateless_tools.aclose()
        await handshake_tools.aclose()
    assert {tool["function"]["name"] for tool in listed} == TOOL_NAMES
    assert (stateless_session.protocol_version, stateless_session.session_id) == (STATELESS, None)
    assert handshake_session.protocol_version == LATEST_HANDSHAKE
    assert handshake_session.session_id


async def test_http_tools_keeps_sessions_where_the_server_or_a_tool_needs_them() -> None:
    server: FastMCP[Any] = FastMCP("Regional")

    @server.tool
    def locate(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
        """Where the call was routed"""
        return f"served in {region}"

    async with serving(server) as served:
        tools = HttpTools(served.url)
        try:
            await tools.list_tools()
            assert tools.stateless_version is None
            async with tools.session() as session:
                located = await session.call("locate", {"region": "eu"}, 5)
            assert session.session_id and located == ToolOutput("served in eu")
        finally:
            await tools.aclose()
        async with aiohttp.ClientSession() as http:
            params = {"name": "locate", "arguments": {"region": "eu"}}
            unmirrored = await stateless(http, served.url, "tools/call", params)
            mirrored = await stateless(http, served.url, "tools/call", params, headers={
                **stateless_headers("tools/call", "locate"), "Mcp-Param-Region": "eu"})
        assert (unmirrored.status, unmirrored.error_code) == (400, HEADER_MISMATCH)
        assert mirrored.body["result"]["content"][0]["text"] == "served in eu"

    # A server without the stateless revision refuses the probe as a request without a session.
    async with serving(build_server(), handshake_only=True) as served:
        tools = HttpTools(served.url)
        try:
            assert {tool["function"]["name"] for tool in await tools.list_tools()} == TOOL_NAMES
            assert tools.stateless_version is None
            async with tools.session() as session:
                assert (await session.call("is_even", {"n": 3}, 5)).content == "false"
            assert session.session_id is not None
        finally:
            await tools.aclose()


@pytest.mark.parametrize("case_id", list(CASES))
async def test_every_case_reads_the_same_as_through_fastmcps_server(
    fastmcp_server: ToolTableProcess, lean_url: str, case_id: str
) -> None:
    case = CASES[case_id]
    providers: dict[str, ToolProvider] = {
        "in_process": InProcessTools(build_server(), max_result_chars=MAX_CHARS),
        "fastmcp_server_http_tools": HttpTools(fastmcp_server.json_url, max_result_chars=MAX_CHARS),
        "fastmcp_server_client": FastMCPClientTools(fastmcp_server.url, max_result_chars=MAX_CHARS),
        "fastmcp_server_http_tools_stateless": HttpTools(
            fastmcp_server.url, max_result_chars=MAX_CHARS),
        "lean_http_tools": HttpTools(lean_url, max_result_chars=MAX_CHARS),
        "lean_http_tools_stateless": HttpTools(lean_url, max_result_chars=MAX_CHARS),
        "lean_client": FastMCPClientTools(lean_url, max_result_chars=MAX_CHARS),
    }
    outputs: dict[str, ToolOutput] = {}
    for name, tools in providers.items():
        if name.endswith("_stateless"):
            await tools.list_tools()  # learns that the server speaks the stateless revision
            assert isinstance(tools, HttpTools) and tools.stateless_version == STATELESS
        try:
            async with tools.session() as session:
                outputs[name] = await session.call(case.tool, case.arguments, case.timeout)
        finally:
            await tools.aclose()
    check(case, outputs["lean_http_tools"])
    assert outputs == dict.fromkeys(providers, outputs["in_process"])


async def test_listed_tools_are_the_same_as_through_fastmcps_server(
    fastmcp_server: ToolTableProcess, lean_url: str
) -> None:
    listings = []
    for url in (fastmcp_server.url, lean_url):
        tools = HttpTools(url)
        try:
            listings.append(await tools.list_tools())
        finally:
            await tools.aclose()
    assert listings[0] == listings[1]


WIRE_CALLS = [(case.tool, case.arguments) for case in CASES.values() if case.tool != "hang"]


async def _handshake_wire(http: aiohttp.ClientSession, url: str, version: str) -> list[Any]:
    headers = await open_session(http, url, version)
    replies = [await post(http, url, request(2, "tools/list"), headers)]
    for number, (tool, arguments) in enumerate(WIRE_CALLS, start=3):
        params = {"name": tool, "arguments": arguments}
        replies.append(await post(http, url, request(number, "tools/call", params), headers))
    replies.append(await post(http, url, request(99, "ping"), headers))
    return [(reply.status, reply.body) for reply in replies]


async def _stateless_wire(http: aiohttp.ClientSession, url: str) -> list[Any]:
    replies = [await stateless(http, url, "tools/list"), await stateless(http, url, "ping")]
    for tool, arguments in WIRE_CALLS:
        replies.append(await stateless(http, url, "tools/call", {"name": tool,
                                                                 "arguments": arguments}))
    no_envelope = request(5, "tools/list", {})
    replies.append(await post(http, url, no_envelope, stateless_headers("tools/list")))
    replies.append(await stateless(http, url, "tools/list", headers=stateless_headers("ping")))
    replies.append(await stateless(http, url, "tools/call", {"name": "greet", "arguments": {
        "name": "x"}}, headers=stateless_headers("tools/call", "other")))
    return [(reply.status, reply.body) for reply in replies]


async def test_results_on_the_wire_are_fastmcps_at_every_revision(
    fastmcp_server: ToolTableProcess, lean: Served
) -> None:
    """Tool lists, results, errors and envelope rejections, as FastMCP's server (answering with
    JSON) sends them, for every revision the installed MCP SDK speaks."""
    async with aiohttp.ClientSession() as http:
        for version in HANDSHAKE_VERSIONS:
            theirs = await _handshake_wire(http, fastmcp_server.json_url, version)
            ours = await _handshake_wire(http, lean.url, version)
            assert ours == theirs, version
        theirs = await _stateless_wire(http, fastmcp_server.json_url)
        ours = await _stateless_wire(http, lean.url)
        assert ours == theirs
    assert any(status == 400 for status, _ in ours)  # the rejections were exercised


# -- sessions -----------------------------------------------------------------------------------


async def test_initialize_agrees_on_a_revision_and_issues_a_session(lean: Served) -> None:
    async with aiohttp.ClientSession() as http:
        ids = set()
        for version in HANDSHAKE_VERSIONS:
            reply = await post(http, lean.url, initialize(version))
            assert reply.status == 200
            assert reply.body["result"]["protocolVersion"] == version
            assert reply.body["result"]["capabilities"] == {"tools": {"listChanged": False}}
            assert reply.body["result"]["serverInfo"]["name"] == "ToolTable"
            ids.add(reply.headers["Mcp-Session-Id"])
        unknown = await post(http, lean.url, initialize("1999-01-01"))
        assert unknown.body["result"]["protocolVersion"] == LATEST_HANDSHAKE
        bad = await post(http, lean.url, request(1, "initialize", {"capabilities": {}}))
    assert len(ids) == len(HANDSHAKE_VERSIONS) == len(lean.sessions) - 1
    assert bad.status == 400 and bad.error_code == INVALID_PARAMS
    assert "protocolVersion" in bad.body["error"]["message"]


async def test_session_errors(lean: Served) -> None:
    async with aiohttp.ClientSession() as http:
        listing = request(2, "tools/list")
        missing = await post(http, lean.url, listing)
        unknown = await post(http, lean.url, listing, {"mcp-session-id": "not-a-session"})
        headers = await open_session(http, lean.url)
        assert (await post(http, lean.url, listing, headers)).status == 200
        async with http.delete(lean.url, headers=headers) as response:
            assert response.status == 200
        after_delete = await post(http, lean.url, listing, headers)
        async with http.delete(lean.url, headers=headers) as response:
            assert response.status == 404
        async with http.delete(lean.url) as response:
            assert response.status == 400
    assert (missing.status, missing.error_code) == (400, INVALID_REQUEST)
    assert "Missing session ID" in missing.body["error"]["message"]
    assert (unknown.status, unknown.error_code) == (404, INVALID_REQUEST)
    assert (after_delete.status, after_delete.error_code) == (404, INVALID_REQUEST)
    assert after_delete.body["id"] is None


async def test_notifications_get_202_and_get_gets_405(lean: Served) -> None:
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, lean.url)
        for method in ("notifications/initialized", "notifications/roots/list_changed"):
            async with http.post(lean.url, json=notification(method), headers={
                    **ACCEPT, **headers}) as response:
                assert response.status == 202
                assert await response.read() == b""
        client_response = {"jsonrpc": "2.0", "id": "s-1", "result": {}}
        assert (await post(http, lean.url, client_response, headers)).status == 202
        modern = await post(http, lean.url, notification("notifications/initialized"),
                            stateless_headers("notifications/initialized"))
        assert modern.status == 202
        async with http.get(lean.url, headers={"Accept": "text/event-stream", **headers}) as r:
            assert r.status == 405
            assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"POST", "DELETE"}
        async with http.get(lean.url, headers=stateless_headers("ping")) as r:
            assert (r.status, r.headers["Allow"]) == (405, "POST")


async def _running(session: McpSession, request_id: int) -> None:
    """Until the session has the call in flight (5 s at most)."""
    async with asyncio.timeout(5):
        while request_id not in session.in_flight:  # noqa: ASYNC110 - polled server state
            await asyncio.sleep(0.01)


async def test_a_cancelled_call_stops_and_a_deleted_session_stops_its_calls(
    lean: Served,
) -> None:
    hang = {"name": "hang", "arguments": {"seconds": 30}}
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, lean.url)
        session = lean.sessions.get(headers["mcp-session-id"])
        assert session is not None
        call = asyncio.create_task(post(http, lean.url, request(7, "tools/call", hang), headers))
        await _running(session, 7)
        cancel = notification("notifications/cancelled", {"requestId": 7, "reason": "timeout"})
        assert (await post(http, lean.url, cancel, headers)).status == 202
        cancelled = await asyncio.wait_for(call, 5)
        assert cancelled.error_code == REQUEST_CANCELLED and cancelled.body["id"] == 7
        assert session.in_flight == {}

        call = asyncio.create_task(post(http, lean.url, request(8, "tools/call", hang), headers))
        await _running(session, 8)
        async with http.delete(lean.url, headers=headers) as response:
            assert response.status == 200
        ended = await asyncio.wait_for(call, 5)
        assert ended.error_code == REQUEST_CANCELLED


async def test_batches_only_at_the_revisions_that_have_them(lean: Served) -> None:
    batch = [
        request(2, "ping"),
        notification("notifications/initialized"),
        request(3, "tools/call", {"name": "greet", "arguments": {"name": "Ada"}}),
        {"jsonrpc": "1.0", "id": 4, "method": "ping"},
    ]
    async with aiohttp.ClientSession() as http:
        old = await open_session(http, lean.url, "2025-03-26")
        answered = await post(http, lean.url, batch, old)
        only_notices = await post(http, lean.url, [notification("notifications/initialized")], old)
        new = await open_session(http, lean.url, "2025-06-18")
        refused = await post(http, lean.url, batch, new)
    assert answered.status == 200
    by_id = {reply["id"]: reply for reply in answered.body}
    assert set(by_id) == {2, 3, 4}
    assert by_id[2]["result"] == {}
    assert by_id[3]["result"]["content"][0]["text"] == "Hello, Ada!"
    assert by_id[4]["error"]["code"] == INVALID_REQUEST
    assert only_notices.status == 202
    assert (refused.status, refused.error_code) == (400, INVALID_REQUEST)
    assert "2025-06-18" in refused.body["error"]["message"]


async def test_unknown_methods_and_bad_requests(lean: Served) -> None:
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, lean.url)
        unknown = await post(http, lean.url, request(2, "resources/list"), headers)
        nameless = await post(http, lean.url, request(3, "tools/call", {"arguments": {}}), headers)
        not_rpc = await post(http, lean.url, {"id": 4, "method": "ping"}, headers)
        async with http.post(lean.url, data=b"{nope", headers={**ACCEPT, **headers}) as r:
            unparsable = Reply(r.status, CIMultiDict(r.headers), await r.json())
        async with http.post(lean.url, data=b"{}", headers={
                "Accept": "text/html", "Content-Type": "application/json", **headers}) as r:
            not_acceptable = r.status
        async with http.post(lean.url, data=b"{}", headers={
                "Accept": "application/json", "Content-Type": "text/plain", **headers}) as r:
            wrong_type = r.status
    assert unknown.status == 200 and unknown.error_code == METHOD_NOT_FOUND
    assert nameless.error_code == INVALID_PARAMS and "name" in nameless.body["error"]["message"]
    assert (not_rpc.status, not_rpc.error_code) == (400, INVALID_REQUEST)
    assert (unparsable.status, unparsable.error_code) == (400, PARSE_ERROR)
    assert (not_acceptable, wrong_type) == (406, 415)


async def test_stateless_requests_are_checked_like_the_sdk_checks_them(lean: Served) -> None:
    async with aiohttp.ClientSession() as http:
        discovered = await stateless(http, lean.url, "server/discover")
        mismatch = await stateless(http, lean.url, "tools/call", {
            "name": "greet", "arguments": {"name": "x"}}, headers=stateless_headers("tools/call"))
        future = {"mcp-protocol-version": "2099-01-01", "mcp-method": "ping"}
        envelope = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
        unsupported = await post(http, lean.url, request(6, "ping", {"_meta": envelope}), future)
        unknown = await stateless(http, lean.url, "resources/list")
        batch = await post(http, lean.url, [request(7, "ping", {"_meta": ENVELOPE})],
                           stateless_headers("ping"))
    assert discovered.status == 200
    assert discovered.body["result"]["supportedVersions"] == list(STATELESS_VERSIONS)
    assert discovered.body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"] == {
        "name": "ToolTable", "version": build_server().version}
    assert (mismatch.status, mismatch.error_code) == (400, HEADER_MISMATCH)
    assert unsupported.status == 400
    assert unsupported.body["error"]["data"]["supported"] == list(STATELESS_VERSIONS)
    assert (unknown.status, unknown.error_code) == (404, METHOD_NOT_FOUND)
    assert (batch.status, batch.error_code) == (400, INVALID_REQUEST)
    assert len(lean.sessions) == 0


# -- the server around the tools ----------------------------------------------------------------


async def test_idle_sessions_are_forgotten() -> None:
    now = [0.0]
    table = SessionTable(idle_timeout=10, clock=lambda: now[0])
    idle, busy, recent = table.open("2025-11-25"), table.open("2025-11-25"), None
    busy.track(1, asyncio.get_running_loop().create_future())  # type: ignore[arg-type]
    now[0] = 8.0
    recent = table.open("2025-11-25")
    now[0] = 12.0
    assert table.expire_idle() == 1
    assert idle.id not in table and busy.id in table and recent.id in table
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionTable(idle_timeout=0)

    async with serving(build_server(), session_idle_timeout=0.2) as served, \
            aiohttp.ClientSession() as http:
        headers = await open_session(http, served.url)
        await asyncio.sleep(0.5)
        gone = await post(http, served.url, request(2, "ping"), headers)
    assert gone.status == 404


async def test_sync_tools_leave_the_event_loop_free() -> None:
    server: FastMCP[Any] = FastMCP("Slow")

    @server.tool
    def slow() -> str:
        time.sleep(0.6)
        return "done"

    async with serving(server) as served, aiohttp.ClientSession() as http:
        headers = await open_session(http, served.url)
        call = asyncio.create_task(post(http, served.url, request(2, "tools/call", {
            "name": "slow", "arguments": {}}), headers))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        pong = await post(http, served.url, request(3, "ping"), headers)
        assert time.perf_counter() - started < 0.3
        assert pong.body["result"] == {} and not call.done()
        assert (await call).body["result"]["content"][0]["text"] == "done"


async def test_the_repos_own_routes_are_served() -> None:
    server: FastMCP[Any] = FastMCP("Routes")

    @server.custom_route("/echo/{word}", methods=["POST"])
    async def echo(request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        return JSONResponse({"word": request.path_params["word"], "body": body,
                             "q": request.query_params.get("q")}, status_code=201)

    @server.custom_route("/count", methods=["GET"])
    async def count(request: Request) -> StreamingResponse:
        async def numbers() -> AsyncIterator[bytes]:
            for number in range(3):
                yield f"{number}\n".encode()

        return StreamingResponse(numbers(), media_type="text/plain")

    async with serving(server) as served, aiohttp.ClientSession() as http:
        base = served.url.removesuffix("/mcp")
        async with http.post(f"{base}/echo/hi?q=1", data=b"payload") as response:
            assert response.status == 201
            assert await response.json() == {"word": "hi", "body": "payload", "q": "1"}
        async with http.get(f"{base}/count") as response:
            assert await response.text() == "0\n1\n2\n"
        async with http.get(f"{base}/health") as response:
            assert (response.status, await response.json()) == (200, {"status": "healthy"})
        async with http.get(f"{base}/missing") as response:
            assert response.status == 404


def test_a_server_with_authentication_is_refused() -> None:
    verifier = StaticTokenVerifier(tokens={"t": {"client_id": "c", "scopes": []}})
    with pytest.raises(ValueError, match=r"authentication.*--engine fastmcp"):
        mcp_http_app(FastMCP("Guarded", auth=verifier))


def test_serve_tools_names_the_engines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lean, fastmcp"):
        serve_tools(TOOL_TABLE_MCP, engine="uvicorn")  # type: ignore[arg-type]


async def _greet_and_name_the_server(url: str) -> tuple[Any, str]:
    async with fastmcp.Client(url) as client:
        result = await client.call_tool("greet", {"name": "Ada"})
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return result.data, response.headers.get("server", "")


def test_rolloutctl_serve_tools_still_offers_fastmcps_engine(tmp_path: Path) -> None:
    server = subprocess.Popen(
        rolloutctl_argv(["serve-tools", "--repo", str(TOOL_TABLE_MCP.parent), "--host",
                         "127.0.0.1", "--port", "0", "--engine", "fastmcp"]),
        cwd=tmp_path, env=cli_env({"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "t.json")}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith("READY http://127.0.0.1:"), server.communicate()[1]
        greeting, name = asyncio.run(_greet_and_name_the_server(ready.split(" ", 1)[1].strip()))
    finally:
        server.terminate()
        _, err = server.communicate(timeout=15)
    assert greeting == "Hello, Ada!"
    assert name.startswith("uvicorn")  # FastMCP's own server answered
    assert server.returncode == 0, err
