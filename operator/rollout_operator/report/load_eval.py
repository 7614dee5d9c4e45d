"""An eval results JSON (`rolloutctl eval -o`, or the eval cache's file) and its conversations.

The results file has each run's scores, tokens, duration and error; the conversations are in
the samples file written beside it with `--log-samples` (`samples_<stamp>_<task>.jsonl` next to
`results_<stamp>_<task>.json`, or `<stamp>_<task>.samples.jsonl` next to a cache file). Without
one, the prompts are read from the dataset the results name, when it is found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rollout_operator.report.model import ReportInput, ReportSourceError, Rollout, eval_tag

SampleKey = tuple[int, int, str | None]


def is_eval_results(document: object) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("runs"), list)
        and isinstance(document.get("config"), dict)
    )


def load_eval_results(path: Path, document: dict[str, Any]) -> ReportInput:
    config: dict[str, Any] = document["config"]
    samples_path = samples_file(path)
    samples = read_samples(samples_path) if samples_path else {}
    notes: list[str] = []
    prompts: dict[int, list[dict[str, Any]]] = {}
    if not samples:
        dataset = _find_dataset(config, path)
        notes.append("Conversations were not logged: run eval with --log-samples to see them"
                     + (f"; the prompts shown come from {dataset}." if dataset else "."))
        if dataset is not None:
            prompts = _dataset_prompts(dataset, config)
    rollouts = []
    for index, run in enumerate(document["runs"]):
        if not isinstance(run, dict) or "row_index" not in run:
            raise ReportSourceError(f"{path}: runs[{index}] is not an eval run (no row_index)")
        key = (int(run["row_index"]), int(run.get("run_index", 0)), eval_tag(run))
        messages = samples.get(key)
        if messages is None and key[0] in prompts:
            messages = list(prompts[key[0]])
        rollouts.append(Rollout.from_eval_run(run, messages))
    summary = document.get("summary")
    return ReportInput(
        source=str(path),
        kind="eval",
        model=_text(config.get("model")),
        commit=_text(config.get("commit")),
        scorers=[str(name) for name in config.get("eval_fns") or ()] or _score_names(rollouts),
        n_runs=int(config.get("n_runs") or 1),
        pass_threshold=float(config.get("pass_threshold", 1.0)),
        status=_text(document.get("status")),
        created_at=_text(document.get("created_at")),
        config=config,
        summary=summary if isinstance(summary, dict) else None,
        rollouts=rollouts,
        notes=notes,
    )


def samples_file(results: Path) -> Path | None:
    """The samples file written beside `results`, if there is one."""
    candidates = [results.with_suffix(".samples.jsonl")]
    if results.name.startswith("results_"):
        candidates.insert(0, results.with_name("samples_" + results.stem[8:] + ".jsonl"))
    return next((c for c in candidates if c.is_file()), None)


def read_samples(path: Path) -> dict[SampleKey, list[dict[str, Any]]]:
    """Each run's conversation; a run logged twice (retried) keeps its last one."""
    found: dict[SampleKey, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                key = (int(sample["row_index"]), int(sample.get("run_index", 0)),
                       eval_tag(sample))
                messages = sample["messages"]
            except (ValueError, KeyError, TypeError) as exc:
                if not line.endswith("\n"):
                    break  # a writer stopped mid-line: the rest was never written
                raise ReportSourceError(
                    f"{path} line {number} is not an eval sample: {exc}") from None
            if isinstance(messages, list):
                found[key] = messages
    return found


def _find_dataset(config: dict[str, Any], results: Path) -> Path | None:
    name = config.get("dataset")
    if not isinstance(name, str) or not name or "://" in name:
        return None
    given = Path(name)
    if given.is_absolute():
        return given if given.is_file() else None
    module = str(config.get("module") or "")
    roots = [Path.cwd(), results.parent]
    if module.startswith("mcp:"):
        roots.insert(0, Path(module[4:]).parent)
    return next((root / given for root in roots if (root / given).is_file()), None)


def _dataset_prompts(dataset: Path, config: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    from rollout_operator.runtime.dataset import DatasetRow, iter_rows_lenient
    from rollout_operator.runtime.errors import LocalExecutionError

    prompts: dict[int, list[dict[str, Any]]] = {}
    try:
        for row in iter_rows_lenient(dataset, offset=int(config.get("offset") or 0),
                                     limit=config.get("limit")):
            if isinstance(row, DatasetRow):
                prompts[row.row_index] = row.messages()
    except (LocalExecutionError, OSError, ValueError):
        return {}
    return prompts


def _score_names(rollouts: list[Rollout]) -> list[str]:
    return list(dict.fromkeys(name for r in rollouts for name in r.scores))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
