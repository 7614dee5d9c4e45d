"""`rolloutctl test -i`: step through one dataset row at a time, pausing after each model reply.

Behaviour follows `osmosis test --interactive` (osmosis-compat.md 3.3): `--row N` runs row N
first, then rows are chosen at a prompt by absolute index. After each model reply, before its
tool calls run, the session waits for a command: `n`/Enter steps, `c` runs the row to its end,
`m` shows the conversation so far, `t` lists the tools, `q` aborts the row ("Aborted by user")
and returns to row selection. Rows are read by streaming to the chosen index, so a large dataset
is never loaded whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from rollout_operator.runtime.agent_loop import AgentObserver
from rollout_operator.runtime.errors import LocalExecutionError
from rollout_operator.runtime.interfaces import (
    ChatModel,
    ChatResult,
    Message,
    ToolOutput,
    ToolSchema,
)

if TYPE_CHECKING:
    from rollout_operator.runtime.dataset import DatasetRow
    from rollout_operator.runtime.rollout import RolloutRunner

COMMANDS_HINT = "Commands: [n]ext, [c]ontinue, [m]essages, [t]ools, [q]uit"
ABORTED = "Aborted by user"

_NEXT = ("n", "next", "")
_CONTINUE = ("c", "continue")
_MESSAGES = ("m", "messages")
_TOOLS = ("t", "tools")
_QUIT = ("q", "quit", "exit")

_ROLE_STYLES = {"system": "magenta", "user": "green", "assistant": "blue", "tool": "cyan"}


class RowAborted(Exception):
    """The user chose `q` at a pause; raised out of the agent loop to stop the row."""


class SessionView:
    """Prints rows, turns and results, and reads the user's answers."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)

    def ask(self, prompt: str) -> str | None:
        """One line of input, lower-cased and stripped; None at end of input or on Ctrl-C."""
        try:
            return self.console.input(Text(prompt, style="bold")).strip().lower()
        except (EOFError, KeyboardInterrupt):
            self.console.print()
            return None

    def rule(self, title: str) -> None:
        self.console.print(Rule(Text(title), style="dim"))

    def note(self, text: str, style: str = "dim") -> None:
        self.console.print(Text(text, style=style))

    def message(self, message: Message, index: int | None = None) -> None:
        role = str(message.get("role", "unknown"))
        label = "Tool" if role == "tool" else role.capitalize()
        if role == "tool" and message.get("tool_call_id"):
            label = f"Tool ({message['tool_call_id']})"
        line = Text()
        if index is not None:
            line.append(f"[{index}] ", style="dim")
        line.append(f"[{label}]", style=_ROLE_STYLES.get(role, "default"))
        content = message.get("content")
        if content is not None:
            line.append(" ")
            line.append(content if isinstance(content, str) else json.dumps(content))
        self.console.print(line)
        calls = message.get("tool_calls") or []
        if calls:
            self.console.print(Text("Tool calls:", style="yellow"))
            for call in calls:
                self.console.print(_call_text(call))

    def messages(self, title: str, messages: Sequence[Message], indexed: bool) -> None:
        self.rule(title)
        for i, message in enumerate(messages):
            self.message(message, i if indexed else None)
        self.console.print()

    def tools(self, tools: Sequence[ToolSchema]) -> None:
        self.rule("Available Tools")
        if not tools:
            self.note("(no tools)")
        for tool in tools:
            function = tool.get("function") or {}
            line = Text("  • ")
            line.append(str(function.get("name", "?")), style="cyan")
            self.console.print(line)
            if function.get("description"):
                self.console.print(Text(f"    {function['description']}", style="dim"))
            properties = (function.get("parameters") or {}).get("properties") or {}
            if properties:
                self.console.print(Text(f"    Parameters: {', '.join(properties)}"))
        self.console.print()

    def turn(self, turn: int, result: ChatResult) -> None:
        self.rule(f"Turn {turn}: LLM Response")
        self.message(result.message)
        if result.finish_reason and result.finish_reason != "tool_calls":
            self.note(f"Finish reason: {result.finish_reason}")
        self.console.print()

    def tool_result(self, call_id: str, name: str, output: ToolOutput) -> None:
        line = Text("Tool result ", style="cyan")
        line.append(f"{name or '?'} ({call_id})", style="cyan")
        line.append(": ")
        line.append(output.content, style="red" if output.is_error else "default")
        self.console.print(line)

    def commands_help(self, answer: str) -> None:
        self.note(f"Unknown command: {answer}", style="red")
        for line in (
            "  n/next/Enter - run the tool calls and go to the next model reply",
            "  c/continue   - run this row to its end without pausing",
            "  m/messages   - show every message so far, with its index",
            "  t/tools      - show the available tools",
            "  q/quit/exit  - abort this row",
        ):
            self.console.print(Text(line))

    def result(
        self,
        status: str,
        reward: float | None,
        finish_reason: str | None,
        duration_s: float,
        tokens: int,
        llm_calls: int,
        error: str | None,
    ) -> None:
        self.rule("Result")
        ok = status == "COMPLETED"
        self.console.print(Text(f"Status: {status}", style="green" if ok else "red"))
        if error:
            self.console.print(Text(f"Error: {error}", style="red" if not ok else "yellow"))
        self.console.print(Text(f"Reward: {'null' if reward is None else reward}"))
        if finish_reason:
            self.console.print(Text(f"Finish reason: {finish_reason}"))
        self.console.print(Text(f"Duration: {duration_s:.2f}s"))
        self.console.print(Text(f"Tokens: {tokens:,} ({llm_calls} LLM calls)"))
        self.console.print()


def _call_text(call: dict[str, Any]) -> Text:
    function = call.get("function") or {}
    raw = function.get("arguments")
    try:
        arguments = json.dumps(json.loads(raw) if isinstance(raw, str) else raw)
    except (json.JSONDecodeError, TypeError):
        arguments = str(raw)
    line = Text("  • ")
    line.append(str(function.get("name", "?")), style="cyan")
    line.append(f"({arguments})")
    if call.get("id"):
        line.append(f"  [{call['id']}]", style="dim")
    return line


class StepObserver(AgentObserver):
    """Shows each model reply and tool result, and pauses for a command after each reply."""

    def __init__(self, view: SessionView, tools: Sequence[ToolSchema]) -> None:
        self.view = view
        self.tools = tools
        self.auto = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.llm_calls = 0

    async def on_llm_response(self, turn: int, result: ChatResult, messages: list[Message]) -> None:
        self.llm_calls += 1
        self.prompt_tokens += result.usage.prompt_tokens
        self.completion_tokens += result.usage.completion_tokens
        self.view.turn(turn, result)
        if self.auto:
            return
        while True:
            self.view.note(COMMANDS_HINT)
            answer = self.view.ask("> ")
            if answer is None or answer in _QUIT:
                self.view.note("Aborting row...", style="yellow")
                raise RowAborted(ABORTED)
            if answer in _NEXT:
                return
            if answer in _CONTINUE:
                self.auto = True
                self.view.note("Continuing to the end of the row...")
                return
            if answer in _MESSAGES:
                self.view.messages("All Messages", messages, indexed=True)
            elif answer in _TOOLS:
                self.view.tools(self.tools)
            else:
                self.view.commands_help(answer)

    async def on_tool_result(self, call_id: str, name: str, output: ToolOutput) -> None:
        self.view.tool_result(call_id, name, output)


def window_bounds(dataset: str, offset: int, limit: int | None) -> tuple[int, int]:
    """First and last absolute row index of the window; last < first when it is empty."""
    from rollout_operator.runtime.dataset import count_rows

    available = max(count_rows(dataset) - offset, 0)
    size = available if limit is None else min(available, limit)
    return offset, offset + size - 1


def read_row(dataset: str, row_index: int) -> DatasetRow:
    """The validated row at an absolute index, read by streaming up to it."""
    from rollout_operator.runtime.dataset import iter_rows

    for row in iter_rows(dataset, offset=row_index, limit=1):
        return row
    raise LookupError(f"Row {row_index} is not in {dataset}")


async def run_interactive(
    chat: ChatModel,
    mcp_dir: Path,
    dataset: str,
    offset: int,
    limit: int | None,
    max_turns: int,
    params: dict[str, Any],
    first_row: int | None,
) -> None:
    """The interactive session: `first_row` (if given) first, then rows chosen at a prompt."""
    from rollout_operator.cli.agent_setup import check_model, load_tools
    from rollout_operator.runtime.agent_loop import AgentConfig
    from rollout_operator.runtime.rollout import RolloutRunner

    view = SessionView()
    try:
        tools = await load_tools(mcp_dir)
        await check_model(chat)
        runner = RolloutRunner(
            llm=chat,
            tools=tools.provider,
            tool_schemas=tools.schemas,
            config=AgentConfig(max_turns=max_turns, completion_params=params),
            fastmcp_version=tools.fastmcp_version,
        )
        first, last = window_bounds(dataset, offset, limit)
        if last < first:
            view.note("No rows available to test.", style="red")
            return
        span = f"{first}-{last}"
        if first_row is not None:
            if first <= first_row <= last:
                await _run_row(runner, view, dataset, first_row)
            else:
                view.note(f"Invalid row index: {first_row}. Valid range: {span}", style="red")
        while True:
            view.console.print()
            view.console.print(Text(f"Select a row to test [{span}] or 'q' to quit:"))
            answer = view.ask("> ")
            if answer is None or answer in _QUIT:
                break
            try:
                index = int(answer)
            except ValueError:
                view.note("Please enter a valid row number or 'q' to quit.", style="red")
                continue
            if not first <= index <= last:
                view.note(f"Invalid row index. Valid range: {span}", style="red")
                continue
            await _run_row(runner, view, dataset, index)
        view.note("Interactive session ended.")
    finally:
        await chat.aclose()


async def _run_row(runner: RolloutRunner, view: SessionView, dataset: str, row_index: int) -> None:
    from rollout_operator.runtime.rollout import WorkItem

    view.rule(f"Row {row_index}")
    start = time.monotonic()
    observer = StepObserver(view, runner.tool_schemas)
    try:
        row = read_row(dataset, row_index)
        view.messages("Initial Messages", row.messages(), indexed=False)
        view.tools(runner.tool_schemas)
        record = await runner.run(WorkItem(f"test-{row_index}", row), observer)
    except RowAborted:
        _show_unfinished(view, observer, start, ABORTED)
        return
    except (LocalExecutionError, LookupError) as exc:
        # A failed model endpoint or an unreadable row ends this row only: the user may pick
        # another row, or quit and fix the endpoint.
        _show_unfinished(view, observer, start, str(exc))
        return
    error = None if record.error is None else record.error.message
    view.result(
        status=record.status.upper(),
        reward=record.reward,
        finish_reason=record.finish_reason,
        duration_s=time.monotonic() - start,
        tokens=record.usage.total_tokens,
        llm_calls=record.usage.num_llm_calls,
        error=error,
    )


def _show_unfinished(view: SessionView, observer: StepObserver, start: float, error: str) -> None:
    view.result(
        status="ERROR",
        reward=None,
        finish_reason=None,
        duration_s=time.monotonic() - start,
        tokens=observer.prompt_tokens + observer.completion_tokens,
        llm_calls=observer.llm_calls,
        error=error,
    )
