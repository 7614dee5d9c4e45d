"""Read what `rolloutctl report PATH` is given, whatever it is.

PATH is one of:

- an eval results JSON (`results_*.json` from `rolloutctl eval -o`, or the eval cache's file);
- a run's output folder (`<output>/<namespace>/<name>-<uid>`), local or `file://`, `s3://`,
  `gs://`, or the `results.json` inside one;
- a file of trajectory records (`.jsonl` or `trajectories.parquet`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rollout_operator.report.load_eval import is_eval_results, load_eval_results
from rollout_operator.report.load_run import load_run_folder
from rollout_operator.report.model import ReportInput, ReportSourceError, Rollout
from rollout_operator.runtime.records import (
    RecordReadError,
    read_parquet_records,
    read_records,
)
from rollout_operator.runtime.run_layout import RESULTS_JSON, RUN_JSON, SHARDS_DIR
from rollout_operator.runtime.scrub import Scrubber
from rollout_operator.runtime.storage import StorageError


def load_report_input(path: str, scrubber: Scrubber | None = None) -> ReportInput:
    """The rollouts and run details at `path`, rollouts in row and sample order (the primary
    model's before a baseline's); `ReportSourceError` says what is wrong.

    With `scrubber`, the secrets it knows are scrubbed from every conversation and error (the
    writers of records scrubbed theirs; an eval's samples file is as the model wrote it).
    """
    report = _load(path)
    report.rollouts.sort(key=lambda r: (r.row_index, r.sample_index, r.model_tag is not None,
                                        r.model_tag or ""))
    if scrubber:
        for rollout in report.rollouts:
            rollout.messages = scrubber.scrub_data(rollout.messages)
            rollout.error = scrubber.scrub(rollout.error) if rollout.error else rollout.error
            rollout.ground_truth = scrubber.scrub_data(rollout.ground_truth)
        report.config = scrubber.scrub_data(report.config)
    return report


def _load(path: str) -> ReportInput:
    text = path.strip()
    if "://" in text and not text.lower().startswith("file://"):
        url = text.removesuffix("/" + RESULTS_JSON) if text.endswith("/" + RESULTS_JSON) else text
        return _run_folder(url)
    local = Path(unquote(urlsplit(text).path)) if "://" in text else Path(text).expanduser()
    local = local.resolve()
    if not local.exists():
        raise ReportSourceError(f"{path} does not exist: give an eval results JSON or a run's "
                                "output folder")
    if local.is_dir():
        return _run_folder(str(local))
    if local.name == RESULTS_JSON and _is_run_folder(local.parent):
        return _run_folder(str(local.parent))
    if local.suffix == ".parquet" or local.suffix == ".jsonl":
        return _records_file(local)
    return _eval_file(local)


def _run_folder(url: str) -> ReportInput:
    try:
        return asyncio.run(load_run_folder(url))
    except StorageError as exc:
        raise ReportSourceError(str(exc)) from None


def _is_run_folder(folder: Path) -> bool:
    return (folder / RUN_JSON).is_file() or (folder / SHARDS_DIR).is_dir()


def _eval_file(path: Path) -> ReportInput:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportSourceError(f"{path} is not JSON: {exc}") from None
    if not is_eval_results(document):
        raise ReportSourceError(
            f"{path} is not eval results (no 'runs' list and 'config' object): give the "
            "results_*.json that `rolloutctl eval -o DIR` wrote, or a run's output folder")
    return load_eval_results(path, document)


def _records_file(path: Path) -> ReportInput:
    try:
        records = (read_parquet_records(path) if path.suffix == ".parquet"
                   else read_records(path))
        rollouts = [Rollout.from_record(record) for record in records]
    except (RecordReadError, OSError) as exc:
        raise ReportSourceError(f"{path}: {exc}") from None
    except ValueError as exc:  # pyarrow's ArrowInvalid: not a Parquet file
        raise ReportSourceError(f"{path} is not a trajectory records file: {exc}") from None
    return ReportInput(
        source=str(path), kind="run", model=None, commit=None,
        scorers=list(dict.fromkeys(name for r in rollouts for name in r.scores)),
        n_runs=max((r.sample_index + 1 for r in rollouts), default=1), pass_threshold=1.0,
        status=None, created_at=None, config={}, summary=None, rollouts=rollouts,
    )
