"""`rolloutctl test`: run each dataset row through the agent loop once, without scoring.

Flags, messages, output file and exit codes follow `osmosis test` (osmosis-compat.md 3.3).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rollout_operator.cli import eval_console
from rollout_operator.cli.agent_setup import (
    Limits,
    SetupError,
    build_model,
    check_agent_source,
    check_dataset,
    check_model,
    completion_params,
    limit_options,
    load_tools,
)
from rollout_operator.cli.progress import BatchProgress, format_duration
from rollout_operator.runtime.agent_loop import AgentConfig
from rollout_operator.runtime.errors import SystemicProviderError


@click.command("test")
@click.option("-m", "--module", "--agent", "module", default=None,
              help="Agent loop as module:attr (not supported yet: use --mcp).")
@click.option("--mcp", default=None, help="Directory with main.py defining a FastMCP server.")
@click.option("-d", "--dataset", required=True, help="Dataset file (.jsonl, .csv or .parquet).")
@click.option("--model", default="gpt-5-mini", show_default=True,
              help="LiteLLM model name, or the served model name with --base-url.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Run at most N rows.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip the first N rows.")
@click.option("--api-key", default=None, help="API key for the model provider.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint (vLLM, SGLang, ...).")
@click.option("--max-turns", type=click.IntRange(min=1), default=10, show_default=True,
              help="Model calls per row.")
@click.option("--max-tokens", type=int, default=None, help="max_tokens per model call.")
@click.option("--temperature", type=float, default=None, help="Sampling temperature.")
@click.option("--debug", is_flag=True, help="Debug logging.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write results as JSON to this file.")
@limit_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@click.option("-i", "--interactive", is_flag=True, help="Step through each row turn by turn.")
@click.option("--row", type=click.IntRange(min=0), default=None,
              help="First row to run in interactive mode (absolute index).")
def test_command(
    module: str | None,
    mcp: str | None,
    dataset: str,
    model: str,
    limit: int | None,
    offset: int,
    api_key: str | None,
    base_url: str | None,
    max_turns: int,
    max_tokens: int | None,
    temperature: float | None,
    debug: bool,
    output: str | None,
    quiet: bool,
    interactive: bool,
    row: int | None,
    **limit_flags: Any,
) -> None:
    """Run dataset rows through the agent loop and report which complete."""
    from rollout_operator import __version__
    from rollout_operator.cli.logs import configure_logging

    configure_logging(debug)
    mcp_dir = check_agent_source(module, mcp)
    if row is not None and not interactive:
        raise SetupError("--row can only be used with --interactive mode")
    say = _printer(quiet)
    say(f"rolloutctl-test v{__version__}{' (Interactive Mode)' if interactive else ''}", "")
    chat = build_model(model, base_url, api_key)
    say(*eval_console.connecting(model, base_url))
    params = completion_params(temperature, max_tokens)
    if interactive:
        from rollout_operator.cli.interactive import run_interactive

        check_dataset(dataset, offset, limit)
        asyncio.run(run_interactive(chat, mcp_dir, dataset, offset, limit, max_turns, params, row))
        return
    limits = Limits.from_flags(limit_flags)
    config = limits.agent_config(max_turns, params)
    source = _Source(mcp or str(mcp_dir), mcp_dir, dataset, offset, limit)
    failed = asyncio.run(_run_batch(chat, source, config, limits, output, quiet))
    raise SystemExit(1 if failed else 0)


def _printer(quiet: bool) -> Any:
    def say(*lines: str) -> None:
        if not quiet:
            for line in lines:
                click.echo(line)

    return say


@dataclass(frozen=True, slots=True)
class _Source:
    mcp_arg: str
    mcp_dir: Path
    dataset: str
    offset: int
    limit: int | None


async def _run_batch(
    chat: Any,
    source: _Source,
    config: AgentConfig,
    limits: Limits,
    output: str | None,
    quiet: bool,
) -> int:
    from rollout_operator.runtime.dataset import count_rows, iter_rows
    from rollout_operator.runtime.rollout import RolloutRunner, WorkItem

    say = _printer(quiet)
    dataset, offset, limit = source.dataset, source.offset, source.limit
    try:
        say(eval_console.VERIFYING)
        await check_model(chat)
        tools = await load_tools(source.mcp_dir, limits.tool_result_chars)
        say(*eval_console.tools_loaded(
            source.mcp_arg, [schema["function"]["name"] for schema in tools.schemas]))
        total = check_dataset(dataset, offset, limit)
        say(*eval_console.dataset_loaded(dataset, count_rows(dataset), total, limit, "testing"))
        say("", "Running tests...")
        runner = RolloutRunner(
            llm=chat,
            tools=tools.provider,
            tool_schemas=tools.schemas,
            config=config,
            fastmcp_version=tools.fastmcp_version,
        )
        stats = _Totals()
        with (
            BatchProgress(total, "test", quiet=quiet) as progress,
            tempfile.TemporaryFile("w+", encoding="utf-8") as spool,
        ):
            for k, data_row in enumerate(iter_rows(dataset, offset=offset, limit=limit), 1):
                try:
                    record = await runner.run(WorkItem(f"test-{data_row.row_index}", data_row))
                except SystemicProviderError as exc:
                    progress.line(f"[{k}/{total}] Row {data_row.row_index}: FAILED - {exc}")
                    stats.stopped = str(exc)
                    break
                result = _row_result(record)
                stats.add(result)
                progress.line(_row_line(k, total, result))
                progress.advance(result["success"])
                spool.write(json.dumps(result) + "\n")
            _print_summary(stats)
            if output:
                _write_output(Path(output), stats, spool)
                say("", f"Results written to: {output}")
        return stats.failed + bool(stats.stopped)
    finally:
        await chat.aclose()


class _Totals:
    def __init__(self) -> None:
        self.total = self.passed = self.failed = self.tokens = 0
        self.duration_ms = 0.0
        self.stopped = ""

    def add(self, result: dict[str, Any]) -> None:
        self.total += 1
        self.passed += result["success"]
        self.failed += not result["success"]
        self.tokens += result["token_usage"]["total_tokens"]
        self.duration_ms += result["duration_ms"]

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "total_duration_ms": round(self.duration_ms, 1),
            "total_tokens": self.tokens,
        }


def _row_result(record: Any) -> dict[str, Any]:
    usage = record.usage
    return {
        "row_index": record.row_index,
        "success": record.status == "completed",
        "error": None if record.error is None or record.status == "completed"
        else record.error.message,
        "duration_ms": round(record.timing.total_ms, 1),
        "token_usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "num_llm_calls": usage.num_llm_calls,
        },
        "reward": record.reward,
        "finish_reason": record.finish_reason,
    }


def _row_line(k: int, total: int, result: dict[str, Any]) -> str:
    """`[k/N] Row i: OK (dur, tokens)`, failures with the error's first 47 characters."""
    status = "OK" if result["success"] else "FAILED"
    cost = f"{format_duration(result['duration_ms'])}, {result['token_usage']['total_tokens']:,}"
    line = f"[{k}/{total}] Row {result['row_index']}: {status} ({cost} tokens)"
    if not result["success"] and result["error"]:
        text = str(result["error"]).replace("\n", " ")
        line += " - " + (text[:47] + "..." if len(text) > 50 else text)
    return line


def _write_output(path: Path, stats: _Totals, spool: Any) -> None:
    """Stream the spooled per-row results into the output file: memory stays flat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spool.seek(0)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"summary": ' + json.dumps(stats.summary()) + ', "results": [')
        for i, line in enumerate(spool):
            out.write((",\n" if i else "\n") + line.rstrip("\n"))
        out.write("\n]}\n")


def _print_summary(stats: _Totals) -> None:
    """Upstream's `Summary:` block (also with `-q`, where upstream prints nothing)."""
    click.echo("\nSummary:")
    click.echo(f"  Total: {stats.total}")
    click.echo(f"  Passed: {stats.passed}")
    click.echo(f"  Failed: {stats.failed}")
    click.echo(f"  Duration: {format_duration(stats.duration_ms)}")
    click.echo(f"  Total tokens: {stats.tokens:,}")
    if stats.stopped:
        click.echo(f"  Stopped early due to systemic provider error. Reason: {stats.stopped}")
