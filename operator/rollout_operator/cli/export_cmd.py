"""`rolloutctl export RUN_OUTPUT --format sft|dpo|tokens|atif -o PATH`: a run's records as
training data (see `rollout_operator.exports`)."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import click


@click.command("export")
@click.argument("run_output")
@click.option("--format", "fmt", required=True,
              type=click.Choice(["sft", "dpo", "tokens", "atif"]),
              help="sft: JSONL of messages and tools of the passing rollouts; dpo: JSONL of "
                   "prompt, chosen, rejected; tokens: Parquet of token ids, loss mask, "
                   "logprobs, reward, advantage; atif: a folder of ATIF v1.7 JSON files.")
@click.option("-o", "--output", "path", required=True,
              type=click.Path(dir_okay=True, writable=True),
              help="File to write (a folder for atif).")
@click.option("--threshold", type=float, default=None,
              help="sft: the reward a rollout needs (default: the run's "
                   "spec.scoring.passThreshold, as pass@k counts, else 1.0).")
@click.option("--scale-by-std", is_flag=True,
              help="tokens: divide advantages by the prompt's reward std, as "
                   "trajectories.parquet does (default: reward minus the prompt's mean).")
@click.option("--endpoint", default=None, help="S3-compatible endpoint of RUN_OUTPUT.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_command(run_output: str, fmt: str, path: str, threshold: float | None,
                   scale_by_std: bool, endpoint: str | None, as_json: bool) -> None:
    """Export the trajectory records of RUN_OUTPUT, a run's folder or object-store URL
    (<output.url>/<namespace>/<name>-<uid8>, the runPrefix rolloutctl run prints), as
    training data. Masked and invalid records are never exported."""
    from rollout_operator.exports.source import ExportError, RunOutput
    from rollout_operator.exports.write import ExportFormat, ExportResult, export_run
    from rollout_operator.runtime.records import RecordReadError
    from rollout_operator.runtime.storage import StorageError

    async def main() -> ExportResult:
        output = await RunOutput.open(run_output, endpoint=endpoint)
        return await export_run(output, cast(ExportFormat, fmt), path, threshold=threshold,
                                scale_by_std=scale_by_std)

    try:
        result = asyncio.run(main())
    except (ExportError, StorageError, RecordReadError, OSError) as exc:
        click.echo(f"cannot export {run_output}: {exc}", err=True)
        raise SystemExit(1 if isinstance(exc, StorageError | OSError) else 2) from None
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=1))
        return
    left = ", ".join(f"{count} {why}" for why, count in result.left_out.items())
    click.echo(f"wrote {result.written} {fmt} item(s) from {result.records} record(s) to "
               f"{path}" + (f"; left out: {left}" if left else ""))
    for note in result.notes:
        click.echo(f"  {note}", err=True)
