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
    """Cached tasks, newest first; model and dataset match case-insensitive substrings."""
    found = []
    for path in list_cache_files(cache_root()):
        try:
            header = read_cache_header(path)
        except (OSError, ValueError):
            continue
        if task_id and header["task_id"] != task_id:
            continue
        if model and model.lower() not in str(header["model"] or "").lower():
            continue
        if dataset and dataset.lower() not in str(header["dataset"] or "").lower():
            continue
        if status and header["status"] != status:
            continue
        found.append(header)
    found.sort(key=lambda entry: str(entry.get("created_at") or ""), reverse=True)
    return found


def _created(entry: dict[str, Any]) -> str:
    created = str(entry.get("created_at") or "")
    return created[:16].replace("T", " ") if len(created) >= 16 else created


@cache_group.command("ls")
@click.option("--model", default=None, help="Only tasks whose model contains this text.")
@click.option("--dataset", default=None, help="Only tasks whose dataset path contains this text.")
@click.option("--status", type=_STATUS, default=None, help="Only tasks with this status.")
def cache_ls(model: str | None, dataset: str | None, status: str | None) -> None:
    """List cached eval tasks, newest first (a table on a terminal, one line each otherwise)."""
    from rich.console import Console
    from rich.table import Table

    entries = _matching(model, dataset, status)
    if not entries:
        click.echo("No cached evaluations found.")
        return
    rows = [
        [str(e["task_id"]), str(e["model"] or ""), str(e["dataset"] or ""), str(e["status"]),
         str(e["runs"]), _created(e)]
        for e in entries
    ]
    console = Console(highlight=False)
    if not console.is_terminal:
        # Tab-separated, with tabs expanded to 8 columns as `osmosis eval cache ls` prints them.
        for row in rows:
            click.echo("\t".join(row).expandtabs(8))
        return
    table = Table("TASK ID", "MODEL", "DATASET", "STATUS", "RUNS", "CREATED", header_style="bold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@cache_group.command("rm")
@click.argument("task_id", required=False)
@click.option("--all", "remove_all", is_flag=True, help="Remove every cached task.")
@click.option("--model", default=None, help="Only tasks whose model contains this text.")
@click.option("--dataset", default=None, help="Only tasks whose dataset path contains this text.")
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
    """Remove cached eval tasks (one TASK_ID without asking, or --all / filters)."""
    if not task_id and not (remove_all or model or dataset or status):
        click.echo("Error: Provide a task_id, --all, or at least one filter "
                   "(--model, --dataset, --status).", err=True)
        raise SystemExit(1)
    entries = _matching(None, None, None, task_id) if task_id else _matching(
        None if remove_all else model, None if remove_all else dataset,
        None if remove_all else status)
    if not entries:
        click.echo("No matching cached evaluations found.")
        raise SystemExit(1)
    if not task_id and not yes:
        click.echo(f"Will delete {len(entries)} cached evaluation(s):")
        for e in entries:
            click.echo(f"  {e['task_id']}  {e['model'] or ''}  {e['dataset'] or ''}  "
                       f"({e['status']})")
        try:
            answer = click.prompt(f"Delete {len(entries)} cached evaluation(s)? [y/N]",
                                  default="", show_default=False, prompt_suffix=" ")
        except click.Abort:
            click.echo("\nAborted.")
            raise SystemExit(130) from None
        if answer.strip().lower() not in ("y", "yes"):
            click.echo("Aborted.")
            return
    root = cache_root()
    for entry in entries:
        path = Path(entry["path"])
        for part in task_files(path):
            part.unlink(missing_ok=True)
        path.with_name(f"{entry['task_id']}.lock").unlink(missing_ok=True)
        _remove_empty(path.parent, root)
    click.echo(f"Deleted {len(entries)} cached evaluation(s).")


def _remove_empty(folder: Path, root: Path) -> None:
    """The task's dataset folder, then its model folder, when nothing else is left in them."""
    for candidate in (folder, folder.parent):
        if candidate == root or not candidate.is_dir() or any(candidate.iterdir()):
            return
        candidate.rmdir()
