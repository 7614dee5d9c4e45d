"""Tool providers: where a rollout's tool calls go.

Three implementations of `ToolProvider` give identical tool messages: `InProcessTools` calls a
FastMCP server loaded in this process (local runs), `HttpTools` is a lean streamable-HTTP MCP
client (tool pods), and `FastMCPClientTools` goes through FastMCP's public `Client` (any target).
"""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP

from rollout_operator.runtime.interfaces import ToolProvider
from rollout_operator.runtime.tools.fastmcp_client import (
    FastMCPClientTools,
    FastMCPClientToolSession,
)
from rollout_operator.runtime.tools.in_process import InProcessTools, InProcessToolSession
from rollout_operator.runtime.tools.outputs import extract_value, serialize_value, truncate
from rollout_operator.runtime.tools.streamable_http import HttpTools, HttpToolSession


def make_tool_provider(
    source: FastMCP[Any] | str, *, lean: bool = True, max_result_chars: int | None = None
) -> ToolProvider:
    """The provider for a loaded server or a tool server URL.

    `lean` picks the fast path (`InProcessTools` / `HttpTools`); otherwise FastMCP's `Client`
    is used for either source.
    """
    if isinstance(source, FastMCP):
        if lean:
            return InProcessTools(source, max_result_chars=max_result_chars)
        return FastMCPClientTools(source, max_result_chars=max_result_chars)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        if lean:
            return HttpTools(source, max_result_chars=max_result_chars)
        return FastMCPClientTools(source, max_result_chars=max_result_chars)
    raise ValueError(
        "A tool source is a loaded fastmcp.FastMCP server or the http(s):// URL of a "
        f"streamable-HTTP MCP endpoint (such as http://127.0.0.1:8000/mcp); got {source!r}"
    )


__all__ = [
    "FastMCPClientToolSession",
    "FastMCPClientTools",
    "HttpToolSession",
    "HttpTools",
    "InProcessToolSession",
    "InProcessTools",
    "extract_value",
    "make_tool_provider",
    "serialize_value",
    "truncate",
]
