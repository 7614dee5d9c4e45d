"""A digest of a rollout project's own files: what `--fresh` is needed after editing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rollout_operator.workspaces.errors import WorkspaceError

SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "dist", "build",
                          "node_modules"})
SKIPPED_FILES = frozenset({"uv.lock"})


def source_digest(root: Path, *, exclude: Path | None = None) -> str:
    """SHA-256 over the relative path and bytes of every file under `root`, in path order,
    skipping environments, caches, build output, `uv.lock`, `*.egg-info` and `exclude`."""
    digest = hashlib.sha256()
    files: list[tuple[str, Path]] = []
    excluded = exclude.resolve() if exclude is not None else None
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        for name in list(dirnames):
            path = here / name
            if path.is_symlink():
                raise WorkspaceError(f"{path} is a directory symlink: rollout sources may not "
                                     "link to directories")
            if (name in SKIPPED_DIRS or name.endswith(".egg-info")
                    or (excluded is not None and path.resolve() == excluded)):
                dirnames.remove(name)
        for name in filenames:
            if name in SKIPPED_FILES or name.endswith(".pyc"):
                continue
            path = here / name
            files.append((path.relative_to(root).as_posix(), path))
    for relative, path in sorted(files):
        digest.update(relative.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
