"""`rolloutctl sync`: the sync Job's entrypoint (trusted side: it never runs the repo's code).

Clones `spec.repo` at its revision, pins the commit, gets the bundle of the repo folder (reused
from `<output>/bundles/<sha>-<depshash>.tar.gz` when a run at the same commit and dependency
declaration already built it, otherwise built and uploaded), and checks what it can without
importing anything: that `mcp/main.py` is there and the dataset window. What the repo's code
holds (its tools, its scorers) is found by `rolloutctl inspect` on the user-code side. Sync
writes `run.json` under the run's prefix and reports, in the termination message:

    {"ok", "commit", "bundle", "bundleFetchURL", "reused", "depsHash", "datasetRows",
     "workItems", "problems": [{"file", "message"}]}

`bundleFetchURL` is a signed URL that reads the bundle (and nothing else) for a week, without
credentials: user-code pods (inspection, tools, scorers) fetch the bundle with it, since they
hold no storage credential. The operator passes it to them and never into status.

A repo or spec problem (no `mcp/main.py`, a bad dataset, an unknown revision, refused
credentials) exits 2, which the Job does not retry; a network or storage hiccup exits 1, which
it does. A bundle is uploaded only when these checks pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollout_operator.cli.pod_common import (
    EXIT_CONFIG,
    EXIT_RETRY,
    PodFailure,
    load_run_config,
    run_pod_command,
)
from rollout_operator.runtime.run_config import RunConfig

if TYPE_CHECKING:
    from rollout_operator.runtime.git_sync import SyncedRepo

log = logging.getLogger(__name__)

MCP_MAIN = "mcp/main.py"
BUNDLE_URL_TTL_S = 7 * 24 * 3600
"""How long the bundle's signed URL works (S3's longest): user-code pods started later (a
tool pod rescheduled a week into a run) cannot fetch it."""


@dataclass(slots=True)
class SyncReport:
    """What the sync found; its `message()` is the termination message."""

    commit: str | None = None
    bundle: str | None = None
    bundle_fetch_url: str | None = None
    """A signed URL that reads the bundle without credentials: for user-code pods. Never
    copied into status."""
    reused: bool = False
    deps_hash: str | None = None
    dataset_rows: int | None = None
    work_items: int | None = None
    invalid_rows: int | None = None
    """Rows of the window that cannot be used: their samples are recorded as invalid."""
    problems: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, file: str | None, message: str) -> None:
        self.problems.append({"file": file, "message": message})

    def partial(self) -> dict[str, Any]:
        """What is known so far, for a failure that a retry may fix: without `ok` and
        `problems`, so the operator waits for the Job's retries instead of failing the run."""
        return {k: v for k, v in self.message().items() if k not in ("ok", "problems")}

    def message(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "commit": self.commit,
            "bundle": self.bundle,
            "bundleFetchURL": self.bundle_fetch_url,
            "reused": self.reused,
            "depsHash": self.deps_hash,
            "datasetRows": self.dataset_rows,
            "workItems": self.work_items,
            "invalidRows": self.invalid_rows,
            "problems": self.problems,
        }


def output_url(config: RunConfig) -> str:
    """The output root: `spec.output.url`, else the run prefix without `<ns>/<name>-<uid8>`."""
    if config.spec.output.url:
        return config.spec.output.url.rstrip("/")
    return config.run_prefix.rstrip("/").rsplit("/", 2)[0]


def run_sync(
    config: RunConfig,
    *,
    workdir: Path,
    environ: Mapping[str, str] = os.environ,
    checkout: SyncedRepo | None = None,
) -> SyncReport:
    """Do the whole sync in `workdir`; returns the report (problems included), or raises
    `PodFailure` when it cannot get that far.

    `checkout` is a repo already in hand (a local run of a folder: copied as it is, with a
    content hash as its commit); the clone is then skipped.
    """
    from rollout_operator.runtime.bundle import (
        BundleError,
        build_bundle,
        deps_hash,
        unpack_bundle,
    )
    from rollout_operator.runtime.git_sync import GitCredentials, GitSyncError, sync_repo
    from rollout_operator.runtime.run_layout import bundle_key
    from rollout_operator.runtime.storage import StorageConfigError, StorageError, open_store

    spec = config.spec
    report = SyncReport()
    try:
        if checkout is None:
            credentials = GitCredentials.from_env(environ)
            synced = sync_repo(spec.repo.url, spec.repo.revision, workdir / "checkout",
                               credentials=credentials)
        else:
            synced = checkout
        report.commit = synced.commit
        folder = synced.folder(spec.repo.path)
    except GitSyncError as exc:
        if exc.kind in ("network", "git_failed"):
            raise PodFailure(str(exc), exit_code=EXIT_RETRY, result=report.partial()) from None
        report.problem(None, str(exc))
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG, result=report.message()) from None

    report.deps_hash = deps_hash(folder)
    key = bundle_key(synced.commit, report.deps_hash)
    archive = workdir / "bundle.tar.gz"
    unpacked = workdir / "bundle"
    try:
        store = open_store(output_url(config), endpoint=spec.output.endpoint, environ=environ)
        report.reused = asyncio.run(store.exists(key))
        if report.reused:
            log.info("reusing the bundle %s", store.url_for(key))
            asyncio.run(store.download(key, archive))
            try:
                unpack_bundle(archive, unpacked)
            except BundleError as exc:
                log.warning("the stored bundle is unusable (%s); building it again", exc)
                shutil.rmtree(unpacked, ignore_errors=True)
                report.reused = False
        if not report.reused:
            log.info("building the bundle of %s at %s", spec.repo.path or "the repo root",
                     synced.commit)
            build_bundle(folder, install_deps=True, out=archive)
            unpack_bundle(archive, unpacked)
    except BundleError as exc:
        report.problem(None, str(exc))
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG, result=report.message()) from None
    except StorageConfigError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG, result=report.partial()) from None
    except StorageError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_RETRY, result=report.partial()) from None

    validate_bundle(unpacked, config, report, environ=environ)
    try:
        if report.ok and not report.reused:
            asyncio.run(store.put_file(key, archive))
            log.info("uploaded the bundle to %s", store.url_for(key))
        if report.ok:
            report.bundle = store.url_for(key)
            report.bundle_fetch_url = asyncio.run(store.signed_get_url(key, BUNDLE_URL_TTL_S))
        write_run_json(config, report, environ=environ)
    except StorageConfigError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG, result=report.partial()) from None
    except StorageError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_RETRY, result=report.partial()) from None
    return report


def validate_bundle(
    root: Path, config: RunConfig, report: SyncReport, *, environ: Mapping[str, str] = os.environ
) -> None:
    """Check what the bundle holds without running any of it: the tool server's file and the
    dataset window. Importing the repo (its tools, its scorers) is inspection's job, on the
    user-code side (`rolloutctl inspect`)."""
    rollout = config.spec.rollout
    if rollout is not None:
        from rollout_operator.workspaces.bundle_check import inspect_workspace_rollout

        for problem in inspect_workspace_rollout(root, rollout.name, rollout.entrypoint).problems:
            report.problem(problem.file, problem.message)
    elif not (root / MCP_MAIN).is_file():
        report.problem(MCP_MAIN, "missing: the repo folder needs mcp/main.py, the tool server "
                       "that defines the tools (check spec.repo.path and the revision)")
    _check_dataset(root, config, report, environ=environ)


BAD_ROWS_LISTED = 10
"""Bad rows named one by one in a strict run's problems; the count covers the rest."""


def _check_dataset(
    root: Path, config: RunConfig, report: SyncReport, *, environ: Mapping[str, str]
) -> None:
    from rollout_operator.runtime.dataset import BadRow, iter_rows_lenient
    from rollout_operator.runtime.errors import LocalExecutionError
    from rollout_operator.runtime.storage import StorageError, download_url

    dataset = config.spec.dataset
    if dataset.url:
        shown = dataset.url
        local = root.parent / ("dataset" + _suffix(dataset.url))
        try:
            asyncio.run(download_url(dataset.url, local, endpoint=config.spec.output.endpoint,
                                     environ=environ))
        except StorageError as exc:
            report.problem(shown, f"spec.dataset.url cannot be read: {exc}")
            return
    elif dataset.path:
        shown = dataset.path
        local = (root / dataset.path).resolve()
        if not local.is_relative_to(root) or not local.is_file():
            report.problem(shown, "spec.dataset.path: no such file in the repo folder at this "
                           "revision (the path is relative to spec.repo.path)")
            return
    else:
        return
    # Every row of the window is read: a bad one is counted (the workers record its samples
    # as invalid) or, with spec.dataset.strict, refuses the run, naming its line.
    rows = bad = 0
    try:
        for row in iter_rows_lenient(local, offset=dataset.offset, limit=dataset.limit,
                                     source=shown):
            rows += 1
            if isinstance(row, BadRow):
                bad += 1
                if dataset.strict and bad <= BAD_ROWS_LISTED:
                    report.problem(shown, f"{row.location}: {row.problem}")
    except (LocalExecutionError, OSError) as exc:
        report.problem(shown, str(exc))
        return
    if rows == 0:
        report.problem(shown, f"the dataset window (offset {dataset.offset}) has no rows")
    if dataset.strict and bad:
        more = f" (the first {BAD_ROWS_LISTED} are listed)" if bad > BAD_ROWS_LISTED else ""
        report.problem(shown, f"{bad} row(s) of the window cannot be used{more} and "
                       "spec.dataset.strict is true: fix them, or set strict to false to record "
                       "them as invalid and run the others")
    report.dataset_rows = rows
    report.work_items = rows * dataset.samples_per_prompt
    report.invalid_rows = bad


def _suffix(url: str) -> str:
    name = url.rsplit("/", 1)[-1].lower()
    for suffix in (".jsonl", ".csv", ".parquet"):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def write_run_json(
    config: RunConfig, report: SyncReport, *, environ: Mapping[str, str] = os.environ
) -> str:
    """Write `run.json` under the run prefix: the spec (Secret names only, never values), the
    commit, what sync found, and the versions in use. Returns its URL."""
    from rollout_operator import __version__
    from rollout_operator.runtime.run_layout import RUN_JSON
    from rollout_operator.runtime.storage import open_store

    document = {
        "namespace": config.namespace,
        "name": config.name,
        "uid": config.uid,
        "spec": config.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "commit": report.commit,
        "bundle": report.bundle,
        "reused": report.reused,
        "depsHash": report.deps_hash,
        "datasetRows": report.dataset_rows,
        "workItems": report.work_items,
        "invalidRows": report.invalid_rows,
        "problems": report.problems,
        "versions": {
            "rolloutOperator": __version__,
            "python": platform.python_version(),
        },
        "syncedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    store = open_store(config.run_prefix, endpoint=config.spec.output.endpoint, environ=environ)
    data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    asyncio.run(store.put(RUN_JSON, data))
    return store.url_for(RUN_JSON)


def _sync_body(workdir: str | None, checkout: str | None = None,
               commit: str | None = None) -> dict[str, Any]:
    config = load_run_config()
    scratch = Path(tempfile.mkdtemp(prefix="rollout-sync-", dir=workdir))
    synced = None
    if checkout is not None or commit is not None:
        from rollout_operator.runtime.git_sync import SyncedRepo

        if checkout is None or not commit or not all(c in "0123456789abcdef" for c in commit):
            raise PodFailure("--checkout and --commit go together; --commit is a lowercase "
                             "hex SHA or content hash", exit_code=EXIT_CONFIG)
        synced = SyncedRepo(commit, Path(checkout).resolve())
    try:
        report = run_sync(config, workdir=scratch, checkout=synced)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not report.ok:
        first = report.problems[0]
        where = f"{first['file']}: " if first["file"] else ""
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise PodFailure(f"the repository has problems: {where}{first['message']}{more}",
                         exit_code=EXIT_CONFIG, result=report.message())
    return report.message()


@click.command("sync", hidden=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Writable folder for the clone and the bundle (default: $TMPDIR).")
@click.option("--checkout", type=click.Path(exists=True, file_okay=False), default=None,
              help="A repo already checked out (rolloutctl run): no clone. Needs --commit.")
@click.option("--commit", default=None, help="The commit (or content hash) of --checkout.")
def sync_command(workdir: str | None, checkout: str | None, commit: str | None) -> None:
    """Clone the run's repo, validate it and upload its bundle (the sync Job's entrypoint).

    Reads the run from $ROLLOUT_RUN_CONFIG and the clone credentials from $ROLLOUT_GIT_TOKEN or
    $ROLLOUT_GIT_SSH_KEY; writes its report to the termination-message file.
    """
    sys.dont_write_bytecode = True
    run_pod_command(lambda: _sync_body(workdir, checkout, commit))
