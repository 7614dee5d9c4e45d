"""JSON-RPC messages and MCP protocol revisions as the tool server speaks them.

The revisions come from the installed `mcp_types`, so the server negotiates exactly what the
installed MCP SDK (and with it FastMCP's own server and client) speaks: the `initialize`
handshake revisions with a session, and the stateless per-request-envelope revisions without.
"""

from __future__ import annotations

import json
from typing import Any, Final

from mcp_types import jsonrpc as codes
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
    is_version_at_least,
)

SESSION_HEADER: Final = "Mcp-Session-Id"
VERSION_HEADER: Final = "MCP-Protocol-Version"

HANDSHAKE_VERSIONS: Final[tuple[str, ...]] = tuple(HANDSHAKE_PROTOCOL_VERSIONS)
STATELESS_VERSIONS: Final[tuple[str, ...]] = tuple(MODERN_PROTOCOL_VERSIONS)
LATEST_HANDSHAKE: Final[str] = LATEST_HANDSHAKE_VERSION

BATCH_VERSIONS: Final[frozenset[str]] = frozenset(
    version for version in HANDSHAKE_VERSIONS if not is_version_at_least(version, "2025-06-18")
)
"""Revisions whose clients may send JSON-RPC batches (2025-06-18 removed them)."""

PARSE_ERROR: Final = codes.PARSE_ERROR
INVALID_REQUEST: Final = codes.INVALID_REQUEST
METHOD_NOT_FOUND: Final = codes.METHOD_NOT_FOUND
INVALID_PARAMS: Final = codes.INVALID_PARAMS
INTERNAL_ERROR: Final = codes.INTERNAL_ERROR
HEADER_MISMATCH: Final = codes.HEADER_MISMATCH
REQUEST_CANCELLED: Final = -32010
"""Answer to a request the client cancelled; nobody reads it (an implementation-defined code,
from the -32000..-32019 band the MCP specification leaves to servers)."""

RequestId = int | str


class RpcError(Exception):
    """A JSON-RPC error to answer a request with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def result_message(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_message(request_id: RequestId | None, error: RpcError) -> dict[str, Any]:
    """An error response; `id` is null when the request's id could not be read."""
    return {"jsonrpc": "2.0", "id": request_id, "error": error.error_object()}


def encode(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def is_request(message: Any) -> bool:
    """A JSON-RPC request object (as opposed to a notification or a response)."""
    return isinstance(message, dict) and "method" in message and "id" in message


def envelope_problem(message: Any) -> str | None:
    """Why `message` is not a well-formed JSON-RPC request, notification or response, or None."""
    if not isinstance(message, dict):
        return "a JSON-RPC message must be an object"
    if message.get("jsonrpc") != "2.0":
        return 'a JSON-RPC message must carry "jsonrpc": "2.0"'
    if "method" in message:
        if not isinstance(message["method"], str):
            return "the method must be a string"
        if "params" in message and not isinstance(message["params"], dict | None):
            return "params must be an object"
        if "id" in message and not is_request_id(message["id"]):
            return "a request id must be a string or an integer"
        return None
    if "id" in message and ("result" in message or "error" in message):
        return None
    return "a JSON-RPC message needs a method (request, notification) or a result or error"


def media_types(header: str) -> set[str]:
    """The media types of an `Accept` header, without parameters, lower case."""
    return {part.split(";", 1)[0].strip().lower() for part in header.split(",")}


def accepts_json(accept: str) -> bool:
    """Whether an `Accept` header admits `application/json` (wildcards included)."""
    types = media_types(accept)
    return bool(types & {"application/json", "application/*", "*/*"})


def is_json_content(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
