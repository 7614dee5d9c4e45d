"""The state of local runs: what `rolloutctl run` records, and `runs` / `describe` read.

`rolloutctl run` keeps `local-run.json` in the run's folder beside `run.json`: the generation
(`--fresh`), the phase it is in, how it ended (`Succeeded`, `Failed`, `Stopped`), its exit code
and error, its process id while it runs, and when it started and ended. Everything else is read
from the run's own files: `run.json` (spec, commit, work items), the committed parts (what is
done, failures by category) and `results.json` (written when the run completes).

A run whose state file says `Running` but whose process is gone was killed (`Stopped`); a
folder without a state file (written by a cluster, or by an older `rolloutctl run`) is
`Succeeded` when it has `results.json`, else `Incomplete`.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout_operator.local.progress import CommitTracker, ProgressState

if TYPE_CHECKING:
    from rollout_operator.local.run_file import LocalRun
    from rollout_operator.runtime.storage import ObjectStore

STATE_JSON = "local-run.json"
MAX_GENERATIONS = 10_000


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


class StateWriter:
    """Writes a run's `local-run.json` as it goes; a failed write never stops the run."""

    def __init__(self, store: ObjectStore, run: LocalRun) -> None:
        self.store = store
        self.document: dict[str, Any] = {
            "name": run.name, "namespace": run.namespace, "uid": run.uid,
            "generation": run.generation, "manifest": str(run.manifest),
            "state": "Running", "phase": "starting", "pid": os.getpid(),
            "host": socket.gethostname(), "startedAt": utc_now(),
        }

    async def update(self, **changes: Any) -> None:
        self.document.update(changes)
        try:
            await self.store.put(STATE_JSON, json.dumps(self.document, indent=1).encode())
        except Exception:  # the state is news for `runs`; the run's own files are what count
            return


async def latest_generation(run: LocalRun, environ: Mapping[str, str]) -> int | None:
    """The newest generation of `run` that has a folder (its `run.json` or state), or None."""
    from rollout_operator.runtime.run_layout import RUN_JSON, run_prefix
    from rollout_operator.runtime.storage import open_store

    latest = None
    for generation in range(MAX_GENERATIONS):
        candidate = run.with_generation(generation)
        prefix = run_prefix(run.output_url, run.namespace, run.name, candidate.uid)
        store = open_store(prefix, endpoint=run.spec.output.endpoint, environ=environ)
        if not (await store.exists(RUN_JSON) or await store.exists(STATE_JSON)):
            break
        latest = generation
    return latest


@dataclass
class RunView:
    """One local run as `runs` lists it and `describe` shows it."""

    name: str
    namespace: str
    folder: str
    state: str
    phase: str
    generation: int = 0
    total: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    finish_reasons: dict[str, int] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    error: str | None = None
    model: str | None = None
    commit: str | None = None
    repo: str | None = None
    manifest: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    conditions: list[dict[str, str]] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        """The first scorer's mean so far (the one `runs` shows)."""
        return next(iter(self.means.values()), None)

    def age_s(self, now: float | None = None) -> float | None:
        started = _parse_time(self.started_at)
        return None if started is None else max(0.0, (now or time.time()) - started)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "namespace": self.namespace, "folder": self.folder,
            "state": self.state, "phase": self.phase, "generation": self.generation,
            "progress": {**self.progress, "total": self.total},
            "scoreMeans": self.means, "failures": self.failures,
            "finishReasons": self.finish_reasons, "startedAt": self.started_at,
            "finishedAt": self.finished_at, "exitCode": self.exit_code, "error": self.error,
            "model": self.model, "commit": self.commit, "repo": self.repo,
            "manifest": self.manifest, "outputs": self.outputs, "conditions": self.conditions,
        }


def _alive(pid: object, host: object) -> bool:
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    from rollout_operator.runtime.storage import StorageError

    try:
        if not await store.exists(key):
            return None
        value = json.loads(await store.get(key))
    except (StorageError, ValueError):
        return None
    return value if isinstance(value, dict) else None


async def read_run(store: ObjectStore, folder: str) -> RunView | None:
    """The run in `store` (opened at the run's folder), or None when it holds no run."""
    from rollout_operator.runtime.run_layout import RESULTS_JSON, RUN_JSON, TRAJECTORIES_PARQUET

    run_json = await _json(store, RUN_JSON)
    local = await _json(store, STATE_JSON)
    if run_json is None and local is None:
        return None
    run_json = run_json or {}
    local = local or {}
    has_results = await store.exists(RESULTS_JSON)
    state = _state(local, has_results)
    phase = str(local.get("phase") or ("done" if has_results else "work"))
    name = str(run_json.get("name") or local.get("name") or folder.rsplit("/", 1)[-1])
    view = RunView(
        name=name, namespace=str(run_json.get("namespace") or local.get("namespace") or ""),
        folder=folder, state=state, phase=phase, generation=int(local.get("generation") or 0),
        total=int(run_json.get("workItems") or 0),
        started_at=local.get("startedAt") or run_json.get("syncedAt"),
        finished_at=local.get("finishedAt"), exit_code=local.get("exitCode"),
        error=local.get("error"), commit=run_json.get("commit"), manifest=local.get("manifest"),
    )
    spec = run_json.get("spec") or {}
    model = spec.get("model") or {}
    view.model = model.get("name") or (model.get("serve") or {}).get("model")
    view.repo = (spec.get("repo") or {}).get("url")
    progress = ProgressState(total=view.total)
    try:
        await CommitTracker(store, progress).poll()
    except Exception as exc:  # a torn part: what was read so far stands
        view.conditions.append({"type": "Readable", "status": "False",
                                "message": f"reading the committed parts failed: {exc}"})
    view.progress = {k: v for k, v in progress.as_dict().items() if k != "scoreMeans"}
    view.progress.pop("resumed", None)
    view.means = progress.means()
    view.failures = dict(progress.failure_categories)
    view.finish_reasons = dict(progress.finish_reasons)
    view.outputs = {"folder": folder}
    for label, key, present in (("run", RUN_JSON, bool(run_json)),
                                ("results", RESULTS_JSON, has_results),
                                ("trajectories", TRAJECTORIES_PARQUET,
                                 has_results and await store.exists(TRAJECTORIES_PARQUET))):
        if present:
            view.outputs[label] = store.url_for(key)
    if local.get("logs"):
        view.outputs["logs"] = str(local["logs"])
    view.conditions = _conditions(view, run_json, has_results) + view.conditions
    return view


def _state(local: Mapping[str, Any], has_results: bool) -> str:
    state = local.get("state")
    if state == "Running":
        return "Running" if _alive(local.get("pid"), local.get("host")) else "Stopped"
    if isinstance(state, str) and state:
        return state
    return "Succeeded" if has_results else "Incomplete"


def _conditions(view: RunView, run_json: Mapping[str, Any],
                has_results: bool) -> list[dict[str, str]]:
    """The run's conditions, in the order the phases reach them, as `kubectl describe` lists."""
    done = int(view.progress.get("done") or 0)
    synced = bool(run_json)
    return [
        {"type": "Synced", "status": str(synced),
         "message": f"commit {view.commit}" if synced else "the repo was not synced yet"},
        {"type": "WorkDone", "status": str(bool(view.total) and done >= view.total),
         "message": f"{done}/{view.total} rollouts committed"},
        {"type": "Aggregated", "status": str(has_results),
         "message": "results.json written" if has_results else "no results.json yet"},
        {"type": "Succeeded", "status": str(view.state == "Succeeded"),
         "message": view.error or view.state},
    ]


async def list_runs(output_url: str, environ: Mapping[str, str],
                    endpoint: str | None = None) -> list[RunView]:
    """Every run under `output_url` (`<namespace>/<name>-<uid8>/`), newest first."""
    from rollout_operator.runtime.storage import open_store

    folders = await _run_folders(output_url, environ, endpoint)
    views = []
    for folder in folders:
        view = await read_run(open_store(folder, endpoint=endpoint, environ=environ), folder)
        if view is not None:
            views.append(view)
    views.sort(key=lambda v: (_parse_time(v.started_at) or 0.0, v.folder), reverse=True)
    return views


async def _run_folders(output_url: str, environ: Mapping[str, str],
                       endpoint: str | None) -> list[str]:
    from rollout_operator.runtime.run_layout import RUN_JSON
    from rollout_operator.runtime.storage import open_store

    names = (RUN_JSON, STATE_JSON)
    local = await asyncio.to_thread(_local_folders, output_url, names)
    if local is not None:
        return local
    base = output_url.rstrip("/")
    keys = await open_store(base, endpoint=endpoint, environ=environ).list("")
    return sorted({f"{base}/{key.rsplit('/', 1)[0]}" for key in keys
                   if key.count("/") == 2 and key.rsplit("/", 1)[-1] in names})


def _local_folders(output_url: str, names: tuple[str, ...]) -> list[str] | None:
    """The run folders of a local output (a folder, or a `file://` URL), else None."""
    if "://" not in output_url:  # a folder, as `rolloutctl run --output` takes it
        output_url = Path(output_url).expanduser().resolve().as_uri()
    base = output_url.rstrip("/")
    path = _file_path(base)
    if path is None:
        return None
    found = {file.parent for name in names for file in path.glob(f"*/*/{name}")}
    return sorted(f"{base}/{p.relative_to(path).as_posix()}" for p in found)


def _file_path(url: str) -> Path | None:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme.lower() == "file" else None


def find_run(views: list[RunView], wanted: str) -> list[RunView]:
    """The runs `wanted` names: a folder name (`calc-1a2b3c4d`), `namespace/folder`, or a run
    name (every generation and spec of it, newest first)."""
    exact = [v for v in views if wanted in (_leaf(v.folder), f"{v.namespace}/{_leaf(v.folder)}")]
    if exact:
        return exact
    namespace, _, name = wanted.rpartition("/")
    return [v for v in views if v.name == name and (not namespace or v.namespace == namespace)]


def _leaf(folder: str) -> str:
    return folder.rstrip("/").rsplit("/", 1)[-1]
