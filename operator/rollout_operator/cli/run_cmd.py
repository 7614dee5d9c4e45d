"""`rolloutctl run -f rolloutrun.yaml`: the same RolloutRun on this machine, no cluster.

Progress goes to stderr (a live panel on a terminal, a line every few seconds otherwise); the
summary table, or with `--json` one JSON object, goes to stdout; both, and the log lines, are
scrubbed of the secrets in this process's environment (`runtime.scrub`). Exit codes: 0 the run
completed; 1 it failed (a retry may help: run the same command again to resume); 2 the
manifest, the repo or this machine's setup must change first; 130 stopped by Ctrl-C (what was
committed is kept, and the same command resumes).

Before anything starts, `local.preflight` checks the model key, the judge keys and the repo
folder (the checks `rolloutctl validate` applies too), in well under a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

    from rollout_operator.local.backend import LocalBackend, RunResult
    from rollout_operator.local.run_file import LocalRun
    from rollout_operator.runtime.scrub import Scrubber


@click.command("run")
@click.option("-f", "--filename", "filename", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The RolloutRun manifest (the same file kubectl apply takes).")
@click.option("--name", default=None,
              help="Run name (default: metadata.name, else 'run'); a new name is a new run.")
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Shards, one worker process each (default: spec.workers.shards).")
@click.option("--no-sandbox", is_flag=True,
              help="Run the repo's tools and scorers without bubblewrap isolation.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON object on stdout.")
@click.option("--output", default=None,
              help="Output URL or folder (default: spec.output.url, else ./rollout-output).")
@click.option("--model", default=None,
              help="Model to call instead of spec.model (a litellm name, or the served name "
                   "with --base-url).")
@click.option("--base-url", default=None,
              help="An OpenAI-compatible endpoint (spec.model.baseURL), e.g. "
                   "http://localhost:8000/v1.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Use only the first N rows of the dataset (spec.dataset.limit).")
@click.option("--samples", type=click.IntRange(1, 1024), default=None,
              help="Rollouts per row (spec.dataset.samplesPerPrompt).")
@click.option("--fresh", is_flag=True,
              help="Start a new run beside the earlier ones instead of resuming (nothing is "
                   "deleted).")
@click.option("-v", "--verbose", is_flag=True, help="Log what each phase does.")
def run_command(filename: Path, name: str | None, workers: int | None, no_sandbox: bool,
                as_json: bool, output: str | None, model: str | None, base_url: str | None,
                limit: int | None, samples: int | None, fresh: bool, verbose: bool) -> None:
    """Run a RolloutRun manifest on this machine: sync, tools, rollouts, aggregate.

    Running the same manifest again resumes its newest run: rollouts already written are
    skipped; --fresh starts another beside it. --model, --base-url, --limit, --samples and
    --workers change the spec, so they make another run, as an edit of the file would. The
    model API key is read from $ROLLOUT_MODEL_API_KEY, else from the provider's own variable
    (OPENAI_API_KEY, ...); judge keys from the variables spec.scoring.secrets names.
    """
    from rich.console import Console

    from rollout_operator.local.preflight import preflight
    from rollout_operator.local.run_file import Overrides, RunFileError, load_run_file
    from rollout_operator.runtime.scrub import Scrubber, use_process_scrubber

    _configure_logging(verbose)
    use_process_scrubber(Scrubber.from_environ(os.environ))
    err = Console(stderr=True)
    try:
        run = load_run_file(filename, overrides=Overrides(
            name=name, shards=workers, output=output, model=model, base_url=base_url,
            limit=limit, samples=samples))
    except RunFileError as exc:
        _invalid(err, filename, exc.problems, as_json)
        raise SystemExit(2) from None
    problems = preflight(run, os.environ)
    if problems:
        _invalid(err, filename, [p.message for p in problems], as_json,
                 files=[p.file for p in problems])
        raise SystemExit(2)
    try:
        run = _generation(run, fresh=fresh)
    except Exception as exc:  # storage unreachable: the run itself would say the same
        err.print(f"[red]cannot read the earlier runs in {run.output_url}:[/red] {exc}",
                  highlight=False, soft_wrap=True, markup=True)
        raise SystemExit(1) from None
    scrubber = use_process_scrubber(Scrubber.for_run(run.spec, os.environ))
    result = _scrubbed(_execute(run, err, sandbox=not no_sandbox), scrubber)
    if as_json:
        click.echo(json.dumps(scrubber.scrub_data(result.as_json()), indent=1))
    else:
        _report(result, err)
    raise SystemExit(result.exit_code)


def _generation(run: LocalRun, *, fresh: bool) -> LocalRun:
    """The newest run of this name and spec, to resume; with `fresh`, the one after it."""
    from rollout_operator.local.run_state import latest_generation

    latest = asyncio.run(latest_generation(run, os.environ))
    if latest is None:
        return run
    return run.with_generation(latest + 1 if fresh else latest)


def _scrubbed(result: RunResult, scrubber: Scrubber) -> RunResult:
    """`result` with secrets scrubbed from what is printed of it."""
    if scrubber:
        result.error = scrubber.scrub(result.error) if result.error else result.error
        result.summary = scrubber.scrub_data(result.summary)
        result.problems = scrubber.scrub_data(result.problems)
    return result


def _configure_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    from rollout_operator.runtime.scrub import install_log_scrubbing

    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False,
                          rich_tracebacks=False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("httpx", "LiteLLM", "litellm", "mcp", "fastmcp", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_scrubbing()


def _invalid(err: Console, filename: Path, problems: list[str], as_json: bool, *,
             files: list[str | None] | None = None) -> None:
    """The run cannot start: each problem, with the file it is in (`files`, repo-relative, for
    the repo's problems; else the manifest)."""
    where = files or [None] * len(problems)
    shown = [f"{file}: {problem}" if file else problem
             for file, problem in zip(where, problems, strict=True)]
    if as_json:
        click.echo(json.dumps({"ok": False, "state": "Invalid", "exitCode": 2,
                               "error": f"{filename} cannot be run: " + "; ".join(shown),
                               "problems": [{"file": file or str(filename), "message": p}
                                            for file, p in zip(where, problems, strict=True)]},
                              indent=1))
        return
    from rich.markup import escape

    if len(shown) == 1:
        err.print(f"[red]{filename} cannot be run:[/red] {escape(shown[0])}",
                  highlight=False, soft_wrap=True)
        return
    err.print(f"[red]{filename} cannot be run:[/red]", highlight=False, markup=True)
    for problem in shown:
        err.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)


def _execute(run: object, err: Console, *, sandbox: bool) -> RunResult:
    from rollout_operator.local.backend import LocalBackend, LocalOptions
    from rollout_operator.local.progress import ProgressView
    from rollout_operator.local.run_file import LocalRun

    assert isinstance(run, LocalRun)
    view = ProgressView(err, title=f"{run.name} ({run.namespace}/{run.name}-"
                                   f"{run.uid.replace('-', '')[:8]})")
    backend = LocalBackend(run, view, LocalOptions(sandbox=sandbox))

    async def main() -> RunResult:
        task = asyncio.current_task()
        assert task is not None
        _install_stop_handlers(backend, task)
        return await backend.execute()

    return asyncio.run(main())


def _install_stop_handlers(backend: LocalBackend, task: asyncio.Task[RunResult]) -> None:
    """First Ctrl-C (or SIGTERM): stop gracefully; the second: kill the children now."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            backend.request_stop()
        else:
            backend.kill_children()
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


def _report(result: RunResult, err: Console) -> None:
    from rich.console import Console
    from rich.markup import escape

    from rollout_operator.local.progress import ProgressView

    if result.ok or result.summary:  # a failed run with results (too many masked) shows them
        # Off a terminal, no width to wrap the table at: each row stays on one line.
        out = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 400)
        ProgressView(out, title=result.run.name, live=False).summary(
            {"state": result.state, "summary": result.summary})
        if result.commit:
            out.print(f"{'commit':>13}  {result.commit}", highlight=False, soft_wrap=True)
        out.print(f"{'took':>13}  {result.duration_s:.1f} s", highlight=False, soft_wrap=True)
    if result.ok:
        return
    if result.state == "Stopped":
        err.print(f"[yellow]stopped.[/yellow] Committed rollouts are kept in "
                  f"{result.run_prefix}; run the same command again to resume.",
                  highlight=False, soft_wrap=True)
        return
    err.print(f"[red]run failed:[/red] {escape(result.error or '')}", highlight=False,
              soft_wrap=True)
    if result.logs:
        err.print(f"logs: {result.logs}", highlight=False, soft_wrap=True)
