"""The MCP methods a tool server answers, over a loaded FastMCP server's public calls.

`tools/list` goes through `FastMCP.list_tools()`, `tools/call` through `FastMCP.call_tool()` or,
for a plain function tool on a server without tool-call middleware, straight to the tool
(`runtime.tools.fastmcp_direct`, which ends every call as `call_tool()` would). Both are shaped
as FastMCP's own request handlers shape them for the negotiated revision: the same tool objects,
the same error texts (`Unknown tool: 'x'`, validation messages, `Error calling tool 'x': ...`)
in `isError` results. Results then pass through the installed MCP SDK's per-revision result
surface, as they do in FastMCP's server, so a field a revision lacks is never sent to its
clients.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import mcp_types
from fastmcp import FastMCP
from fastmcp.exceptions import DisabledError, FastMCPError, NotFoundError
from fastmcp.tools.base import InputRequiredToolResult, RawStructuredToolResult, ToolResult
from fastmcp.utilities.json_schema import is_object_schema
from fastmcp.utilities.versions import dedupe_with_versions
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import find_invalid_x_mcp_header, x_mcp_header_map
from mcp_types import methods as surfaces
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from rollout_operator.runtime.mcp_http.protocol import (
    HANDSHAKE_VERSIONS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LATEST_HANDSHAKE,
    METHOD_NOT_FOUND,
    STATELESS_VERSIONS,
    RpcError,
)
from rollout_operator.runtime.tools.fastmcp_direct import DirectToolCaller

log = logging.getLogger(__name__)

CAPABILITIES: Final[dict[str, Any]] = {"tools": {"listChanged": False}}
"""Only tools, and a fixed list: the server is loaded once and serves it unchanged."""

Handler = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def _validation_summary(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "params"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _handshake_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema as handshake revisions require it: an object at the root.

    A non-object schema is wrapped under `result` (and the call's structured content with it),
    exactly as FastMCP's server does for these revisions.
    """
    if is_object_schema(schema):
        return schema if schema.get("type") == "object" else {**schema, "type": "object"}
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"result": schema},
        "required": ["result"],
        "x-fastmcp-wrap-result": True,
    }
    for key in ("$defs", "definitions"):
        if key in schema:
            wrapped[key] = schema[key]
    return wrapped


def _wrapped_for_handshake(result: ToolResult) -> ToolResult:
    """A raw (non-object) structured result under the `result` key its listed schema names."""
    fastmcp_meta = result.meta.get("fastmcp") if result.meta else None
    if isinstance(fastmcp_meta, dict) and fastmcp_meta.get("wrap_result") is True:
        return result
    meta = dict(result.meta or {})
    meta["fastmcp"] = {**(fastmcp_meta if isinstance(fastmcp_meta, dict) else {}),
                       "wrap_result": True}
    return ToolResult(
        content=result.content,
        structured_content={"result": result.structured_content},
        meta=meta,
        is_error=result.is_error,
    )


def _call_tool_result(mcp_result: Any) -> dict[str, Any]:
    """`ToolResult.to_mcp_result()` (a result, a content list or a pair) as a wire result."""
    if isinstance(mcp_result, mcp_types.CallToolResult):
        return _dump(mcp_result)
    if isinstance(mcp_result, tuple):
        content, structured = mcp_result
        return _dump(mcp_types.CallToolResult(content=content, structured_content=structured))
    return _dump(mcp_types.CallToolResult(content=mcp_result))


class ToolMethods:
    """Answers `initialize`, `server/discover`, `ping`, `tools/list` and `tools/call`."""

    def __init__(self, server: FastMCP[Any]) -> None:
        self.server = server
        self._caller = DirectToolCaller(server)
        self.server_info: dict[str, Any] = {"name": server.name, "version": server.version or ""}
        self._handlers: dict[str, Handler] = {
            "ping": self._ping,
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
            "server/discover": self._discover,
        }
        self._header_schemas: dict[str, dict[str, Any] | None] = {}

    def initialize(self, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
        """The `initialize` result and the revision agreed: the client's, if this server speaks
        it, else the newest handshake revision (the client then decides whether it can go on)."""
        try:
            init = mcp_types.InitializeRequestParams.model_validate(params or {}, by_name=False)
        except PydanticValidationError as exc:
            raise RpcError(
                INVALID_PARAMS, f"Invalid initialize parameters: {_validation_summary(exc)}"
            ) from exc
        requested = init.protocol_version
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": self.server_info,
        }
        if self.server.instructions:
            result["instructions"] = self.server.instructions
        return self._shape("initialize", version, result), version

    async def answer(
        self, method: str, params: dict[str, Any] | None, version: str
    ) -> dict[str, Any]:
        """The result of one request at `version`; `RpcError` for a request it cannot serve."""
        if method in surfaces.SPEC_CLIENT_METHODS:
            try:
                surfaces.validate_client_request(method, version, params)
            except KeyError:
                raise RpcError(METHOD_NOT_FOUND, "Method not found", method) from None
            except PydanticValidationError as exc:
                raise RpcError(
                    INVALID_PARAMS, f"Invalid request parameters: {_validation_summary(exc)}"
                ) from exc
        handler = self._handlers.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found", method)
        return self._shape(method, version, await handler(params or {}, version))

    async def header_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema of tool `name` when it mirrors arguments into `Mcp-Param-*` headers.

        Remembered per tool (listing refreshes it); an unknown tool is looked up again each time,
        so made-up names cannot grow the table.
        """
        if name in self._header_schemas:
            return self._header_schemas[name]
        tool = await self.server.get_tool(name)
        if tool is None:
            return None
        self._remember_header_schema(name, tool.parameters)
        return self._header_schemas[name]

    def _remember_header_schema(self, name: str, schema: Any) -> None:
        annotated = (
            isinstance(schema, dict)
            and find_invalid_x_mcp_header(schema) is None
            and bool(x_mcp_header_map(schema))
        )
        self._header_schemas[name] = schema if annotated else None

    def _shape(self, method: str, version: str, result: dict[str, Any]) -> dict[str, Any]:
        """The result as `version` defines it; stateless revisions also carry `resultType`,
        caching hints where the revision has them, and the server's identity in `_meta`."""
        stateless = version in STATELESS_VERSIONS
        if stateless:
            result.setdefault("resultType", "complete")
            if method in surfaces.CACHEABLE_METHODS:
                # Immediately stale and never shared: tool listings may differ per caller.
                result.setdefault("ttlMs", 0)
                result.setdefault("cacheScope", "private")
        if method in surfaces.SPEC_CLIENT_METHODS:
            try:
                result = surfaces.serialize_server_result(method, version, result)
            except PydanticValidationError as exc:
                log.error("the %s result does not fit MCP %s: %s", method, version, exc)
                raise RpcError(INTERNAL_ERROR, "Handler returned an invalid result") from None
        if stateless:
            meta = result.get("_meta")
            stamp = {mcp_types.SERVER_INFO_META_KEY: dict(self.server_info)}
            result["_meta"] = {**meta, **stamp} if isinstance(meta, dict) else stamp
        return result

    async def _ping(self, params: dict[str, Any], version: str) -> dict[str, Any]:
        return {}

    async def _discover(self, params: dict[str, Any], version: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(STATELESS_VERSIONS),
            "capabilities": CAPABILITIES,
        }
        if self.server.instructions:
            result["instructions"] = self.server.instructions
        return result

    async def _list_tools(self, params: dict[str, Any], version: str) -> dict[str, Any]:
        tools = dedupe_with_versions(list(await self.server.list_tools()), lambda t: t.name)
        listed = []
        for tool in tools:
            output_schema = tool.output_schema
            if version not in STATELESS_VERSIONS and output_schema is not None:
                output_schema = _handshake_output_schema(output_schema)
            wire = _dump(tool.to_mcp_tool(name=tool.name, outputSchema=output_schema))
            self._remember_header_schema(tool.name, wire.get("inputSchema"))
            listed.append(wire)
        return {"tools": listed}

    async def _call_tool(self, params: dict[str, Any], version: str) -> dict[str, Any]:
        name = params["name"]
        arguments = params.get("arguments") or {}
        try:
            result = await self._caller.call(name, arguments)
        except (DisabledError, NotFoundError):
            return _error_result(f"Unknown tool: {name!r}")
        except FastMCPError as exc:
            # The tool raised or its arguments failed validation; FastMCP has already masked
            # the details if the server asks for that.
            return _error_result(str(exc))
        except MCPError as exc:
            raise RpcError(exc.error.code, exc.error.message, exc.error.data) from exc
        except PydanticValidationError as exc:
            raise RpcError(
                INVALID_PARAMS, f"Invalid request parameters: {_validation_summary(exc)}"
            ) from exc
        if not isinstance(result, ToolResult):
            # An extension answered the call with a result of its own kind.
            return _dump(result) if isinstance(result, BaseModel) else dict(result)
        if isinstance(result, InputRequiredToolResult):
            raise RpcError(
                INVALID_PARAMS,
                f"Tool {name!r} asked the client for input (an InputRequiredResult); this tool "
                "server does not carry multi-round-trip calls: serve the repo with --engine "
                "fastmcp",
            )
        if version not in STATELESS_VERSIONS and (
            isinstance(result, RawStructuredToolResult)
            or (result.structured_content is not None
                and not isinstance(result.structured_content, dict))
        ):
            result = _wrapped_for_handshake(result)
        return _call_tool_result(result.to_mcp_result())
