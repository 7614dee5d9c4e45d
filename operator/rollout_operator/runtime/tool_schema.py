"""Turn MCP tool definitions into the OpenAI function-tool schemas sent to the model.

The reduction follows the Osmosis SDK (osmosis-compat.md §4) so that a repo's tools look the same
to the model as they do under `osmosis test` / `osmosis eval`: each parameter keeps only its type,
description and enum, which every OpenAI-compatible provider accepts. The parameter schema itself
comes from FastMCP and differs between versions (fastmcp 4.x adds per-parameter descriptions
parsed from the docstring and shortens the tool description to its summary line; 2.12.x keeps the
whole docstring and no parameter descriptions); types, enums and `required` are the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rollout_operator.runtime.errors import ToolValidationError

if TYPE_CHECKING:
    from fastmcp import FastMCP

TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SCHEMA_FIELDS = ("input_schema", "parameters", "inputSchema")  # mcp 2.x, fastmcp, mcp 1.x
_MAX_DEPTH = 32


def _field(tool: object, key: str) -> Any:
    if isinstance(tool, Mapping):
        return tool.get(key)
    return getattr(tool, key, None)


def _tool_fields(tool: object) -> tuple[str, str | None, Mapping[str, Any]]:
    name = _field(tool, "name")
    if not isinstance(name, str):
        raise ToolValidationError(f"Tool validation error: a tool has no name ({tool!r}).")
    description = _field(tool, "description")
    schema: Any = None
    for key in _SCHEMA_FIELDS:
        schema = _field(tool, key)
        if schema is not None:
            break
    if schema is None:
        schema = {}
    if not isinstance(schema, Mapping):
        raise ToolValidationError(
            f"Tool validation error: tool '{name}' has an input schema that is not a JSON object."
        )
    return name, description if isinstance(description, str) else None, schema


def _lookup_ref(ref: object, defs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Resolve a local `#/$defs/Name` (or `#/definitions/Name`) reference."""
    if not isinstance(ref, str):
        return None
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            key = ref[len(prefix) :].replace("~1", "/").replace("~0", "~")
            target = defs.get(key)
            return target if isinstance(target, Mapping) else None
    return None


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null"


def _flatten(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow `$ref` and take the first non-null `anyOf` branch; the outer keys win on conflict."""
    for _ in range(_MAX_DEPTH):
        if "$ref" in prop:
            target = _lookup_ref(prop["$ref"], defs)
            rest = {k: v for k, v in prop.items() if k != "$ref"}
            prop = {**target, **rest} if target is not None else rest
            continue
        branches = prop.get("anyOf")
        if isinstance(branches, list):
            rest = {k: v for k, v in prop.items() if k != "anyOf"}
            chosen = None
            for branch in branches:
                if isinstance(branch, Mapping) and not _is_null(_flatten(branch, defs)):
                    chosen = branch
                    break
            prop = {**chosen, **rest} if chosen is not None else rest
            continue
        return prop
    return prop


def _reduce_property(prop: object, defs: Mapping[str, Any]) -> dict[str, Any]:
    """Keep `type` (integer -> number, missing -> string), `description` and `enum`."""
    flat = _flatten(prop, defs) if isinstance(prop, Mapping) else {}
    kind = flat.get("type")
    if isinstance(kind, list):
        kind = next((entry for entry in kind if entry != "null"), None)
    if kind == "integer":
        kind = "number"
    if not isinstance(kind, str) or not kind:
        kind = "string"
    reduced: dict[str, Any] = {"type": kind}
    description = flat.get("description")
    if isinstance(description, str):
        reduced["description"] = description
    enum = flat.get("enum")
    if isinstance(enum, list):
        reduced["enum"] = list(enum)
    return reduced


def mcp_tool_to_openai(tool: object) -> dict[str, Any]:
    """An MCP tool (`mcp.types.Tool`, a fastmcp tool, or a dict of either) as an OpenAI tool."""
    name, description, schema = _tool_fields(tool)
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    properties = schema.get("properties")
    required = schema.get("required")
    schema_type = schema.get("type", "object")
    parameters: dict[str, Any] = {
        "type": schema_type,
        "properties": {
            str(key): _reduce_property(value, defs)
            for key, value in (properties.items() if isinstance(properties, Mapping) else ())
        },
        "required": [str(item) for item in required] if isinstance(required, list) else [],
    }
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description or f"Tool: {name}",
            "parameters": parameters,
            "strict": False,
        },
    }


def validate_openai_tool(schema: Mapping[str, Any]) -> None:
    """Raise `ToolValidationError` unless a model provider will accept this tool definition."""
    function = schema.get("function") if isinstance(schema, Mapping) else None
    if not isinstance(schema, Mapping) or schema.get("type") != "function":
        raise ToolValidationError(
            "Tool validation error: a tool must be {'type': 'function', 'function': {...}}, "
            f"got {schema!r}."
        )
    if not isinstance(function, Mapping):
        raise ToolValidationError("Tool validation error: the tool has no 'function' object.")
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
        suggestion = re.sub(r"\W", "_", name) if isinstance(name, str) else "my_tool"
        if suggestion[:1].isdigit():
            suggestion = "_" + suggestion
        raise ToolValidationError(
            f"Tool validation error: invalid tool name {name!r}: a name must match "
            f"{TOOL_NAME_PATTERN.pattern} (letters, digits and underscores, not starting with a "
            f"digit). Rename the tool, for example @mcp.tool(name={suggestion!r})."
        )
    parameters = function.get("parameters")
    if not isinstance(parameters, Mapping):
        raise ToolValidationError(
            f"Tool validation error: tool '{name}' has no parameters object; expected "
            "{'type': 'object', 'properties': {...}}."
        )
    if parameters.get("type") != "object":
        raise ToolValidationError(
            f"Tool validation error: tool '{name}' has parameters of type "
            f"{parameters.get('type')!r}; a tool's parameters must be a JSON object schema "
            "(type 'object'), so wrap them as named arguments."
        )
    if not isinstance(parameters.get("properties", {}), Mapping):
        raise ToolValidationError(
            f"Tool validation error: tool '{name}' has 'properties' that is not an object."
        )


async def list_mcp_tools(server: FastMCP) -> list[Any]:
    """The server's tools as an MCP client sees them (`mcp.types.Tool`), via fastmcp's public
    in-memory `Client`, which behaves the same on fastmcp 2.12.x and 4.x."""
    from fastmcp import Client

    async with Client(server) as client:
        return list(await client.list_tools())


async def list_openai_tools(server: FastMCP) -> list[dict[str, Any]]:
    """Every tool of a loaded FastMCP server, converted and validated (`ToolValidationError`)."""
    schemas = [mcp_tool_to_openai(tool) for tool in await list_mcp_tools(server)]
    for schema in schemas:
        validate_openai_tool(schema)
    return schemas
