"""`rolloutctl eval cache dir|ls|rm`: look at and clean the eval result cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rollout_operator.cli.eval_cache import (
    cache_root,
    list_cache_files,
    read_cache_header,
    task_files,
)

_STATUS = click.Choice(["in_progress", "completed"])


@click.group("cache")
def cache_group() -> None:
    """Inspect or remove cached eval results."""


@cache_group.command("dir")
def cache_dir() -> None:
    """Print the cache directory."""
    click.echo(str(cache_root()))


def _matching(
    model: str | None, dataset: str | None, status: str | None, task_id: str | None = None
) -> list[dict[str, Any]]:
    found = []
    for path in list_cache_files(cache_root()):
        try:
            header = read_cache_header(path)
        except (OSError, ValueError):
            continue
        if task_id and header["task_id"] != task_id:
            continue
        if model and header["model"] != model:
            continue
        if dataset and Path(str(header["dataset"])).name != Path(dataset).name:
            continue
        if status and header["status"] != status:
            continue
        found.append(header)
    return found


@cache_group.command("ls")
@click.option("--model", default=None, help="Only tasks for this model.")
@click.option("--dataset", default=None, help="Only tasks for this dataset file.")
@click.option("--status", type=_STATUS, default=None, help="Only tasks with this status.")
def cache_ls(model: str | None, dataset: str | None, status: str | None) -> None:
    """List cached eval tasks."""
    from rich.console import Console
    from rich.table import Table

    entries = _matching(model, dataset, status)
    if not entries:
        click.echo("No cached evals.")
        return
    table = Table("task", "status", "model", "dataset", "runs", "updated")
    for entry in entries:
        table.add_row(entry["task_id"], entry["status"], entry["model"],
                      Path(str(entry["dataset"])).name, str(entry["runs"]),
                      str(entry["updated_at"]))
    Console().print(table)


@cache_group.command("rm")
@click.argument("task_id", required=False)
@click.option("--all", "remove_all", is_flag=True, help="Remove every matching task.")
@click.option("--model", default=None, help="Only tasks for this model.")
@click.option("--dataset", default=None, help="Only tasks for this dataset file.")
@click.option("--status", type=_STATUS, default=None, help="Only tasks with this status.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def cache_rm(
    task_id: str | None,
    remove_all: bool,
    model: str | None,
    dataset: str | None,
    status: str | None,
    yes: bool,
) -> None:
    """Remove cached eval tasks (one TASK_ID, or --all / filters)."""
    if not task_id and not (remove_all or model or dataset or status):
        raise click.UsageError("Give a TASK_ID, --all, or a filter (--model/--dataset/--status).")
    entries = _matching(model, dataset, status, task_id)
    if not entries:
        click.echo("Nothing to remove.")
        return
    if not yes:
        click.confirm(f"Remove {len(entries)} cached eval task(s)?", abort=True)
    for entry in entries:
        path = Path(entry["path"])
        for part in task_files(path):
            part.unlink(missing_ok=True)
        click.echo(f"Removed {entry['task_id']} ({path})")
