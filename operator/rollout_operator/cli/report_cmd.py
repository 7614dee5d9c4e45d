"""`rolloutctl report PATH -o report.html`: one self-contained HTML page over a run's results."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click


@click.command("report")
@click.argument("path")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="The HTML file to write.")
def report_command(path: str, output: Path) -> None:
    """Write an HTML report of eval results or of a run's output.

    PATH is an eval results JSON (what `rolloutctl eval -o DIR` writes, with the samples file
    beside it when --log-samples was given) or a run's output folder (local, file://, s3:// or
    gs://), or a trajectory records file (.jsonl, .parquet). The page needs no network: open
    it from disk in any browser.
    """
    from rollout_operator.report.load import load_report_input
    from rollout_operator.report.model import ReportSourceError
    from rollout_operator.report.page import build_page
    from rollout_operator.runtime.scrub import Scrubber

    started = time.perf_counter()
    scrubber = Scrubber.from_environ(os.environ)
    try:
        report = load_report_input(path, scrubber)
    except ReportSourceError as exc:
        raise click.ClickException(str(exc)) from None
    page = scrubber.scrub(build_page(report))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(output)
    size = output.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"
    click.echo(f"Report: {output} ({len(report.rollouts)} rollouts, {shown}, "
               f"{time.perf_counter() - started:.1f} s)")
