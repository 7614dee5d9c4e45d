"""The MCP streamable HTTP transport at `/mcp`, answering every request with a JSON body.

Two eras share the endpoint, told apart by the `MCP-Protocol-Version` header as the MCP SDK's
own server does:

- the handshake revisions (no header, or one of them): `initialize` opens a session whose id
  (`Mcp-Session-Id`) every later request must carry (400 without one, 404 for an id this server
  does not know); notifications and client responses get 202; `notifications/cancelled` stops a
  call in flight; DELETE ends the session; JSON-RPC batches where the revision has them;
- the stateless revisions (FastMCP's `Client` opens with them): every POST is one self-contained
  request with its `_meta` envelope and routing headers, checked by the SDK's own classifier,
  and errors carry the HTTP status the SDK's table gives them.

The specification lets a server answer a POST with JSON instead of an event stream, and this
server never sends requests or notifications of its own, so there is no GET stream (405).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

from aiohttp import web
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
    validate_mcp_param_headers,
)

from rollout_operator.runtime.mcp_http.protocol import (
    BATCH_VERSIONS,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    SESSION_HEADER,
    VERSION_HEADER,
    RequestId,
    RpcError,
    accepts_json,
    encode,
    envelope_problem,
    error_message,
    is_json_content,
    is_request,
    is_request_id,
    result_message,
)
from rollout_operator.runtime.mcp_http.sessions import McpSession, SessionTable
from rollout_operator.runtime.mcp_http.tool_methods import ToolMethods

log = logging.getLogger(__name__)

_JSON: Final = "application/json"
_MCP_PARAM_PREFIX: Final = "mcp-param-"


def json_response(
    message: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"Content-Type": _JSON}
    if headers:
        all_headers.update(headers)
    return web.Response(body=encode(message), status=status, headers=all_headers)


def http_error(
    status: int, message: str, code: int = INVALID_REQUEST, headers: dict[str, str] | None = None
) -> web.Response:
    """An HTTP error with a JSON-RPC error body that has no request id."""
    return json_response(error_message(None, RpcError(code, message)), status, headers)


def _accepted() -> web.Response:
    return web.Response(status=202)


def _rejection_response(
    rejection: InboundLadderRejection, request_id: RequestId | None
) -> web.Response:
    error = RpcError(rejection.code, rejection.message, rejection.data)
    status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 200)
    return json_response(error_message(request_id, error), status)


_INVALID_STATELESS_BODY: Final = RpcError(
    INVALID_REQUEST, "Body must be a single JSON-RPC request or notification object"
)


class McpEndpoint:
    """The aiohttp handler of the MCP endpoint."""

    def __init__(self, methods: ToolMethods, sessions: SessionTable) -> None:
        self.methods = methods
        self.sessions = sessions

    async def handle(self, request: web.Request) -> web.StreamResponse:
        version = request.headers.get(VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_VERSIONS:
            return await self._stateless(request)
        if request.method == "POST":
            return await self._post(request)
        if request.method == "DELETE":
            return self._delete(request)
        return http_error(
            405,
            "Method Not Allowed: this server sends nothing on a GET stream; POST JSON-RPC "
            "messages, DELETE to end a session",
            headers={"Allow": "POST, DELETE"},
        )

    # -- the handshake revisions ------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.Response:
        problem = _unreadable_post(request)
        if problem is not None:
            return problem
        try:
            message = json.loads(await request.read())
        except (ValueError, RecursionError) as exc:
            return http_error(400, f"Parse error: {exc}", PARSE_ERROR)
        session_id = request.headers.get(SESSION_HEADER)
        if isinstance(message, dict) and message.get("method") == "initialize":
            return self._initialize(message, session_id)
        if session_id is None:
            return http_error(400, "Bad Request: Missing session ID")
        session = self.sessions.get(session_id)
        if session is None:
            return http_error(404, "Session not found")
        if isinstance(message, list):
            return await self._batch(session, message)
        invalid = envelope_problem(message)
        if invalid is not None:
            return http_error(400, f"Invalid Request: {invalid}")
        if not is_request(message):
            self._take_notice(session, message)
            return _accepted()
        return json_response(await self._answer_in_session(session, message))

    def _initialize(self, message: dict[str, Any], session_id: str | None) -> web.Response:
        invalid = envelope_problem(message)
        if invalid is not None or "id" not in message:
            return http_error(400, f"Invalid Request: {invalid or 'initialize must be a request'}")
        session: McpSession | None = None
        if session_id is not None:
            session = self.sessions.get(session_id)
            if session is None:
                return http_error(404, "Session not found")
        try:
            result, version = self.methods.initialize(message.get("params"))
        except RpcError as exc:
            return json_response(error_message(message["id"], exc), 400)
        if session is None:
            session = self.sessions.open(version)
        session.version = version
        return json_response(
            result_message(message["id"], result), headers={SESSION_HEADER: session.id}
        )

    def _take_notice(self, session: McpSession, message: dict[str, Any]) -> None:
        """Act on a notification (only cancellation needs anything). Responses from the client
        are accepted and dropped: this server sends it no requests to answer."""
        if message.get("method") == "notifications/cancelled":
            params = message.get("params") or {}
            session.cancel(params.get("requestId"))

    async def _answer_in_session(
        self, session: McpSession, message: dict[str, Any]
    ) -> dict[str, Any]:
        request_id = message["id"]
        method = message["method"]
        if method != "tools/call":
            return await self._answer(request_id, method, message.get("params"), session.version)
        # A tool call runs as its own task, so that `notifications/cancelled` can stop it.
        task = asyncio.ensure_future(
            self._answer(request_id, method, message.get("params"), session.version)
        )
        session.track(request_id, task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the client went away: the call was cancelled with this handler
            return error_message(request_id, RpcError(REQUEST_CANCELLED, "Request cancelled"))
        finally:
            session.untrack(request_id, task, self.sessions.clock())

    async def _batch(self, session: McpSession, messages: list[Any]) -> web.Response:
        if session.version not in BATCH_VERSIONS:
            return http_error(
                400,
                f"Invalid Request: MCP {session.version} has no JSON-RPC batches; send one "
                "message per POST",
            )
        if not messages:
            return http_error(400, "Invalid Request: the batch is empty")
        replies: list[dict[str, Any]] = []
        pending = []
        for message in messages:
            invalid = envelope_problem(message)
            if invalid is not None:
                request_id = message.get("id") if isinstance(message, dict) else None
                replies.append(error_message(
                    request_id if is_request_id(request_id) else None,
                    RpcError(INVALID_REQUEST, f"Invalid Request: {invalid}"),
                ))
            elif not is_request(message):
                self._take_notice(session, message)
            elif message["method"] == "initialize":
                replies.append(error_message(message["id"], RpcError(
                    INVALID_REQUEST, "Invalid Request: initialize must not be part of a batch"
                )))
            else:
                pending.append(self._answer_in_session(session, message))
        replies.extend(await asyncio.gather(*pending))
        return json_response(replies) if replies else _accepted()

    def _delete(self, request: web.Request) -> web.Response:
        session_id = request.headers.get(SESSION_HEADER)
        if session_id is None:
            return http_error(400, "Bad Request: Missing session ID")
        if not self.sessions.close(session_id):
            return http_error(404, "Session not found")
        return web.Response(status=200)

    # -- the stateless revisions ------------------------------------------------------------

    async def _stateless(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        problem = _unreadable_post(request)
        if problem is not None:
            return problem
        try:
            message = json.loads(await request.read())
        except (ValueError, RecursionError):
            return json_response(error_message(None, RpcError(PARSE_ERROR, "Parse error")), 400)
        if isinstance(message, dict) and "id" not in message:
            return self._stateless_notification(request, message)
        if envelope_problem(message) is not None or not is_request(message):
            return json_response(error_message(None, _INVALID_STATELESS_BODY), 400)
        request_id: RequestId = message["id"]
        duplicated = find_duplicated_routing_header(request.headers.items())
        if duplicated is not None:
            message = f"{duplicated} header appears more than once"
            return _rejection_response(
                InboundLadderRejection(HEADER_MISMATCH, message), request_id
            )
        verdict = classify_inbound_request(message, headers=request.headers)
        if isinstance(verdict, InboundLadderRejection):
            return _rejection_response(verdict, request_id)
        method = message["method"]
        params = message.get("params")
        if method == "tools/call":
            rejection = await self._param_header_rejection(request, params)
            if rejection is not None:
                return _rejection_response(rejection, request_id)
        reply = await self._answer(request_id, method, params, verdict.protocol_version)
        error = reply.get("error")
        status = ERROR_CODE_HTTP_STATUS.get(error["code"], 200) if error else 200
        return json_response(reply, status)

    def _stateless_notification(
        self, request: web.Request, message: dict[str, Any]
    ) -> web.Response:
        """Accepted and dropped: these revisions define no client notifications over HTTP (a
        client cancels by closing the response stream)."""
        if envelope_problem(message) is not None or "method" not in message:
            return json_response(error_message(None, _INVALID_STATELESS_BODY), 400)
        rejection = unsupported_protocol_version_rejection(request.headers[VERSION_HEADER])
        if rejection is not None:
            return _rejection_response(rejection, None)
        return _accepted()

    async def _param_header_rejection(
        self, request: web.Request, params: dict[str, Any] | None
    ) -> InboundLadderRejection | None:
        """Check `Mcp-Param-*` headers against the arguments they mirror, for tools that
        declare them (`x-mcp-header` in the input schema)."""
        name = (params or {}).get("name")
        arguments = (params or {}).get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, dict | None):
            return None
        has_headers = any(key.lower().startswith(_MCP_PARAM_PREFIX) for key in request.headers)
        if not arguments and not has_headers:
            return None
        schema = await self.methods.header_schema(name)
        if schema is None:
            return None
        return validate_mcp_param_headers(schema, arguments or {}, request.headers)

    # -- both -----------------------------------------------------------------------------

    async def _answer(
        self, request_id: RequestId, method: str, params: dict[str, Any] | None, version: str
    ) -> dict[str, Any]:
        try:
            result = await self.methods.answer(method, params, version)
        except RpcError as exc:
            return error_message(request_id, exc)
        except Exception:
            log.exception("MCP request %s failed", method)
            return error_message(request_id, RpcError(INTERNAL_ERROR, "Internal server error"))
        return result_message(request_id, result)


def _unreadable_post(request: web.Request) -> web.Response | None:
    """The 406 or 415 for a POST whose answer the client cannot read or whose body is not
    JSON; None when it is fine."""
    if not accepts_json(request.headers.get("Accept", "")):
        return http_error(406, "Not Acceptable: Client must accept application/json")
    if not is_json_content(request.headers.get("Content-Type", "")):
        return http_error(415, "Unsupported Media Type: Content-Type must be application/json")
    return None
