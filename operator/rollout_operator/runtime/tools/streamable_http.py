"""A lean MCP client over streamable HTTP: the hot path to tool pods in cluster mode.

It speaks only what a tool-calling rollout needs (the `initialize` handshake, `tools/list`,
`tools/call`, cancelling a timed-out call, ending the session) as plain JSON-RPC POSTs over one
shared aiohttp connection pool. That costs a fraction of the client CPU of FastMCP's `Client`,
which matters when one worker drives hundreds of rollouts.

`list_tools()` also asks the server (`server/discover`) whether it speaks the stateless revision
that FastMCP's own `Client` prefers. If it does, sessions opened afterwards send each request as
one self-contained POST (the revision's `_meta` envelope and routing headers) instead of opening
an MCP session: a rollout's tool call then costs one request instead of four (`initialize`,
`notifications/initialized`, `tools/call`, DELETE), on the worker and on the tool server. A timed
out call is cancelled by dropping its request, as that revision prescribes. Servers that do not
answer the probe, and tools that mirror arguments into `Mcp-Param-*` headers, keep the handshake.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import aiohttp
from yarl import URL

from rollout_operator.runtime.interfaces import ToolOutput, ToolSchema
from rollout_operator.runtime.tools import jsonrpc
from rollout_operator.runtime.tools.outputs import (
    JSONRPC_INVALID_PARAMS,
    RawToolResult,
    ToolCallFailed,
    check_max_result_chars,
    describe,
    error_output,
    guarded_call,
    open_within,
    openai_tools,
    text_items,
)
from rollout_operator.runtime.tools.sse import SseDecoder

PROTOCOL_VERSION = "2025-11-25"
"""The revision offered in `initialize`. The server answers with the revision it speaks, and that
one goes out on every later request in the `mcp-protocol-version` header."""

STATELESS_VERSION = "2026-07-28"
"""The stateless revision: no handshake and no session, each request carries its `_meta`
envelope (protocol version, client info and capabilities) and `Mcp-Method` / `Mcp-Name`."""

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
_ENVELOPE_PREFIX = "io.modelcontextprotocol/"
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")
_BASE64_WRAPPED = re.compile(r"^=\?base64\?.*\?=$")
_BASE_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}
_DRAIN_SECONDS = 0.05


def _client_version() -> str:
    try:
        return metadata.version("rollout-operator")
    except metadata.PackageNotFoundError:
        return "0.0.0"


_CLIENT_INFO = {"name": "rollout-operator", "version": _client_version()}


def _envelope(version: str) -> dict[str, Any]:
    return {
        f"{_ENVELOPE_PREFIX}protocolVersion": version,
        f"{_ENVELOPE_PREFIX}clientInfo": _CLIENT_INFO,
        f"{_ENVELOPE_PREFIX}clientCapabilities": {},
    }


def _header_value(value: str) -> str:
    """A name as an HTTP header value: verbatim if it survives one, else base64 in the
    `=?base64?...?=` wrapper the specification defines."""
    if (_HEADER_SAFE.fullmatch(value) and value == value.strip()
            and not _BASE64_WRAPPED.fullmatch(value)):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="


def _mirrors_arguments_into_headers(wire_tools: list[dict[str, Any]]) -> bool:
    """Whether a tool declares `x-mcp-header` parameters, which a stateless call would have to
    repeat in `Mcp-Param-*` headers."""
    return any("x-mcp-header" in json.dumps(tool.get("inputSchema") or {}) for tool in wire_tools)


class ToolServerUnreachable(ToolCallFailed):
    """No HTTP answer at all: the server is down or the address is wrong. `unreachable` when
    no connection was made, so the request cannot have run."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message, "sandbox", unreachable=unreachable)


class SessionLost(ToolCallFailed):
    """The server no longer knows the MCP session (it was restarted): the request did not run."""


UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
"""Answers of a proxy or load balancer whose tool server is not there: the request did not
reach it."""


class HttpToolSession:
    """One MCP session on the tool server, opened by the first call and ended on exit.

    Opening lazily means a rollout that never calls a tool costs the server nothing, and a server
    that cannot be reached shows up as a sandbox error of that call rather than an exception.
    """

    def __init__(self, tools: HttpTools, stateless_version: str | None = None) -> None:
        self._tools = tools
        self._stateless = stateless_version
        self.session_id: str | None = None
        self.protocol_version: str | None = stateless_version
        self._headers: dict[str, str] | None = None
        self._next_id = 1
        self._opening = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __aenter__(self) -> HttpToolSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109 - the ToolSession contract
    ) -> ToolOutput:
        max_chars = self._tools.max_result_chars
        try:
            headers = await self._open()
        except ToolCallFailed as exc:
            # No tool ran: a server that could not be reached for the handshake may be asked
            # again, whatever the failure was.
            unreachable = exc.unreachable or isinstance(exc.__cause__, ToolServerUnreachable)
            return error_output(exc.message, exc.kind, max_chars, unreachable=unreachable)

        async def invoke() -> RawToolResult:
            try:
                return await self._call_tool(headers, name, arguments)
            except SessionLost:
                # The server was restarted and the call did not run: a new session, once.
                self._headers = None
                return await self._call_tool(await self._open(), name, arguments)

        return await guarded_call(name, timeout, invoke, max_chars)

    async def list_wire_tools(self) -> list[dict[str, Any]]:
        """The server's tools as sent (`tools/list`, following `nextCursor` pages)."""
        headers = await self._open()
        tools: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        while True:
            result = await self._request(headers, "tools/list", params)
            tools.extend(result.get("tools") or ())
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
            params = {"cursor": cursor}

    async def aclose(self) -> None:
        """End the session on the server (DELETE), after any pending cancellation is sent."""
        if self._closed:
            return
        self._closed = True
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        headers, self._headers = self._headers, None
        pool = self._tools.open_pool()
        if headers is None or self.session_id is None or pool is None:
            return
        try:
            async with (
                asyncio.timeout(self._tools.control_timeout),
                pool.delete(self._tools.url, headers=headers),
            ):
                pass  # 200, 204 and 405 (termination not supported) all leave nothing to do
        except (aiohttp.ClientError, TimeoutError):
            pass  # a server that is gone has no session left to end

    async def _call_tool(
        self, headers: dict[str, str], name: str, arguments: dict[str, Any]
    ) -> RawToolResult:
        request_id = self._take_id()
        try:
            result = await self._request(
                headers, "tools/call", {"name": name, "arguments": arguments}, request_id
            )
        except asyncio.CancelledError:
            if self._stateless is None:  # a stateless call ends with its dropped request
                self._cancel_in_background(headers, request_id)
            raise
        return RawToolResult(
            result.get("structuredContent"),
            text_items(result.get("content") or ()),
            bool(result.get("isError")),
        )

    def _take_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    async def _open(self) -> dict[str, str]:
        if self._headers is None:
            async with self._opening:
                if self._headers is None:
                    self._headers = await open_within(
                        self._tools.control_timeout,
                        self._handshake(),
                        "MCP handshake with the tool server failed",
                    )
        return self._headers

    async def _handshake(self) -> dict[str, str]:
        if self._closed:
            raise ToolCallFailed("The tool session is closed", "sandbox")
        if self._stateless is not None:
            return {**_BASE_HEADERS, VERSION_HEADER: self._stateless}
        params = {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": _CLIENT_INFO,
        }
        request_id = self._take_id()
        message = jsonrpc.request(request_id, "initialize", params)
        try:
            session_id, reply = await self._post(_BASE_HEADERS, message, request_id)
            result = jsonrpc.result_of(reply)
            version = result.get("protocolVersion")
            if not isinstance(version, str) or not version:
                raise ToolCallFailed("initialize result has no protocolVersion", "sandbox")
            headers = {**_BASE_HEADERS, VERSION_HEADER: version}
            if session_id:
                headers[SESSION_HEADER] = session_id
            await self._post(headers, jsonrpc.notification("notifications/initialized"), None)
        except ToolCallFailed as exc:
            raise ToolCallFailed(f"MCP handshake with the tool server failed: {exc.message}",
                                 "sandbox", unreachable=exc.unreachable) from exc
        self.session_id = session_id
        self.protocol_version = version
        return headers

    async def _request(
        self,
        headers: dict[str, str],
        method: str,
        params: dict[str, Any],
        request_id: int | None = None,
    ) -> dict[str, Any]:
        if request_id is None:
            request_id = self._take_id()
        if self._stateless is not None:
            headers = {**headers, METHOD_HEADER: method}
            name = params.get("name")
            if method == "tools/call" and isinstance(name, str):
                headers[NAME_HEADER] = _header_value(name)
            params = {**params, "_meta": _envelope(self._stateless)}
        message = jsonrpc.request(request_id, method, params)
        _, reply = await self._post(headers, message, request_id)
        return jsonrpc.result_of(reply)

    async def _post(
        self, headers: Mapping[str, str], message: dict[str, Any], request_id: int | None
    ) -> tuple[str | None, dict[str, Any] | None]:
        """POST one JSON-RPC message: the session id header and, for a request, its response."""
        try:
            async with self._tools.http().post(
                self._tools.url, data=json.dumps(message).encode(), headers=headers
            ) as response:
                if response.status >= 400:
                    raise await _http_failure(response, headers)
                session_id = response.headers.get(SESSION_HEADER)
                if request_id is None:
                    return session_id, None
                return session_id, await self._read_response(response, headers, request_id)
        except aiohttp.ClientConnectorError as exc:
            raise ToolServerUnreachable(f"Tool server unreachable: {describe(exc)}",
                                        unreachable=True) from exc
        except aiohttp.ClientError as exc:
            raise ToolServerUnreachable(f"Tool server unreachable: {describe(exc)}") from exc

    async def _read_response(
        self, response: aiohttp.ClientResponse, headers: Mapping[str, str], request_id: int
    ) -> dict[str, Any]:
        """The JSON-RPC response to `request_id`, from a JSON body or an SSE stream."""
        content_type = response.headers.get("Content-Type", "").lower()
        if response.status == 202:
            raise ToolCallFailed("Tool server accepted a request without answering it", "sandbox")
        if content_type.startswith("application/json"):
            body = jsonrpc.parse(await response.read())
            for message in body if isinstance(body, list) else [body]:
                if jsonrpc.answers(message, request_id):
                    return dict(message)
            raise ToolCallFailed("Tool server sent no response to the request", "sandbox")
        if content_type.startswith("text/event-stream"):
            decoder = SseDecoder()
            while chunk := await response.content.readany():
                for data in decoder.feed(chunk):
                    message = jsonrpc.parse(data)
                    if jsonrpc.answers(message, request_id):
                        await _drain(response)
                        return dict(message)
                    if jsonrpc.is_server_request(message):
                        await self._answer_server_request(headers, message)
            raise ToolCallFailed("Tool server closed the event stream before answering", "sandbox")
        raise ToolCallFailed(f"Tool server answered with content type {content_type!r}", "sandbox")

    async def _answer_server_request(
        self, headers: Mapping[str, str], request: dict[str, Any]
    ) -> None:
        """Answer a server-to-client request, so a tool that asks one does not wait forever."""
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if request.get("method") == "ping":
            reply["result"] = {}
        else:
            reply["error"] = {
                "code": jsonrpc.METHOD_NOT_FOUND,
                "message": f"The client does not support {request.get('method')!r}",
            }
        await self._post(headers, reply, None)

    def _cancel_in_background(self, headers: dict[str, str], request_id: int) -> None:
        """Tell the server to stop a call we gave up on; `aclose` waits for it to be sent."""
        notice = jsonrpc.notification(
            "notifications/cancelled", {"requestId": request_id, "reason": "timed out"}
        )
        task = asyncio.get_running_loop().create_task(self._notify_quietly(headers, notice))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify_quietly(self, headers: dict[str, str], notice: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._tools.control_timeout):
                await self._post(headers, notice, None)
        except (ToolCallFailed, TimeoutError):
            pass  # best effort: the session's end stops the call on the server anyway


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read an event stream to its end, so that its connection goes back to the pool.

    Servers end the stream right after the response; one that keeps it open costs its
    connection instead of the call's time.
    """
    try:
        async with asyncio.timeout(_DRAIN_SECONDS):
            while await response.content.readany():
                pass
    except TimeoutError:
        pass


async def _http_failure(
    response: aiohttp.ClientResponse, headers: Mapping[str, str]
) -> ToolCallFailed:
    """A failed HTTP status as a call failure; only a rejected tool call is the tool's fault."""
    error = jsonrpc.error_in_body(await response.read())
    if error is not None and error.get("code") == JSONRPC_INVALID_PARAMS:
        return jsonrpc.error_failure(error)
    detail = jsonrpc.error_text(error) if error is not None else (response.reason or "")
    session_id = headers.get(SESSION_HEADER)
    if response.status == 404 and session_id:
        return SessionLost(
            f"Tool server no longer knows MCP session {session_id} (HTTP 404: {detail}); "
            "it was restarted or ended the session",
            "sandbox",
        )
    return ToolCallFailed(f"Tool server answered HTTP {response.status}: {detail}", "sandbox",
                          unreachable=response.status in UNAVAILABLE_STATUSES)


class HttpTools:
    """A `ToolProvider` for a streamable-HTTP MCP endpoint such as `http://tools:8000/mcp`.

    All sessions share one aiohttp connection pool; each `session()` is its own MCP session.
    `headers` are sent on every request (an `Authorization` header, say). `control_timeout`
    bounds listing tools and ending sessions; tool calls have their own per-call timeout.
    `discover=False` keeps the `initialize` handshake even with servers that speak the stateless
    revision.
    """

    def __init__(
        self,
        url: str,
        *,
        max_result_chars: int | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        connect_timeout: float = 10.0,
        control_timeout: float = 30.0,
        discover: bool = True,
    ) -> None:
        parsed = URL(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(
                "HttpTools needs the http(s):// URL of a streamable-HTTP MCP endpoint, "
                f"such as http://127.0.0.1:8000/mcp; got {url!r}"
            )
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.url = parsed
        self.max_result_chars = check_max_result_chars(max_result_chars)
        self.control_timeout = control_timeout
        self._headers = dict(headers or {})
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._http: aiohttp.ClientSession | None = None
        self._discover = discover
        self.stateless_version: str | None = None
        """The stateless revision new sessions speak; None: they open an MCP session. Set by
        `list_tools()` when the server says it speaks one."""

    def http(self) -> aiohttp.ClientSession:
        """The shared connection pool, made on first use (it belongs to the running loop)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                headers=self._headers,
            )
        return self._http

    def open_pool(self) -> aiohttp.ClientSession | None:
        """The connection pool if it is open; None after `aclose` or before first use."""
        return self._http if self._http is not None and not self._http.closed else None

    async def list_tools(self) -> list[ToolSchema]:
        try:
            async with asyncio.timeout(self.control_timeout):
                if self._discover:
                    self.stateless_version = await self._stateless_version()
                async with self.session() as session:
                    wire_tools = await session.list_wire_tools()
        except ToolCallFailed as exc:
            raise ConnectionError(f"Cannot list tools from {self.url}: {exc.message}") from exc
        except TimeoutError as exc:
            raise ConnectionError(
                f"Cannot list tools from {self.url}: no answer within {self.control_timeout:g}s"
            ) from exc
        if self.stateless_version is not None and _mirrors_arguments_into_headers(wire_tools):
            self.stateless_version = None
        return openai_tools(wire_tools)

    async def _stateless_version(self) -> str | None:
        """`STATELESS_VERSION` if the server's `server/discover` lists it, else None (any other
        answer, errors included, means the handshake). No answer at all is raised."""
        probe = HttpToolSession(self, STATELESS_VERSION)
        try:
            result = await probe._request(await probe._open(), "server/discover", {})
        except ToolServerUnreachable:
            raise
        except ToolCallFailed:
            return None
        versions = result.get("supportedVersions")
        if isinstance(versions, list) and STATELESS_VERSION in versions:
            return STATELESS_VERSION
        return None

    def session(self) -> HttpToolSession:
        return HttpToolSession(self, self.stateless_version)

    async def aclose(self) -> None:
        """Close the connection pool; sessions still open can no longer reach the server."""
        if self._http is not None:
            await self._http.close()
            self._http = None

