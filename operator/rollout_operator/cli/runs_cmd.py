"""`rolloutctl runs`: the local runs under an output folder, one line each, as `kubectl get`.

Each line is a run folder (`<namespace>/<name>-<uid8>/`): its state (Running, Succeeded,
Failed, Stopped, or Incomplete for a folder no `rolloutctl run` recorded), the rollouts
committed of the total, the first scorer's mean so far and the time since it started. `--json`
prints every run with all that `describe` shows.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rollout_operator.local.run_state import RunView

DEFAULT_OUTPUT = "rollout-output"


def output_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--output", default=DEFAULT_OUTPUT, show_default=True,
        help="The runs' output URL or folder (as `rolloutctl run --output`).")(function)


def load_runs(output: str, endpoint: str | None = None) -> list[RunView]:
    """Every run under `output` (a folder or a URL), newest first; exit 2 when unreadable."""
    from rollout_operator.local.run_state import list_runs
    from rollout_operator.runtime.storage import StorageError

    try:
        return asyncio.run(list_runs(output, os.environ, endpoint))
    except (StorageError, ValueError) as exc:
        raise click.ClickException(f"cannot list the runs in {output}: {exc}") from None


def age(seconds: float | None) -> str:
    """`kubectl`'s ages: 45s, 12m, 3h, 2d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def status_text(view: RunView) -> str:
    """The state, with the phase while it runs: `Running (work)`."""
    return f"{view.state} ({view.phase})" if view.state == "Running" else view.state


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, three spaces apart, no borders, as `kubectl get` prints them."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                          strict=True)).rstrip()
                     for row in rows)


@click.command("runs")
@output_option
@click.option("-n", "--namespace", default=None, help="Only the runs of this namespace.")
@click.option("--endpoint", default=None, help="S3 endpoint of an S3-compatible store.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON list.")
def runs_command(output: str, namespace: str | None, endpoint: str | None,
                 as_json: bool) -> None:
    """List the local runs in OUTPUT (default ./rollout-output), newest first."""
    views = [v for v in load_runs(output, endpoint)
             if namespace is None or v.namespace == namespace]
    if as_json:
        click.echo(json.dumps([v.as_json() for v in views], indent=1))
        return
    if not views:
        click.echo(f"No runs in {output}.", err=True)
        return
    rows = [("NAMESPACE", "NAME", "STATUS", "PROGRESS", "MEAN", "AGE")]
    for view in views:
        mean = view.mean
        rows.append((view.namespace, view.folder.rstrip("/").rsplit("/", 1)[-1],
                     status_text(view), f"{view.progress.get('done', 0)}/{view.total}",
                     "-" if mean is None else f"{mean:.3f}", age(view.age_s())))
    click.echo(table(rows))
