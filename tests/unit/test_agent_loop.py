"""The agent loop with the real calculator tools and a scripted model over HTTP (checks 11-13)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import FastMCP

from rollout_operator.runtime.agent_loop import AgentConfig, parse_tool_call, run_agent_loop
from rollout_operator.runtime.interfaces import ChatModel, ChatResult, ToolProvider
from rollout_operator.runtime.models import make_chat_model
from rollout_operator.runtime.repo_loader import load_mcp_server
from rollout_operator.runtime.tools import make_tool_provider
from tests.support.scripted_model import ScriptedModelServer

EXAMPLE_MCP = Path(__file__).resolve().parents[2] / "examples" / "calculator" / "mcp"
SYSTEM = {"role": "system", "content": "You are a calculator assistant."}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def calculator() -> FastMCP:
    return load_mcp_server(EXAMPLE_MCP)


@pytest.fixture
async def tools(calculator: FastMCP) -> AsyncIterator[ToolProvider]:
    provider = make_tool_provider(calculator)
    yield provider
    await provider.aclose()


@pytest.fixture
async def model_factory(scripted_model: ScriptedModelServer) -> AsyncIterator[Any]:
    made: list[ChatModel] = []

    def make(name: str = "scripted", timeout: float | None = None) -> ChatModel:
        chat = make_chat_model(name, base_url=scripted_model.base_url, request_timeout=timeout)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        await chat.aclose()


async def test_tool_call_then_answer(model_factory: Any, tools: ToolProvider) -> None:
    schemas = await tools.list_tools()
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 12 * 8?")], model_factory(), schemas, session, AgentConfig()
        )
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = result.messages[2]["tool_calls"][0]
    assert call["function"]["name"] == "multiply"
    assert result.messages[3] == {"role": "tool", "content": "96.0", "tool_call_id": call["id"]}
    assert result.messages[4]["content"].endswith("#### 96.0")
    assert result.finish_reason == "stop"
    assert result.error is None
    assert (result.num_llm_calls, result.num_tool_calls) == (2, 1)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0


async def test_tool_errors_become_messages_and_loop_goes_on(
    model_factory: Any, tools: ToolProvider
) -> None:
    schemas = await tools.list_tools()
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 12 * 8?")], model_factory("scripted:bad-tools"), schemas,
            session, AgentConfig(),
        )
    tool_messages = [m for m in result.messages if m["role"] == "tool"]
    assert tool_messages[0]["content"] == "96.0"
    unknown, bad_json = tool_messages[1]["content"], tool_messages[2]["content"]
    assert unknown.startswith("Error: ") and "divide" in unknown
    assert bad_json.startswith("Error: Invalid JSON arguments: Expecting value")
    assert result.finish_reason == "stop" and result.num_tool_calls == 3
    assert result.messages[-1]["role"] == "assistant"


async def test_max_turns_completes_with_tool_message_last(
    model_factory: Any, tools: ToolProvider
) -> None:
    schemas = await tools.list_tools()
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 2 * 3?")], model_factory("scripted:always-tool"), schemas,
            session, AgentConfig(max_turns=1),
        )
    assert result.num_llm_calls == 1
    assert result.finish_reason == "max_turns"
    assert result.error is None
    assert result.messages[-1]["role"] == "tool"


async def test_transient_errors_are_retried(model_factory: Any, tools: ToolProvider) -> None:
    schemas = await tools.list_tools()
    config = AgentConfig(backoff_base_s=0.01, max_retries=3)
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 3 * 3?")], model_factory("scripted:fail-every-2"), schemas,
            session, config,
        )
    assert result.error is None, result.error
    assert result.messages[-1]["content"].endswith("#### 9.0")


async def test_persistent_5xx_is_an_inference_failure(
    model_factory: Any, tools: ToolProvider
) -> None:
    config = AgentConfig(backoff_base_s=0.01, max_retries=2)
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 3 * 3?")], model_factory("scripted:status-500"),
            await tools.list_tools(), session, config,
        )
    assert result.error is not None and result.error.category == "inference"
    assert result.finish_reason == "error"
    assert result.num_llm_calls == 1


async def test_deadline_bounds_a_hanging_model(model_factory: Any, tools: ToolProvider) -> None:
    """A model that never answers is the endpoint's failure (masked), not the policy's."""
    config = AgentConfig(rollout_timeout_s=0.3)
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 3 * 3?")], model_factory("scripted:sleep-5000"),
            await tools.list_tools(), session, config,
        )
    assert result.finish_reason == "timeout"
    assert result.error is not None and result.error.category == "inference"
    assert "did not answer within the rollout deadline of 0.3s" in result.error.message
    assert result.total_ms < 2000


async def test_model_hanging_on_a_later_turn_is_still_the_model(tools: ToolProvider) -> None:
    """The first turn is answered at once, the call after the tool result never is."""
    config = AgentConfig(rollout_timeout_s=0.5)
    calls = 0

    class HangsAfterFirst:
        model = "hangs-after-first"

        async def chat(self, messages: Any, tools: Any = None, **params: Any) -> ChatResult:
            nonlocal calls
            calls += 1
            if calls > 1:
                await asyncio.sleep(5)
            call = {"id": "c1", "type": "function",
                    "function": {"name": "add", "arguments": '{"first_val": 1, "second_val": 2}'}}
            return ChatResult({"role": "assistant", "tool_calls": [call]}, "tool_calls")

    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 1 + 2?")], HangsAfterFirst(), await tools.list_tools(),
            session, config,
        )
    assert calls == 2 and result.num_tool_calls == 1
    assert result.error is not None and result.error.category == "inference"


@pytest.fixture
async def slow_tools() -> AsyncIterator[ToolProvider]:
    server = FastMCP("slow")

    @server.tool
    async def multiply(first_val: float, second_val: float) -> float:
        """Multiply, slowly."""
        await asyncio.sleep(0.4)
        return first_val * second_val

    provider = make_tool_provider(server)
    yield provider
    await provider.aclose()


async def test_slow_tools_time_the_rollout_out(
    model_factory: Any, slow_tools: ToolProvider
) -> None:
    """The model answers at once; the tool calls eat the deadline: the policy's rollout timed
    out, whether the deadline passes in a tool call or in the model call after it."""
    for deadline in (0.3, 0.5, 0.7, 0.9):
        config = AgentConfig(rollout_timeout_s=deadline, max_turns=10)
        async with slow_tools.session() as session:
            result = await run_agent_loop(
                [SYSTEM, _user("What is 3 * 3?")], model_factory("scripted:always-tool"),
                await slow_tools.list_tools(), session, config,
            )
        assert result.finish_reason == "timeout", deadline
        assert result.error is not None and result.error.category == "timeout", deadline
        assert result.error.message == f"Rollout exceeded its deadline of {deadline}s"


async def test_many_turns_time_the_rollout_out(model_factory: Any, tools: ToolProvider) -> None:
    """Every model call answers in 0.3 s, but a rollout of 10 turns does not fit in 1 s: the
    call in flight at the deadline started late, so the loop is to blame, not the model."""
    config = AgentConfig(rollout_timeout_s=1.0, max_turns=10)
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 3 * 3?")], model_factory("scripted:always-tool:sleep-300"),
            await tools.list_tools(), session, config,
        )
    assert result.num_llm_calls >= 3
    assert result.error is not None and result.error.category == "timeout"


async def test_logprobs_are_kept_per_turn(model_factory: Any, tools: ToolProvider) -> None:
    async with tools.session() as session:
        result = await run_agent_loop(
            [SYSTEM, _user("What is 4 * 4?")], model_factory("scripted:logprobs"),
            await tools.list_tools(), session, AgentConfig(),
        )
    assert len(result.turns) == 2
    assert all(t.token_ids and t.logprobs and len(t.token_ids) == len(t.logprobs)
               for t in result.turns)
    # Each turn's tokens point at the assistant message they produced.
    indexes = [t.message_index for t in result.turns]
    assert indexes == [i for i, m in enumerate(result.messages) if m["role"] == "assistant"]
    assert result.messages[indexes[0]].get("tool_calls")
    assert "####" in str(result.messages[indexes[1]]["content"])


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"id": "a", "function": {"name": "f", "arguments": '{"x": 1}'}}, ("a", "f", {"x": 1})),
        ({"id": "b", "function": {"name": "f", "arguments": {"x": 2}}}, ("b", "f", {"x": 2})),
        ({"id": "c", "function": {"name": "f", "arguments": ""}}, ("c", "f", {})),
    ],
)
def test_parse_tool_call(call: dict[str, Any], expected: tuple[str, str, dict[str, Any]]) -> None:
    assert parse_tool_call(call) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [("not json", "Invalid JSON arguments"), (json.dumps([1, 2]), "must be a JSON object")],
)
def test_parse_tool_call_rejects(arguments: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tool_call({"id": "x", "function": {"name": "f", "arguments": arguments}})
