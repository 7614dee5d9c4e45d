"""A run's output folder (`rolloutctl run`, or a cluster run's prefix in object storage).

The records come from `trajectories.parquet` when the run has been aggregated (it holds the
group advantages), else from the committed shard parts (a run still going, or stopped), read
the way the aggregate reads them: one record per (row, sample). `results.json` gives the
summary and the run's identity, `run.json` the commit and the spec.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rollout_operator.report.model import ReportInput, ReportSourceError, Rollout
from rollout_operator.runtime.records import RecordReadError, read_parquet_records
from rollout_operator.runtime.run_layout import RESULTS_JSON, RUN_JSON, TRAJECTORIES_PARQUET
from rollout_operator.runtime.shards import list_all_parts, read_all_records
from rollout_operator.runtime.storage import ObjectStore, StorageError, open_store


async def load_run_folder(url: str) -> ReportInput:
    """The run whose files are under `url` (a local folder, `file://`, `s3://` or `gs://`)."""
    store = open_store(url)
    results = await _json(store, RESULTS_JSON)
    run_json = await _json(store, RUN_JSON)
    rollouts, notes = await _rollouts(store, results)
    if rollouts is None:
        raise ReportSourceError(await _not_a_run(store))
    config: dict[str, Any] = dict(results.get("config") or {}) if results else {}
    spec: dict[str, Any] = run_json.get("spec") or {} if run_json else {}
    scorers = [str(n) for n in config.get("eval_fns") or ()] or list(
        (spec.get("scoring") or {}).get("functions") or ()
    ) or list(dict.fromkeys(name for r in rollouts for name in r.scores))
    dataset = spec.get("dataset") or {}
    model = config.get("model") or (spec.get("model") or {}).get("name")
    summary = results.get("summary") if results else None
    return ReportInput(
        source=store.url,
        kind="run",
        model=None if model is None else str(model),
        commit=(config.get("commit") or (run_json or {}).get("commit")),
        scorers=scorers,
        n_runs=int(config.get("n_runs") or dataset.get("samplesPerPrompt") or 1),
        pass_threshold=float(config.get("pass_threshold",
                                        (spec.get("scoring") or {}).get("passThreshold", 1.0))),
        status="completed" if results else "not aggregated",
        created_at=(results or {}).get("created_at") or (run_json or {}).get("syncedAt"),
        config=config or _identity(run_json),
        summary=summary if isinstance(summary, dict) else None,
        rollouts=rollouts,
        notes=notes,
    )


async def _rollouts(
    store: ObjectStore, results: dict[str, Any] | None
) -> tuple[list[Rollout] | None, list[str]]:
    if await store.exists(TRAJECTORIES_PARQUET):
        return await _parquet_rollouts(store), []
    if await list_all_parts(store, ""):
        try:
            records = [r async for r in read_all_records(store, "")]
        except RecordReadError as exc:
            raise ReportSourceError(str(exc)) from None
        notes = [] if results else [
            "The run has not been aggregated yet: these are the rollouts committed so far."]
        return [Rollout.from_record(r) for r in records], notes
    if results and isinstance(results.get("runs"), list):
        return [Rollout.from_eval_run(run, None) for run in results["runs"]], [
            "No trajectory records were found beside results.json: conversations are missing."]
    return None, []


async def _parquet_rollouts(store: ObjectStore) -> list[Rollout]:
    with tempfile.TemporaryDirectory(prefix="rollout-report-") as folder:
        if store.scheme == "file":
            path = Path(unquote(urlsplit(store.url).path)) / TRAJECTORIES_PARQUET
        else:
            path = await store.download(TRAJECTORIES_PARQUET, Path(folder) / TRAJECTORIES_PARQUET)
        try:
            rollouts = [Rollout.from_record(r) for r in read_parquet_records(path)]
        except RecordReadError as exc:
            raise ReportSourceError(str(exc)) from None
    return rollouts


async def _json(store: ObjectStore, key: str) -> dict[str, Any] | None:
    if not await store.exists(key):
        return None
    try:
        value = json.loads(await store.get(key))
    except ValueError as exc:
        raise ReportSourceError(f"{store.url_for(key)} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ReportSourceError(f"{store.url_for(key)} is not a JSON object")
    return value


def _identity(run_json: dict[str, Any] | None) -> dict[str, Any]:
    if not run_json:
        return {}
    spec = run_json.get("spec") or {}
    dataset = spec.get("dataset") or {}
    return {
        "run": f"{run_json.get('namespace')}/{run_json.get('name')}",
        "repo": (spec.get("repo") or {}).get("url"),
        "dataset": dataset.get("path") or dataset.get("url"),
        "model": (spec.get("model") or {}).get("name"),
    }


async def _not_a_run(store: ObjectStore) -> str:
    """Why `store` is not a run folder, naming the runs below it when it holds some."""
    try:
        keys = await store.list("")
    except StorageError as exc:
        return str(exc)
    runs = sorted({key.rsplit("/", 1)[0] for key in keys
                   if key.endswith("/" + RESULTS_JSON) or key.endswith("/" + RUN_JSON)})
    if runs:
        shown = ", ".join(store.url_for(r) for r in runs[:5])
        more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
        return (f"{store.url} holds runs, not one run's files: give one of {shown}{more}")
    return (f"{store.url} holds no {RESULTS_JSON}, {TRAJECTORIES_PARQUET} or shards/: give an "
            "eval results JSON (results_*.json) or a run's output folder "
            "(<output>/<namespace>/<name>-<uid>)")
