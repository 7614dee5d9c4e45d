"""`rolloutctl eval run CONFIG`: `osmosis eval run` for Osmosis 0.3 workspaces, local mode.

Flags, the console and `--json` envelopes, resume rules, refusals and the run directory follow
osmosis-ai 0.3.8 (docs/osmosis-v03.md); the model is reached through our gateway.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from rollout_operator import __version__
from rollout_operator.workspaces.dataset import parse_rows_selector
from rollout_operator.workspaces.errors import WorkspaceError
from rollout_operator.workspaces.eval_config import load_eval_config
from rollout_operator.workspaces.layout import find_workspace, under
from rollout_operator.workspaces.run_names import VALID_NAME, generate_name
from rollout_operator.workspaces.runner import EvalRun, RunOptions, RunResult
from rollout_operator.workspaces.secrets import resolve_secrets


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Run name; an existing name resumes that run.")
@click.option("-o", "--output", "output", default=None, type=click.Path(path_type=Path),
              help="Output root (default .osmosis/evals/ in the workspace).")
@click.option("--dataset-file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Local dataset file (.jsonl, .csv or .parquet).")
@click.option("--secrets-file", default=None, help="dotenv file for [secrets]; - reads stdin.")
@click.option("--rows", default=None, help='Source rows to run, e.g. "3,7,10-20".')
@click.option("--fresh", is_flag=True, help="Archive the run's directory and start clean.")
@click.option("--retry-failed", is_flag=True, help="Also re-run failed and skipped items.")
@click.option("--max-in-flight", type=click.IntRange(min=1), default=None,
              help="Concurrent rollouts (default: batch_size, capped by the server).")
@click.option("-y", "--yes", is_flag=True, help="Skip the cost confirmation.")
@click.option("--tunnel", default=None, help="Not supported: rollouts run on this machine.")
@click.option("--upload", is_flag=True, help="Not supported: there is no platform to upload to.")
@click.option("--rollout-port", type=click.IntRange(1, 65535), default=None,
              help="Fixed port for the rollout server.")
@click.option("--listener-port", type=click.IntRange(1, 65535), default=None,
              help="Fixed port for the model gateway.")
@click.option("--advertise-url", default=None, help="Not supported in local mode.")
@click.option("--verbose", is_flag=True, help="Print one line per finished work item.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result envelope only.")
@click.option("--plain", is_flag=True, help="Same as --json (machine output).")
def eval_run_command(config: Path, name: str | None, output: Path | None,
                     dataset_file: Path | None, secrets_file: str | None, rows: str | None,
                     fresh: bool, retry_failed: bool, max_in_flight: int | None, yes: bool,
                     tunnel: str | None, upload: bool, rollout_port: int | None,
                     listener_port: int | None, advertise_url: str | None, verbose: bool,
                     as_json: bool, plain: bool) -> None:
    """Evaluate an Osmosis 0.3 rollout on a dataset (named, resumable runs)."""
    machine = as_json or plain

    def say(line: str) -> None:
        if not machine:
            click.echo(line, err=True)

    try:
        result = _run(config, name, output, dataset_file, secrets_file, rows, fresh,
                      retry_failed, max_in_flight, yes, tunnel, upload, rollout_port,
                      listener_port, advertise_url, verbose, machine, say)
    except WorkspaceError as exc:
        if machine:
            click.echo(json.dumps({"schema_version": 1, "command": "eval run",
                                   "cli_version": __version__,
                                   "error": {"code": exc.code, "message": exc.message,
                                             "details": {}}}))
        else:
            click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)
    if machine:
        click.echo(json.dumps({"schema_version": 1, "status": result.status,
                               "operation": "eval.run", "resource": result.resource,
                               "message": result.message}))
    else:
        _print_summary(result)
    sys.exit(0 if result.status == "success" else 1)


def _run(config: Path, name: str | None, output: Path | None, dataset_file: Path | None,
         secrets_file: str | None, rows: str | None, fresh: bool, retry_failed: bool,
         max_in_flight: int | None, yes: bool, tunnel: str | None, upload: bool,
         rollout_port: int | None, listener_port: int | None, advertise_url: str | None,
         verbose: bool, machine: bool, say: Any) -> RunResult:
    for flag, given in (("--tunnel", tunnel), ("--upload", upload),
                        ("--advertise-url", advertise_url)):
        if given:
            raise WorkspaceError(f"{flag} is not supported: rolloutctl runs the rollout server "
                                 "on this machine and has no platform to talk to.",
                                 code="UNSUPPORTED")
    workspace = find_workspace(Path.cwd())
    config_path = under(config, workspace, label="eval config", required_dir="configs/eval",
                        suffix=".toml")
    eval_config = load_eval_config(config_path)
    if dataset_file is None:
        raise WorkspaceError(f"platform dataset {eval_config.dataset!r} needs a login to the "
                             "Osmosis platform: pass --dataset-file with a local file",
                             code="DATASET_REQUIRED")
    output_root = (output if output is not None else workspace / ".osmosis" / "evals")
    output_root = (output_root if output_root.is_absolute() else Path.cwd() / output_root
                   ).resolve()
    if name is not None and not VALID_NAME.match(name):
        raise WorkspaceError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    run_name = name or generate_name(output_root)
    selected = parse_rows_selector(rows) if rows is not None else None
    secrets = resolve_secrets(eval_config.secret_names, secrets_file, os.environ)
    if advertise_url is None and listener_port is not None and rollout_port == listener_port:
        raise WorkspaceError("--rollout-port and --listener-port must differ")
    options = RunOptions(
        workspace=workspace, config=eval_config, config_path=config_path, name=run_name,
        output_root=output_root, dataset_file=dataset_file.resolve(), rows=selected,
        fresh=fresh, retry_failed=retry_failed, max_in_flight=max_in_flight,
        rollout_port=rollout_port, listener_port=listener_port, secrets=secrets,
        environ=dict(os.environ), verbose=verbose)
    if not yes:
        if machine or not sys.stdin.isatty():
            raise WorkspaceError("confirmation needed: pass --yes to run without a prompt",
                                 code="CONFIRMATION_REQUIRED")
        if not click.confirm(f"Run rollouts of {eval_config.rollout} x model "
                             f"{eval_config.model_path} — continue?", default=True):
            raise WorkspaceError("cancelled", code="CANCELLED")
    if eval_config.advanced is not None:
        say("[advanced] is recorded but not consumed by a local run")
    return EvalRun(options, say).execute()


def _print_summary(result: RunResult) -> None:
    resource = result.resource
    metrics = resource["metrics"]
    click.echo(result.message)
    click.echo(f"  work items: {resource['total_work_items']}  dispatched: "
               f"{resource['dispatched']}  resumed: {resource['resumed']}")
    click.echo(f"  succeeded: {resource['succeeded']}  failed: {resource['failed']}  "
               f"skipped: {resource['skipped']}")
    click.echo(f"  pass rate: {metrics['pass_rate']:.3f} (threshold "
               f"{metrics['pass_threshold']})  tokens: {metrics['tokens_used']}")
    stats = metrics.get("reward_stats")
    if stats:
        click.echo(f"  reward mean {stats['mean']:.3f}  median {stats['median']:.3f}  "
                   f"std {stats['std']:.3f}  min {stats['min']:.3f}  max {stats['max']:.3f}")
    for point in metrics.get("pass_at_k", []):
        click.echo(f"  pass@{point['k']}: {point['value']:.3f}")
    for row in resource["failed_rows"]:
        click.echo(f"  row {row['row_index']} run {row['run_index']}: "
                   f"{row['error_type'] or 'skipped'}")
