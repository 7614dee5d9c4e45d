"""What `test` and `eval` share before the first row: the model, the tools and the flag checks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rollout_operator.runtime.errors import LocalExecutionError
from rollout_operator.runtime.interfaces import ChatModel, ToolProvider, ToolSchema

MODULE_NOT_SUPPORTED = (
    "--module agent loops (RolloutAgentLoop classes) are not supported yet; "
    "serve your tools from an mcp/ folder and pass --mcp DIR."
)


class SetupError(click.ClickException):
    """A problem found before any row runs; printed as `Error: ...`, exit code 1."""

    exit_code = 1


def check_agent_source(module: str | None, mcp: str | None) -> Path:
    if module and mcp:
        raise SetupError("--module and --mcp are mutually exclusive.")
    if not module and not mcp:
        raise SetupError("Either --module (-m) or --mcp is required.")
    if module:
        raise SetupError(MODULE_NOT_SUPPORTED)
    assert mcp is not None
    return Path(mcp)


def completion_params(temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    """Only the sampling flags that were set are sent, as upstream does."""
    params: dict[str, Any] = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    return params


def build_model(
    model: str, base_url: str | None, api_key: str | None, request_timeout: float | None = None
) -> ChatModel:
    """Resolve the model name, check for an API key, and build the client (no request yet)."""
    from rollout_operator.runtime.models import check_api_key, make_chat_model, resolve_model

    try:
        resolved = resolve_model(model, base_url)
        check_api_key(resolved, api_key, base_url, os.environ)
    except LocalExecutionError as exc:
        raise SetupError(str(exc)) from None
    return make_chat_model(
        model, base_url=base_url, api_key=api_key, request_timeout=request_timeout
    )


async def check_model(chat: ChatModel) -> None:
    """The one-token preflight: stop before any row when the endpoint cannot work at all."""
    from rollout_operator.runtime.errors import SystemicProviderError
    from rollout_operator.runtime.models import preflight

    try:
        await preflight(chat)
    except SystemicProviderError as exc:
        raise SetupError(f"Model check failed: {exc}") from None


@dataclass(slots=True)
class LoadedTools:
    provider: ToolProvider
    schemas: list[ToolSchema]
    fastmcp_version: str


async def load_tools(mcp_dir: Path, max_result_chars: int | None = None) -> LoadedTools:
    """Import `mcp/main.py` in this process and serve its tools without protocol framing."""
    import fastmcp

    from rollout_operator.runtime.repo_loader import load_mcp_server
    from rollout_operator.runtime.tools import make_tool_provider

    try:
        server = load_mcp_server(mcp_dir)
        provider = make_tool_provider(server, lean=True, max_result_chars=max_result_chars)
        schemas = await provider.list_tools()
    except LocalExecutionError as exc:
        raise SetupError(str(exc)) from None
    return LoadedTools(provider, schemas, fastmcp.__version__)


def check_dataset(path: str, offset: int, limit: int | None) -> int:
    """Validate the whole row window up front, as upstream does; returns the row count."""
    from rollout_operator.runtime.dataset import validate_dataset

    try:
        return validate_dataset(path, offset=offset, limit=limit)
    except (LocalExecutionError, FileNotFoundError) as exc:
        raise SetupError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one bad tool, scorer or model reply from stalling a batch."""

    tool_timeout_s: float | None
    rollout_timeout_s: float | None
    score_timeout_s: float | None
    tool_result_chars: int | None

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> Limits:
        def positive(value: float | None) -> float | None:
            return value if value else None  # 0 turns a limit off

        chars = flags["tool_result_limit"]
        return cls(
            tool_timeout_s=positive(flags["tool_timeout"]),
            rollout_timeout_s=positive(flags["rollout_timeout"]),
            score_timeout_s=positive(flags["score_timeout"]),
            tool_result_chars=int(chars) if chars else None,
        )

    def agent_config(self, max_turns: int, params: dict[str, Any]) -> Any:
        from rollout_operator.runtime.agent_loop import AgentConfig

        return AgentConfig(
            max_turns=max_turns,
            completion_params=params,
            tool_timeout_s=self.tool_timeout_s,
            rollout_timeout_s=self.rollout_timeout_s,
        )


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The timeout and size flags `test` and `eval` share (0 turns a limit off)."""
    options = [
        click.option("--tool-timeout", type=click.FloatRange(min=0), default=60.0,
                     show_default=True, help="Seconds one tool call may take."),
        click.option("--rollout-timeout", type=click.FloatRange(min=0), default=450.0,
                     show_default=True, help="Seconds one rollout (all its turns) may take."),
        click.option("--score-timeout", type=click.FloatRange(min=0), default=150.0,
                     show_default=True, help="Seconds one eval function may take."),
        click.option("--tool-result-limit", type=click.IntRange(min=0), default=100_000,
                     show_default=True, help="Characters of a tool result kept; longer ones are "
                     "cut with a marker."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
