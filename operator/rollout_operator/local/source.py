"""The repo of a local run, pinned: what `rolloutctl run` hands to the sync phase.

A git URL (or `file://` URL) is cloned at `spec.repo.revision` (the remote's default branch when
unset), outside any sandbox and with the user's own git setup; a rerun of a started run is
pinned to the commit it started with. A local folder is copied as it is, uncommitted edits
included (in a git work tree: the tracked files and the untracked ones git does not ignore;
elsewhere everything but caches, virtual environments and the run's own output). Its commit is:

- in a git work tree with nothing uncommitted under the folder: `git rev-parse HEAD` (or the
  commit the run started with, when the folder has not changed since);
- otherwise a content hash of the copy (paths, executable bits and bytes), so an unchanged
  folder keeps its bundle and its run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rollout_operator.runtime.git_sync import (
    GitCredentials,
    GitSyncError,
    SyncedRepo,
    describe_revision,
    sync_repo,
)

SourceKind = Literal["git", "git-head", "folder"]

SKIPPED_NAMES = frozenset({
    ".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".tox", ".nox",
})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_HASH_CHARS = 40


@dataclass(frozen=True, slots=True)
class LocalSource:
    """How the repo was pinned, and where its checkout is."""

    kind: SourceKind
    description: str
    checkout: SyncedRepo

    @property
    def commit(self) -> str:
        return self.checkout.commit


def is_local_path(url: str) -> bool:
    from rollout_operator.api.validation import repo_url_kind

    return repo_url_kind(url) == "local"


def prepare_source(
    url: str,
    revision: str | None,
    subpath: str,
    dest: Path,
    *,
    pinned_commit: str | None = None,
    exclude: Iterable[Path] = (),
    environ: Mapping[str, str] | None = None,
) -> LocalSource:
    """Pin the repo at `url` into `dest` (an absent folder).

    A git URL is cloned with git's own configuration (credential helpers, SSH agent) plus
    `ROLLOUT_GIT_TOKEN` / `ROLLOUT_GIT_SSH_KEY` from `environ`. `pinned_commit` is the commit a
    run started with (from its run.json): a git source is checked out at it again, so a resumed
    run keeps its code; a local folder must still hold the same files, else `SourceChanged`.
    """
    if not is_local_path(url):
        wanted = pinned_commit or revision
        checkout = sync_repo(url, wanted, dest, credentials=GitCredentials.from_env(environ))
        why = "pinned when the run started" if pinned_commit else \
            f"{describe_revision(revision)} of {url}"
        return LocalSource("git", f"commit {checkout.commit} ({why})", checkout)
    folder = Path(url)
    if not folder.is_dir():
        raise GitSyncError(f"spec.repo.url: {folder} is not a folder", kind="not_a_repository")
    inner = subpath.strip("/")
    target = (folder / inner).resolve() if inner else folder.resolve()
    if not target.is_dir():
        raise GitSyncError(f"spec.repo.path {subpath!r} is not a folder in {folder}",
                           kind="bad_path")
    copy_root = dest / "copy"
    head = _clean_head(target, [path.resolve() for path in exclude])
    files = _git_files(target) if _git(target, "rev-parse", "--show-toplevel") else None
    copied = copy_folder(target, copy_root / inner if inner else copy_root, files=files,
                         exclude=exclude)
    if head is not None:
        commit = head
        if pinned_commit and pinned_commit != head and _same_tree(target, pinned_commit, head):
            commit = pinned_commit
        description = (f"commit {commit} (git HEAD of {target}"
                       + (", unchanged since" if commit != head else "") + ", no uncommitted "
                       "changes)")
        kind: SourceKind = "git-head"
    else:
        commit = content_hash(copied)
        why = "uncommitted changes" if files is not None else "not a git repo"
        description = f"content hash {commit} of {target} ({why}: copied as it is)"
        kind = "folder"
    if pinned_commit and pinned_commit != commit:
        raise SourceChanged(
            f"{target} changed since this run started (it ran {pinned_commit}, the folder is "
            f"now {commit}), so its committed rollouts came from other code"
        )
    return LocalSource(kind, description, SyncedRepo(commit, copy_root))


class SourceChanged(GitSyncError):
    """A resumed run's local folder no longer holds the code the run started with."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="unknown_revision")


def _clean_head(folder: Path, exclude: Iterable[Path] = ()) -> str | None:
    """HEAD's commit when `folder` is in a git work tree with nothing uncommitted under it
    (the `exclude` folders, such as the run's own output, left aside)."""
    skipped = [f":(exclude){path.relative_to(folder).as_posix()}" for path in exclude
               if path.is_relative_to(folder) and path != folder]
    dirty = _git(folder, "status", "--porcelain", "--untracked-files=all", "--", ".", *skipped)
    head = _git(folder, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if dirty is None or dirty.strip() or not head:
        return None
    return head.strip()


def _same_tree(folder: Path, old: str, new: str) -> bool:
    """Whether `folder` holds the same files at commits `old` and `new`."""
    if _git(folder, "cat-file", "-e", f"{old}^{{commit}}") is None:
        return False
    return _git(folder, "diff", "--quiet", old, new, "--", ".") is not None


def _git(folder: Path, *args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_files(folder: Path) -> set[Path] | None:
    """Tracked and untracked-but-not-ignored files under `folder`, relative to it."""
    listed = _git(folder, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is None:
        return None
    return {Path(name) for name in listed.split("\0") if name and (folder / name).exists()}


def _walk(root: Path, exclude: set[Path]) -> Iterator[Path]:
    for current, dirs, names in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_NAMES
                         and (here / d).resolve() not in exclude)
        for name in sorted(names):
            if not name.endswith(_SKIPPED_SUFFIXES):
                yield (here / name).relative_to(root)


def copy_folder(source: Path, dest: Path, *, files: set[Path] | None = None,
                exclude: Iterable[Path] = ()) -> Path:
    """Copy `source` into `dest`: `files` (relative paths) when given, else everything but
    caches, virtual environments and the `exclude` folders. Returns `dest`."""
    excluded = {path.resolve() for path in exclude}
    chosen = sorted(files) if files is not None else list(_walk(source, excluded))
    dest.mkdir(parents=True, exist_ok=True)
    for relative in chosen:
        if any(part in SKIPPED_NAMES for part in relative.parts) or \
                relative.name.endswith(_SKIPPED_SUFFIXES):
            continue
        origin = source / relative
        if any(origin.resolve().is_relative_to(path) for path in excluded):
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            os.symlink(os.readlink(origin), target)
        elif origin.is_file():
            shutil.copy2(origin, target)
    return dest


def content_hash(root: Path) -> str:
    """A hex digest of the tree under `root`: relative paths, executable bits and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            kind, data = b"l", os.readlink(path).encode()
        else:
            kind = b"x" if path.stat().st_mode & stat.S_IXUSR else b"f"
            data = path.read_bytes()
        digest.update(kind + relative.encode() + b"\0" + str(len(data)).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()[:_HASH_CHARS]
