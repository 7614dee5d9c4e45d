"""`rolloutctl describe RUN`: one local run in full, as `kubectl describe` shows an object.

RUN is a run folder's name (`calc-1a2b3c4d`, as `rolloutctl runs` lists it), optionally with
its namespace (`default/calc-1a2b3c4d`), or a run name (`calc`: its newest folder). Shown: where
it came from (manifest, repo, commit, model), its state and conditions, the counts of committed
rollouts, failures by category, finish reasons, the mean per scorer, and its output paths.
"""

from __future__ import annotations

import json

import click

from rollout_operator.cli.runs_cmd import age, load_runs, output_option, status_text, table


@click.command("describe")
@click.argument("run")
@output_option
@click.option("--endpoint", default=None, help="S3 endpoint of an S3-compatible store.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as one JSON object.")
def describe_command(run: str, output: str, endpoint: str | None, as_json: bool) -> None:
    """Show one local run: conditions, counts, failures by category, output paths."""
    from rollout_operator.local.run_state import find_run

    views = load_runs(output, endpoint)
    found = find_run(views, run)
    if not found:
        known = ", ".join(sorted({v.folder.rstrip("/").rsplit("/", 1)[-1] for v in views}))
        raise click.ClickException(
            f"no run {run!r} in {output}" + (f" (there are: {known})" if known else "")
            + "; `rolloutctl runs` lists them, `--output` names another folder")
    view = found[0]  # newest first
    if as_json:
        click.echo(json.dumps(view.as_json(), indent=1))
        return
    progress = view.progress
    lines = [
        f"Name:          {view.name}",
        f"Namespace:     {view.namespace}",
        f"Folder:        {view.folder}",
        f"Generation:    {view.generation}",
        f"Manifest:      {view.manifest or '-'}",
        f"Repo:          {view.repo or '-'}",
        f"Commit:        {view.commit or '-'}",
        f"Model:         {view.model or '-'}",
        f"Status:        {status_text(view)}"
        + (f" (exit {view.exit_code})" if view.exit_code is not None else ""),
        f"Started:       {view.started_at or '-'} ({age(view.age_s())} ago)",
        f"Finished:      {view.finished_at or '-'}",
    ]
    if view.error:
        lines.append(f"Error:         {view.error}")
    lines += ["Conditions:", _indented(table(
        [("TYPE", "STATUS", "MESSAGE")]
        + [(c["type"], c["status"], c["message"]) for c in view.conditions]))]
    lines += ["Rollouts:",
              f"  Total:       {view.total}",
              *(f"  {key.capitalize() + ':':<13}{progress.get(key, 0)}"
                for key in ("done", "completed", "failed", "masked", "invalid"))]
    failures = [f"  {k + ':':<13}{v}" for k, v in sorted(view.failures.items())]
    lines += ["Failures by category:", *(failures or ["  none"])]
    if view.finish_reasons:
        lines += ["Finish reasons:",
                  *(f"  {k + ':':<13}{v}" for k, v in sorted(view.finish_reasons.items()))]
    if view.means:
        lines += ["Scores (mean so far):", *(f"  {k}: {v:.3f}" for k, v in view.means.items())]
    lines += ["Outputs:", *(f"  {k + ':':<14}{v}" for k, v in view.outputs.items())]
    if len(found) > 1:
        lines.append(f"({len(found) - 1} older run(s) of {run!r}: `rolloutctl runs` lists them)")
    click.echo("\n".join(lines))


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
