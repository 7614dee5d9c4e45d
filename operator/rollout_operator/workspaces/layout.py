"""Where a workspace is and what it must contain (the git worktree top level of the cwd)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rollout_operator.workspaces.errors import WorkspaceError

REQUIRED_DIRS = ("rollouts", "configs/training", "configs/eval", "data")


def git_top_level(start: Path) -> Path | None:
    """The git worktree top level containing `start`, or None outside a worktree."""
    directory = start if start.is_dir() else start.parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=directory,
                             capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 and out.stdout.strip() \
        else None


def find_workspace(start: Path) -> Path:
    """The workspace containing `start`, checked for the scaffold directories."""
    top = git_top_level(start)
    if top is None:
        raise WorkspaceError(
            "Run this command from an Osmosis workspace directory created by Platform.",
            code="WORKSPACE_REQUIRED")
    missing = [path for path in REQUIRED_DIRS if not (top / path).is_dir()]
    if missing:
        listed = "\n".join(f"  - {path}" for path in missing)
        raise WorkspaceError(
            "This workspace directory is missing required Osmosis scaffold paths.\n"
            f"{listed}\n\nRun `osmosis doctor --fix` in this Git repository to restore the "
            "scaffold (or create the directories).")
    return top


def under(path: Path, root: Path, *, label: str, required_dir: str, suffix: str | None = None
          ) -> Path:
    """`path` resolved, which must lie under `root/required_dir` (and end with `suffix`)."""
    resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
    base = (root / required_dir).resolve()
    if not resolved.is_relative_to(base):
        raise WorkspaceError(f"{label} must live under `{required_dir}/`.\n  Got: {resolved}\n"
                             f"  Expected under: {base}")
    if suffix is not None and resolved.suffix != suffix:
        raise WorkspaceError(f"{label} must be a {suffix} file under `{required_dir}/`, "
                             f"got: {resolved}")
    return resolved
