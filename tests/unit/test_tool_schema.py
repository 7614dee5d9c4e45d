"""MCP tool -> OpenAI function schema: osmosis-compat.md §4 "Conversion", check 10."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import mcp.types
import pytest
from fastmcp import FastMCP
from fastmcp.tools import Tool

from rollout_operator.runtime.errors import ToolValidationError
from rollout_operator.runtime.repo_loader import load_mcp_server
from rollout_operator.runtime.tool_schema import (
    list_openai_tools,
    mcp_tool_to_openai,
    validate_openai_tool,
)

CALCULATOR_MCP = Path(__file__).resolve().parents[2] / "examples" / "calculator" / "mcp"


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


def _without_descriptions(parameters: dict[str, Any]) -> dict[str, Any]:
    """The version-independent part of a converted parameter schema.

    fastmcp 4.x parses per-parameter descriptions out of the docstring; 2.12.x does not. Types,
    enums and `required` are the same in both.
    """
    properties = {
        name: {k: v for k, v in prop.items() if k != "description"}
        for name, prop in parameters["properties"].items()
    }
    return {**parameters, "properties": properties}


def _by_name(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {tool["function"]["name"]: tool["function"] for tool in tools}


async def test_calculator_multiply_converts_as_the_contract_says() -> None:
    tools = _by_name(await list_openai_tools(load_mcp_server(CALCULATOR_MCP)))
    multiply = tools["multiply"]
    assert _without_descriptions(multiply["parameters"]) == {
        "type": "object",
        "properties": {"first_val": {"type": "number"}, "second_val": {"type": "number"}},
        "required": ["first_val", "second_val"],
    }
    assert multiply["strict"] is False
    # 2.12.x sends the whole docstring, 4.x its summary line: both start with it.
    assert multiply["description"].startswith("Calculate the product of two numbers")
    # Parameter descriptions, where the version provides them, are plain strings.
    for prop in multiply["parameters"]["properties"].values():
        assert set(prop) <= {"type", "description"}


async def test_parameter_types_are_reduced_for_every_provider() -> None:
    server = FastMCP("Types")

    @server.tool
    def pick(
        count: int,
        label: str | None = None,
        colour: Colour = Colour.RED,
        mode: Literal["fast", "slow"] = "fast",
        maybe_colour: Colour | None = None,
        tags: list[int] | None = None,
    ) -> str:
        return "ok"

    @server.tool
    def undocumented() -> str:
        return "ok"

    tools = _by_name(await list_openai_tools(server))
    properties = tools["pick"]["parameters"]["properties"]
    assert properties == {
        "count": {"type": "number"},
        "label": {"type": "string"},
        "colour": {"type": "string", "enum": ["red", "green"]},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "maybe_colour": {"type": "string", "enum": ["red", "green"]},
        "tags": {"type": "array"},
    }
    assert tools["pick"]["parameters"]["required"] == ["count"]
    assert tools["undocumented"]["description"] == "Tool: undocumented"
    assert tools["undocumented"]["parameters"] == {
        "type": "object",
        "properties": {},
        "required": [],
    }


async def test_a_tool_named_bad_name_is_rejected() -> None:
    server = FastMCP("Bad")

    @server.tool(name="bad-name")
    def bad() -> str:
        return "x"

    with pytest.raises(ToolValidationError, match=r"^Tool validation error: .*'bad-name'"):
        await list_openai_tools(server)


def test_refs_any_of_and_list_types_from_a_raw_schema() -> None:
    # fastmcp 4.x inlines $defs; other servers (and older versions) send references.
    schema = {
        "type": "object",
        "$defs": {
            "Colour": {"type": "string", "enum": ["red", "green"], "title": "Colour"},
            "Size": {"type": "integer", "description": "from the definition"},
        },
        "properties": {
            "colour": {"$ref": "#/$defs/Colour", "description": "outer wins"},
            "size": {"$ref": "#/$defs/Size"},
            "nullable_first": {"anyOf": [{"type": "null"}, {"type": "integer"}], "default": None},
            "optional_ref": {"anyOf": [{"$ref": "#/$defs/Colour"}, {"type": "null"}]},
            "list_type": {"type": ["null", "boolean"]},
            "untyped": {"description": "anything"},
            "nested": {
                "type": "object",
                "properties": {"x": {"type": "string"}},
                "additionalProperties": False,
            },
            "items": {"type": "array", "items": {"type": "string"}, "default": []},
            "dangling": {"$ref": "#/$defs/Missing"},
        },
        "required": ["colour"],
    }
    tool = mcp.types.Tool.model_validate(
        {"name": "raw", "description": "Raw schema.", "inputSchema": schema}
    )
    converted = mcp_tool_to_openai(tool)
    assert converted == {
        "type": "function",
        "function": {
            "name": "raw",
            "description": "Raw schema.",
            "parameters": {
                "type": "object",
                "properties": {
                    "colour": {
                        "type": "string",
                        "description": "outer wins",
                        "enum": ["red", "green"],
                    },
                    "size": {"type": "number", "description": "from the definition"},
                    "nullable_first": {"type": "number"},
                    "optional_ref": {"type": "string", "enum": ["red", "green"]},
                    "list_type": {"type": "boolean"},
                    "untyped": {"type": "string", "description": "anything"},
                    "nested": {"type": "object"},
                    "items": {"type": "array"},
                    "dangling": {"type": "string"},
                },
                "required": ["colour"],
            },
            "strict": False,
        },
    }
    validate_openai_tool(converted)


def test_fastmcp_tool_objects_and_dicts_are_accepted() -> None:
    def scale(value: int, factor: float = 2.0) -> float:
        return value * factor

    from_fastmcp = mcp_tool_to_openai(Tool.from_function(scale))
    from_dict = mcp_tool_to_openai(
        {
            "name": "scale",
            "inputSchema": {"type": "object", "properties": {"value": {"type": "integer"}}},
        }
    )
    assert from_fastmcp["function"]["parameters"]["properties"] == {
        "value": {"type": "number"},
        "factor": {"type": "number"},
    }
    assert from_fastmcp["function"]["parameters"]["required"] == ["value"]
    assert from_dict["function"]["description"] == "Tool: scale"
    assert from_dict["function"]["parameters"] == {
        "type": "object",
        "properties": {"value": {"type": "number"}},
        "required": [],
    }


def test_a_tool_without_a_name_is_a_validation_error() -> None:
    with pytest.raises(ToolValidationError, match="has no name"):
        mcp_tool_to_openai({"description": "nameless"})


def _tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": "d",
            "parameters": parameters or {"type": "object", "properties": {}, "required": []},
            "strict": False,
        },
    }


@pytest.mark.parametrize("name", ["multiply", "_private", "Tool2", "a"])
def test_valid_names_pass(name: str) -> None:
    validate_openai_tool(_tool(name))


@pytest.mark.parametrize("name", ["bad-name", "1st", "has space", "dotted.name", ""])
def test_invalid_names_say_how_to_fix_them(name: str) -> None:
    with pytest.raises(ToolValidationError) as caught:
        validate_openai_tool(_tool(name))
    message = str(caught.value)
    assert message.startswith(f"Tool validation error: invalid tool name {name!r}")
    assert "^[a-zA-Z_][a-zA-Z0-9_]*$" in message and "Rename the tool" in message


def test_parameters_must_be_an_object_schema() -> None:
    with pytest.raises(ToolValidationError, match="parameters of type 'array'"):
        validate_openai_tool(_tool("listy", {"type": "array", "items": {"type": "string"}}))
    converted = mcp_tool_to_openai({"name": "listy", "inputSchema": {"type": "array"}})
    with pytest.raises(ToolValidationError, match="must be a JSON object schema"):
        validate_openai_tool(converted)


def test_not_a_function_tool() -> None:
    with pytest.raises(ToolValidationError, match="must be"):
        validate_openai_tool({"type": "retrieval"})
