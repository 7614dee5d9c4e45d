"""`rolloutctl inspect`: import a repo bundle on the user-code side and report what it holds.

The inspection Job's entrypoint (and, in `rolloutctl run`, a sandboxed process): it loads the
bundle's `mcp/main.py` and lists its tools, finds and checks the scorers, and writes an
`InspectionReport` as its termination message. It holds no credential; the trusted phases read
its report instead of importing the repo. A repo problem exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rollout_operator.cli.pod_common import EXIT_CONFIG, PodFailure, run_pod_command


@click.command("inspect", hidden=True)
@click.option("--repo", "repo", type=click.Path(file_okay=False), default=None,
              help="The unpacked bundle (default: the run config's repo_dir).")
@click.option("--scorer", "scorers", multiple=True,
              help="module:function the run names (repeatable; default: spec.scoring, else "
                   "every scorer found).")
@click.option("--rollout", "rollout_name", default=None,
              help="Check rollouts/NAME of an Osmosis 0.3 workspace instead (spec.rollout).")
@click.option("--rollout-entrypoint", "rollout_entrypoint", default="main.py",
              show_default=True, help="The entrypoint of --rollout.")
def inspect_command(repo: str | None, scorers: tuple[str, ...], rollout_name: str | None,
                    rollout_entrypoint: str) -> None:
    """List the bundle's tools and scorers and every problem (the inspection Job's entrypoint)."""
    sys.dont_write_bytecode = True

    def body() -> dict[str, Any]:
        import os

        from rollout_operator.runtime.inspection import inspect_bundle
        from rollout_operator.runtime.run_config import DEFAULT_REPO_DIR, RUN_CONFIG_ENV, RunConfig

        wanted: list[str] | None = list(scorers) or None
        root = repo
        rollout = None
        if os.environ.get(RUN_CONFIG_ENV):
            config = RunConfig.from_env()
            rollout = config.spec.rollout
            wanted = wanted or config.spec.scoring.functions
            root = root or config.repo_dir
        folder = Path(root or DEFAULT_REPO_DIR).resolve()
        checked = (rollout_name, rollout_entrypoint) if rollout_name else (
            (rollout.name, rollout.entrypoint) if rollout is not None else None)
        if checked is not None:
            from rollout_operator.workspaces.bundle_check import inspect_workspace_rollout

            report = inspect_workspace_rollout(folder, *checked)
        else:
            report = inspect_bundle(folder, wanted)
        if not report.ok:
            first = report.problems[0]
            where = f"{first.file}: " if first.file else ""
            more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
            raise PodFailure(f"the repository has problems: {where}{first.message}{more}",
                             exit_code=EXIT_CONFIG, result=report.message())
        return report.message()

    run_pod_command(body)
