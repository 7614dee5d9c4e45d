"""JSON-RPC 2.0 as MCP uses it: building messages and reading responses and errors.

A JSON-RPC error is the tool's failure only when it rejects the call itself (unknown tool, bad
arguments); any other error means the tool server is in trouble.
"""

from __future__ import annotations

import json
from typing import Any

from rollout_operator.runtime.tools.outputs import ToolCallFailed, protocol_error_kind

METHOD_NOT_FOUND = -32601


def request(request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def parse(data: bytes | str) -> Any:
    """Decoded JSON; malformed JSON from the server is a sandbox failure."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ToolCallFailed(f"Tool server sent malformed JSON: {exc}", "sandbox") from exc


def answers(message: Any, request_id: int) -> bool:
    """Whether `message` is the response (result or error) to `request_id`."""
    return (
        isinstance(message, dict)
        and message.get("id") == request_id
        and ("result" in message or "error" in message)
    )


def is_server_request(message: Any) -> bool:
    return isinstance(message, dict) and "method" in message and "id" in message


def result_of(reply: dict[str, Any] | None) -> dict[str, Any]:
    """The `result` of a response; an `error` becomes a `ToolCallFailed`."""
    if reply is None:
        raise ToolCallFailed("Tool server sent no response", "sandbox")
    error = reply.get("error")
    if error is not None:
        raise error_failure(error)
    result = reply.get("result")
    if not isinstance(result, dict):
        raise ToolCallFailed("Tool server sent a response without a result object", "sandbox")
    return result


def error_failure(error: Any) -> ToolCallFailed:
    code = error.get("code") if isinstance(error, dict) else None
    return ToolCallFailed(error_text(error), protocol_error_kind(code))


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if message:
            return str(message)
        return f"JSON-RPC error {error.get('code')}"
    return str(error)


def error_in_body(body: bytes) -> dict[str, Any] | None:
    """The JSON-RPC error object of an HTTP error body, if it carries one."""
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return dict(decoded["error"])
    return None
