"""`rolloutctl eval`: run every row N times, score each run, report mean and pass@k.

Flags, messages, cache, outputs and exit codes follow `osmosis eval` (osmosis-compat.md 3.4),
except that concurrency is a pool refilled as runs finish instead of waves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
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
from rollout_operator.cli.eval_cache import (
    CacheError,
    EvalCache,
    RunKey,
    cache_root,
    task_directory,
    write_json_atomic,
)
from rollout_operator.cli.eval_task_identity import (
    compute_task_id,
    dataset_fingerprint,
    eval_fns_fingerprint,
    mcp_fingerprint,
    task_config,
)
from rollout_operator.cli.lazy_group import LazyCommand, LazyGroup
from rollout_operator.cli.progress import BatchProgress

EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class EvalOptions:
    mcp_dir: Path
    mcp_arg: str
    dataset: str
    model: str
    eval_fns: tuple[str, ...]
    n: int
    pass_threshold: float
    max_turns: int
    params: dict[str, Any]
    base_url: str | None
    api_key: str | None
    baseline_model: str | None
    baseline_base_url: str | None
    baseline_api_key: str | None
    limit: int | None
    offset: int
    batch_size: int
    fresh: bool
    retry_failed: bool
    log_samples: bool
    output_path: str | None
    quiet: bool
    limits: Limits

    def config(self, import_root: Path) -> dict[str, Any]:
        """The configuration that identifies a task (no secrets), with its fingerprints."""
        module = self.mcp_dir.resolve()
        return task_config(
            model=self.model,
            base_url=self.base_url,
            baseline_model=self.baseline_model,
            baseline_base_url=self.baseline_base_url,
            module=f"mcp:{module}",
            dataset=self.dataset,
            eval_fns=self.eval_fns,
            n_runs=self.n,
            max_turns=self.max_turns,
            pass_threshold=self.pass_threshold,
            offset=self.offset,
            limit=self.limit,
            completion_params=self.params,
            dataset_fingerprint=dataset_fingerprint(self.dataset),
            module_fingerprint=mcp_fingerprint(module),
            eval_fns_fingerprint=eval_fns_fingerprint(self.eval_fns, import_root),
        )


@click.group(
    "eval",
    cls=LazyGroup,
    lazy={
        "cache": LazyCommand("rollout_operator.cli.eval_cache_cmd:cache_group",
                             "Inspect or remove cached eval results."),
        "run": LazyCommand("rollout_operator.cli.eval_run_cmd:eval_run_command",
                           "Evaluate an Osmosis 0.3 rollout on a dataset (named, resumable runs)."),
    },
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option("-m", "--module", default=None,
              help="Agent loop as module:attr (not supported yet: use --mcp).")
@click.option("--mcp", default=None, help="Directory with main.py defining a FastMCP server.")
@click.option("-d", "--dataset", default=None, help="Dataset file (.jsonl, .csv or .parquet).")
@click.option("--model", default=None, help="LiteLLM model name, or served name with --base-url.")
@click.option("--eval-fn", "eval_fns", multiple=True,
              help="Scorer as module:function, relative to the working directory (repeatable).")
@click.option("--n", "n", type=int, default=1, show_default=True, help="Runs per row (pass@k).")
@click.option("--pass-threshold", type=float, default=1.0, show_default=True,
              help="A score at or above this counts as a pass.")
@click.option("--max-turns", type=int, default=10, show_default=True, help="Model calls per run.")
@click.option("--temperature", type=float, default=None, help="Sampling temperature.")
@click.option("--max-tokens", type=int, default=None, help="max_tokens per model call.")
@click.option("--api-key", default=None, help="API key for the model provider.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint.")
@click.option("--baseline-model", default=None, help="A second model to compare against.")
@click.option("--baseline-base-url", default=None, help="Endpoint of the baseline model.")
@click.option("--baseline-api-key", default=None, help="API key of the baseline model.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Run at most N rows.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="Skip the first N rows.")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="Runs in flight at once.")
@click.option("--fresh", is_flag=True, help="Ignore (and back up) the cached results.")
@click.option("--retry-failed", is_flag=True, help="Redo cached runs that failed.")
@click.option("--log-samples", is_flag=True, help="Also write each run's conversation (JSONL).")
@click.option("-o", "--output-path", default=None, help="Directory for results files.")
@click.option("--debug", is_flag=True, help="Debug logging.")
@limit_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary.")
@click.pass_context
def eval_group(ctx: click.Context, /, **kwargs: Any) -> None:
    """Evaluate a model on a dataset with eval functions (mean, pass@k), with a resumable cache."""
    if ctx.invoked_subcommand is not None:
        return
    from rollout_operator.cli.logs import configure_logging

    configure_logging(kwargs["debug"])
    options = _parse_options(kwargs)
    raise SystemExit(_run(options))


def _parse_options(kw: dict[str, Any]) -> EvalOptions:
    mcp_dir = check_agent_source(kw["module"], kw["mcp"])
    if not kw["dataset"]:
        raise SetupError("--dataset (-d) is required.")
    if not kw["model"]:
        raise SetupError("--model is required.")
    if not kw["eval_fns"]:
        raise SetupError("--eval-fn is required.")
    for flag, name in (("n", "--n"), ("batch_size", "--batch-size"), ("max_turns", "--max-turns")):
        if kw[flag] < 1:
            raise SetupError(f"{name} must be >= 1.")
    if kw["fresh"] and kw["retry_failed"]:
        raise SetupError("--fresh and --retry-failed are mutually exclusive.")
    if (kw["baseline_base_url"] or kw["baseline_api_key"]) and not kw["baseline_model"]:
        raise SetupError("--baseline-base-url and --baseline-api-key require --baseline-model.")
    return EvalOptions(
        mcp_dir=mcp_dir,
        mcp_arg=kw["mcp"],
        dataset=kw["dataset"],
        model=kw["model"],
        eval_fns=tuple(kw["eval_fns"]),
        n=kw["n"],
        pass_threshold=kw["pass_threshold"],
        max_turns=kw["max_turns"],
        params=completion_params(kw["temperature"], kw["max_tokens"]),
        base_url=kw["base_url"],
        api_key=kw["api_key"],
        baseline_model=kw["baseline_model"],
        baseline_base_url=kw["baseline_base_url"],
        baseline_api_key=kw["baseline_api_key"],
        limit=kw["limit"],
        offset=kw["offset"],
        batch_size=kw["batch_size"],
        fresh=kw["fresh"],
        retry_failed=kw["retry_failed"],
        log_samples=kw["log_samples"],
        output_path=kw["output_path"],
        quiet=kw["quiet"],
        limits=Limits.from_flags(kw),
    )


def _run(options: EvalOptions) -> int:
    return asyncio.run(_main(options))


def _say(options: EvalOptions, *lines: str) -> None:
    if not options.quiet:
        for line in lines:
            click.echo(line)


async def _main(options: EvalOptions) -> int:
    """Set up in `osmosis eval`'s order and words (model, tools, dataset, scorers), then run."""
    from rollout_operator import __version__
    from rollout_operator.runtime.dataset import count_rows
    from rollout_operator.runtime.scoring import load_scorers

    _say(options, *eval_console.header(__version__, options.model, options.base_url,
                                        options.baseline_model, options.baseline_base_url))
    chat = build_model(options.model, options.base_url, options.api_key)
    baseline = None
    try:
        _say(options, *eval_console.connecting(options.model, options.base_url),
             eval_console.VERIFYING)
        await check_model(chat)
        tools = await load_tools(options.mcp_dir, options.limits.tool_result_chars)
        _say(options, *eval_console.tools_loaded(
            options.mcp_arg, [schema["function"]["name"] for schema in tools.schemas]))
        rows = check_dataset(options.dataset, options.offset, options.limit)
        _say(options, *eval_console.dataset_loaded(
            options.dataset, count_rows(options.dataset), rows, options.limit))
        _say(options, f"Loading eval functions: {', '.join(options.eval_fns)}")
        scorers = _load_scorers(options, load_scorers)
        _say(options, *eval_console.eval_fns_loaded(eval_console_modes(scorers))[1:])
        if options.baseline_model:
            baseline = build_model(
                options.baseline_model, options.baseline_base_url, options.baseline_api_key)
            _say(options, *eval_console.connecting(options.baseline_model,
                                                   options.baseline_base_url),
                 eval_console.VERIFYING)
            await check_model(baseline)
        _say(options, *eval_console.running(rows, options.n, baseline is not None,
                                            options.batch_size))
        config = options.config(Path.cwd())
        task_id, config_hash = compute_task_id(config)
        try:
            cache = EvalCache.open(cache_root(), options.model, options.dataset, task_id,
                                   config_hash, config, fresh=options.fresh)
        except CacheError as exc:
            raise SetupError(str(exc)) from None
        with cache:
            code = await _evaluate(options, rows, scorers, tools, chat, baseline, cache)
            if code == 0 and dataset_fingerprint(options.dataset) != config["dataset_fingerprint"]:
                click.echo("Error: Dataset was modified during evaluation. Results may be "
                           "inconsistent. Use --fresh to restart.", err=True)
                return 1
            return code
    finally:
        for client in (chat, baseline):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()


def eval_console_modes(scorers: list[Any]) -> list[tuple[str, str]]:
    return [(scorer.ref, str(scorer.mode)) for scorer in scorers]


def _load_scorers(options: EvalOptions, load: Any) -> list[Any]:
    from rollout_operator.runtime.errors import EvalFnError

    seen: set[str] = set()
    for ref in options.eval_fns:
        if ref in seen:
            raise SetupError(f"Duplicate eval function path: '{ref}'")
        seen.add(ref)
    try:
        return list(load(Path.cwd(), options.eval_fns))
    except EvalFnError as exc:
        raise SetupError(str(exc)) from None


def _work_keys(options: EvalOptions, rows: int) -> Iterator[RunKey]:
    tags: tuple[str | None, ...] = ("primary", "baseline") if options.baseline_model else (None,)
    for row in range(options.offset, options.offset + rows):
        for run in range(options.n):
            for tag in tags:
                yield (row, run, tag)


async def _evaluate(
    options: EvalOptions,
    rows: int,
    scorers: list[Any],
    tools: Any,
    chat: Any,
    baseline: Any,
    cache: EvalCache,
) -> int:
    from rollout_operator.runtime.dataset import DatasetRow, iter_rows
    from rollout_operator.runtime.errors import SystemicProviderError
    from rollout_operator.runtime.pool import run_pool
    from rollout_operator.runtime.rollout import RolloutRunner, WorkItem

    main_task = asyncio.current_task()
    assert main_task is not None
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        main_task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)

    total = rows * options.n * (2 if baseline else 1)
    pending_total = sum(
        1 for key in _work_keys(options, rows) if not cache.is_done(key, options.retry_failed)
    )
    names = list(options.eval_fns)
    try:
        if pending_total == 0:
            cache.status = "completed"
            _finish(options, cache, names, quiet=options.quiet, already=True)
            return 0
        config = options.limits.agent_config(options.max_turns, options.params)
        runners: dict[str | None, RolloutRunner] = {}
        primary: str | None = "primary" if baseline is not None else None
        for tag, client in ((primary, chat), ("baseline", baseline)):
            if client is not None:
                runners[tag] = RolloutRunner(
                    client, tools.provider, tools.schemas, scorers, config,
                    score_timeout_s=options.limits.score_timeout_s,
                    fastmcp_version=tools.fastmcp_version,
                )

        def items() -> Iterator[WorkItem]:
            for data_row in iter_rows(options.dataset, offset=options.offset, limit=options.limit):
                for run in range(options.n):
                    for tag in runners:
                        key = (data_row.row_index, run, tag)
                        if cache.is_done(key, options.retry_failed):
                            continue
                        suffix = f"-{tag}" if tag else ""
                        rollout_id = f"eval-{data_row.row_index}-run-{run}{suffix}"
                        yield WorkItem(rollout_id, data_row, run, tag)

        async def run_item(item: WorkItem) -> Any:
            assert isinstance(item.row, DatasetRow)
            return await runners[item.model_tag].run(item)

        done = total - pending_total
        with BatchProgress(pending_total, "eval", quiet=options.quiet) as progress:
            if done and not options.quiet:
                for line in eval_console.resuming(done, total, cache.config["module"]):
                    progress.line(line)
                if options.log_samples and not _has_samples(cache):
                    progress.line(eval_console.ONLY_NEW_SAMPLES)
            k = done
            try:
                async for record in run_pool(items(), run_item, options.batch_size):
                    run = record.to_eval_run()
                    cache.add(run, record.messages if options.log_samples else None)
                    cache.save(force=False)
                    k += 1
                    progress.line(eval_console.run_line(k, total, run))
                    score = sum(run["scores"].values()) / len(names) if run["success"] else 0.0
                    progress.advance(run["success"], score)
            except SystemicProviderError as exc:
                cache.save()
                _say(options, *eval_console.stopped(str(exc)),
                     "", f"Completed {k - done}/{pending_total} runs.",
                     "", f"Partial results cached at: {cache.path}")
                return 1
        cache.status = "completed"
        _finish(options, cache, names, quiet=options.quiet, already=False)
        return 0
    except asyncio.CancelledError:
        if not interrupted:
            raise
        cache.save()
        _say(options, *eval_console.interrupted(len(cache.runs), total, str(cache.path)))
        return EXIT_INTERRUPTED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _has_samples(cache: EvalCache) -> bool:
    return cache.samples_path.exists() and cache.samples_path.stat().st_size > 0


def _finish(
    options: EvalOptions, cache: EvalCache, names: list[str], quiet: bool, already: bool
) -> None:
    """Save the summary and print upstream's closing block (per model with a baseline)."""
    from rollout_operator.runtime.metrics import build_eval_summary

    runs = cache.ordered_runs()
    primary = "primary" if options.baseline_model else None
    summary = build_eval_summary(runs, names, n_runs=options.n,
                                 pass_threshold=options.pass_threshold, model_tag=primary)
    cache.save(summary)
    if already:
        _say(options, "", "Evaluation already completed (cached).")
    blocks: list[tuple[str | None, dict[str, Any]]] = [(primary, summary)]
    if options.baseline_model:
        blocks.append(("baseline", build_eval_summary(
            runs, names, n_runs=options.n, pass_threshold=options.pass_threshold,
            model_tag="baseline")))
    for tag, block in blocks:
        if options.baseline_model:
            label = options.baseline_model if tag == "baseline" else options.model
            _say(options, "", f"{label}:")
        _say(options, *eval_console.summary(block))
    _say(options, "", f"Cache: {cache.path}")
    if already:
        _say(options, eval_console.FRESH_HINT)
    elif options.log_samples:
        _say(options, f"Samples: {cache.samples_path}")
    else:
        _say(options, eval_console.TIP_LOG_SAMPLES)
    if options.output_path:
        _write_outputs(options, cache, runs, summary)
    if options.quiet:
        for name, stats in summary["eval_fns"].items():
            click.echo(f"{name}: mean={stats['mean']:.3f} median={stats['median']:.3f} "
                       f"std={stats['std']:.3f}")


def _write_outputs(
    options: EvalOptions, cache: EvalCache, runs: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    directory = task_directory(Path(options.output_path or "."), options.model, options.dataset)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = int(time.time())
    results = directory / f"results_{stamp}_{cache.task_id}.json"
    write_json_atomic(results, cache.document(summary))
    _say(options, f"Output written to: {results}")
    if options.log_samples:
        samples = directory / f"samples_{stamp}_{cache.task_id}.jsonl"
        with samples.open("w", encoding="utf-8") as handle:
            for sample in cache.samples():
                handle.write(json.dumps(sample) + "\n")
        _say(options, f"Samples written to: {samples}")

