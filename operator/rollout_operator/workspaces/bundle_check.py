"""Checking that a repo bundle is an Osmosis 0.3 workspace holding the rollout a RolloutRun's
`spec.rollout` names (the inspection step of such a run). Nothing of the repo is imported."""

from __future__ import annotations

from pathlib import Path

from rollout_operator.runtime.inspection import InspectionReport
from rollout_operator.workspaces.errors import WorkspaceError
from rollout_operator.workspaces.eval_config import EvalConfig, check_rollout_paths

ROLLOUTS_DIR = "rollouts"
MCP_MAIN = "mcp/main.py"


def inspect_workspace_rollout(root: Path, name: str, entrypoint: str) -> InspectionReport:
    """A report with no tools and no scorers (the Grader scores), or the problems that keep
    `rollouts/<name>/<entrypoint>` of the bundle at `root` from running."""
    report = InspectionReport()
    if not (root / ROLLOUTS_DIR).is_dir():
        hint = (" It has mcp/main.py: it is an Osmosis Local Rollout repository; remove "
                "spec.rollout to run its tools and reward functions."
                if (root / MCP_MAIN).is_file() else "")
        report.problem(ROLLOUTS_DIR, "missing: spec.rollout needs an Osmosis 0.3 workspace "
                       "(rollouts/<name>/ with a pyproject.toml and the entrypoint); check "
                       "spec.repo.path and the revision." + hint)
        return report
    config = EvalConfig(path=root, rollout=name, entrypoint=entrypoint, model_path="",
                        dataset="")
    try:
        check_rollout_paths(config, root)
    except WorkspaceError as exc:
        report.problem(f"{ROLLOUTS_DIR}/{name}", f"{exc} (spec.rollout.name is {name!r}, "
                       f"spec.rollout.entrypoint is {entrypoint!r})")
    return report
