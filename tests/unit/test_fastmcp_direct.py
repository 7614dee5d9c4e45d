"""Direct calls into a loaded FastMCP server: the same result, or the same exception, as
FastMCP's own `call_tool()`, and FastMCP's dispatch wherever it would do something."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Context, FastMCP
from fastmcp.server.middleware import Middleware, MiddlewareContext

from rollout_operator.runtime.tools import InProcessTools
from rollout_operator.runtime.tools.fastmcp_direct import DirectToolCaller, direct_calls_possible
from tests.fixtures.tool_table_server import build_server

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("multiply", {"first_val": 12, "second_val": 8}),
    ("describe_point", {"x": 3, "y": 4}),
    ("is_even", {"n": 3}),
    ("squares", {"n": 4}),
    ("nothing", {}),
    ("fail", {"reason": "disk full"}),
    ("multiply", {"first_val": "twelve", "second_val": 8}),
    ("multiply", {"first_val": 1}),
    ("divide", {"a": 1}),
    ("server_name", {}),
    ("raise_value_error", {}),
]


def _server(*, mask_error_details: bool = False) -> FastMCP[Any]:
    mcp = build_server()
    mcp._mask_error_details = mask_error_details

    @mcp.tool
    async def server_name(ctx: Context) -> str:
        return f"served by {ctx.fastmcp.name}"

    @mcp.tool
    def raise_value_error() -> str:
        raise ValueError("no such row")

    return mcp


async def _outcome(call: Any, name: str, arguments: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "result", await call(name, dict(arguments))
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize(("name", "arguments"), CALLS)
async def test_a_direct_call_ends_as_fastmcp_call_tool_ends(
    mask: bool, name: str, arguments: dict[str, Any]
) -> None:
    server = _server(mask_error_details=mask)
    direct = DirectToolCaller(server)
    if name != "divide":
        assert await direct.tool(name) is not None  # the direct path is the one taken
    expected = await _outcome(server.call_tool, name, arguments)
    assert await _outcome(direct.call, name, arguments) == expected


class _Counting(Middleware):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        self.calls.append(context.message.name)
        return await call_next(context)


async def test_middleware_that_sees_tool_calls_keeps_fastmcp_dispatch() -> None:
    server = build_server()
    assert direct_calls_possible(server)
    counting = _Counting()
    server.add_middleware(counting)
    assert not direct_calls_possible(server)
    tools = InProcessTools(server)
    async with tools.session() as session:
        output = await session.call("multiply", {"first_val": 2, "second_val": 3})
    assert output.content == "6.0"
    assert counting.calls == ["multiply"]
