"""The agent loop with outage gates: a tool server or model endpoint that is down mid-rollout is
waited out and the call sent again; the rollout completes, with nothing masked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from rollout_operator.runtime.agent_loop import AgentConfig, run_agent_loop
from rollout_operator.runtime.models import make_chat_model
from rollout_operator.runtime.outage import OutageGate
from rollout_operator.runtime.tools import HttpTools
from tests.support.fault_proxy import FaultProxy
from tests.support.scripted_model import ScriptedModelServer
from tests.support.tool_table import ToolTableProcess

GREET_B = json.dumps({"message": {"role": "assistant", "content": "", "tool_calls": [
    {"id": "c1", "type": "function",
     "function": {"name": "greet", "arguments": json.dumps({"name": "B"})}}]},
    "finish_reason": "tool_calls"})


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not come true within a minute")


def gate(what: str) -> OutageGate:
    return OutageGate(what, 120, base_delay_s=0.05, max_delay_s=0.2)


async def test_a_tool_server_down_mid_rollout_is_waited_out_and_the_call_sent_again(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    server = ToolTableProcess(tmp_path / "server.log")
    server.start()
    tools = HttpTools(server.url)
    chat = make_chat_model("scripted:reply-json", base_url=scripted_model.base_url)
    tool_gate = gate("tool server")
    try:
        schemas = await tools.list_tools()
        server.stop()
        async with tools.session() as session:
            loop = asyncio.create_task(run_agent_loop(
                [{"role": "user", "content": GREET_B}], chat, schemas, session,
                AgentConfig(max_turns=1, rollout_timeout_s=60, tool_gate=tool_gate)))
            await until(lambda: tool_gate.down)
            await asyncio.to_thread(server.start)
            result = await loop
    finally:
        await chat.aclose()
        await tools.aclose()
        server.stop()
    assert result.completed and result.sandbox_errors == 0
    assert result.messages[-1] == {"role": "tool", "content": "Hello, B!", "tool_call_id": "c1"}
    assert tool_gate.outages == 1 and tool_gate.waited_s > 0


async def test_a_model_endpoint_down_mid_rollout_is_waited_out_past_the_deadline(
        scripted_model: ScriptedModelServer) -> None:
    """The rollout's deadline (2 s) is shorter than the outage: the wait is not counted."""
    port = int(scripted_model.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    with FaultProxy(port) as proxy:
        chat = make_chat_model("scripted", base_url=f"{proxy.endpoint}/v1")
        model_gate = gate("model endpoint")
        model_gate.probe = getattr(chat, "reachable", None)
        proxy.outage = "reset"
        try:
            loop = asyncio.create_task(run_agent_loop(
                [{"role": "user", "content": "Say hello."}], chat, [],
                _NoTools(), AgentConfig(rollout_timeout_s=2, model_gate=model_gate)))
            await until(lambda: model_gate.down and proxy.refused >= 3)
            await asyncio.sleep(2)  # past the rollout's deadline
            proxy.outage = None
            result = await loop
        finally:
            await chat.aclose()
    assert result.completed, result.error
    assert result.finish_reason == "stop"
    assert model_gate.outages == 1 and model_gate.waited_s > 2


class _NoTools:
    """A tool session for a rollout that calls no tool."""

    async def call(self, name: str, arguments: dict[str, object],
                   timeout: float | None) -> object:  # noqa: ASYNC109
        raise AssertionError(f"no tool call expected, got {name}")
