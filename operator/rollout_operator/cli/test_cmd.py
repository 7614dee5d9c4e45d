"""`rolloutctl test`: run each dataset row through the agent loop once, without scoring.

Flags, messages, output file and exit codes follow `osmosis test` (osmosis-compat.md 3.3).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import click

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
from rollout_operator.cli.progress import BatchProgress, format_duration, summary_table
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
    from rollout_operator.cli.logs import configure_logging

    configure_logging(debug)
    if row is not None and not interactive:
        raise SetupError("--row can only be used with --interactive mode")
    mcp_dir = check_agent_source(module, mcp)
    total = check_dataset(dataset, offset, limit)
    chat = build_model(model, base_url, api_key)
    params = completion_params(temperature, max_tokens)
    if interactive:
        from rollout_operator.cli.interactive import run_interactive

        asyncio.run(run_interactive(chat, mcp_dir, dataset, offset, limit, max_turns, params, row))
        return
    limits = Limits.from_flags(limit_flags)
    config = limits.agent_config(max_turns, params)
    failed = asyncio.run(
        _run_batch(chat, mcp_dir, dataset, offset, limit, total, config, limits, output, quiet)
    )
    raise SystemExit(1 if failed else 0)


async def _run_batch(
    chat: Any,
    mcp_dir: Path,
    dataset: str,
    offset: int,
    limit: int | None,
    total: int,
    config: AgentConfig,
    limits: Limits,
    output: str | None,
    quiet: bool,
) -> int:
    from rollout_operator.runtime.dataset import iter_rows
    from rollout_operator.runtime.rollout import RolloutRunner, WorkItem

    try:
        tools = await load_tools(mcp_dir, limits.tool_result_chars)
        await check_model(chat)
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
                    progress.line("Stopping: the model endpoint cannot serve any request.")
                    stats.stopped = True
                    break
                result = _row_result(record)
                stats.add(result)
                progress.line(_row_line(k, total, result))
                progress.advance(result["success"])
                spool.write(json.dumps(result) + "\n")
            if output:
                _write_output(Path(output), stats, spool)
        _print_summary(progress, stats)
        return stats.failed + stats.stopped
    finally:
        await chat.aclose()


class _Totals:
    def __init__(self) -> None:
        self.total = self.passed = self.failed = self.tokens = 0
        self.duration_ms = 0.0
        self.stopped = False

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
    head = f"[{k}/{total}] Row {result['row_index']}:"
    duration = format_duration(result["duration_ms"])
    if result["success"]:
        return f"{head} OK ({duration}, {result['token_usage']['total_tokens']} tokens)"
    error = str(result["error"] or "")
    snippet = error if len(error) <= 47 else error[:44] + "..."
    return f"{head} FAILED ({duration}) - {snippet}"


def _write_output(path: Path, stats: _Totals, spool: Any) -> None:
    """Stream the spooled per-row results into the output file: memory stays flat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spool.seek(0)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"summary": ' + json.dumps(stats.summary()) + ', "results": [')
        for i, line in enumerate(spool):
            out.write((",\n" if i else "\n") + line.rstrip("\n"))
        out.write("\n]}\n")


def _print_summary(progress: BatchProgress, stats: _Totals) -> None:
    rows = [
        ("Total", str(stats.total)),
        ("Passed", str(stats.passed)),
        ("Failed", str(stats.failed)),
        ("Duration", format_duration(stats.duration_ms)),
        ("Tokens", str(stats.tokens)),
    ]
    progress.console.print(summary_table("Summary:", rows))
