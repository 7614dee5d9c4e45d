"""`rolloutctl aggregate`: the run's results, once every shard is committed.

It reads every committed trajectory record, one per (row, sample): a non-masked record over a
masked one, else the latest attempt (a masked rollout run again left its masked records in
storage, as history); if two attempts of a shard committed the same item, the first committed
wins. It writes, under the run's prefix:

- `results.json`, in the `osmosis eval` results schema (`version`, `task_id`, `config`, `runs`,
  `summary`), so tools made for eval results read it unchanged;
- `trajectories.parquet` (unless `--no-parquet`): every record with its group advantage filled
  in. The JSONL parts stay the source of truth and are never rewritten (each was written once);
  the Parquet file is a derived copy that a rerun of `aggregate` writes again.

Advantages are GRPO-style, per prompt over its samples (`metrics.group_advantages`). Masked
records (infrastructure failures) and invalid ones (dataset rows that cannot be used) take no
part anywhere: no advantage, and they are left out of the score statistics and pass@k instead
of counting as 0. Failed records (the policy's own failures, such as a timeout) count as 0 in
the statistics, as in `osmosis eval`.

The termination message is a compact summary for the RolloutRun's status (progress counts,
per-scorer mean/std/min/max/pass@k, the best and worst three samples, artifact URLs), under
4 KiB whatever the size of the run.

Object storage that cannot be reached is waited out for `spec.faults.outageBudgetSeconds`, as in
the workers (`runtime.outage`); the summary says how long (`outageSeconds`).

The workers scrubbed the secrets they hold from their records; the aggregate scrubs the ones it
holds (`runtime.scrub`) again from every record it reads, results.json and the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import queue
import tempfile
from collections import defaultdict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollout_operator.cli.pod_common import (
    MAX_TERMINATION_MESSAGE_BYTES,
    PodFailure,
    fit_json,
    load_run_config,
    run_pod_command,
)
from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.run_config import RunConfig

if TYPE_CHECKING:
    from rollout_operator.runtime.scrub import Scrubber

logger = logging.getLogger(__name__)

RESULTS_VERSION = 1
SAMPLES_EACH_WAY = 3
ANSWER_CHARS = 200
_PARQUET_BATCH = 512

ItemKey = tuple[int, int]


@click.command("aggregate", hidden=True)
@click.option("--parquet/--no-parquet", default=True, show_default=True,
              help="Also compact every record into trajectories.parquet.")
def aggregate_command(parquet: bool) -> None:
    """Write results.json (and trajectories.parquet) for the run in $ROLLOUT_RUN_CONFIG."""

    from rollout_operator.runtime.outage import STORAGE_OUTAGE_KEY
    from rollout_operator.runtime.storage import StorageError

    def body() -> Mapping[str, Any]:
        config = load_run_config()
        try:
            return asyncio.run(aggregate_run(config, write_parquet=parquet))
        except StorageError as exc:
            if not exc.outage:
                raise
            # Past the outage budget: the operator runs the aggregate again later.
            raise PodFailure(str(exc), result={STORAGE_OUTAGE_KEY: True}) from None

    run_pod_command(body)


@dataclass(slots=True)
class _Ranked:
    """A scored sample that may be shown in status."""

    reward: float
    row_index: int
    sample_index: int
    scores: dict[str, float]
    answer: str

    def as_sample(self) -> dict[str, Any]:
        return {
            "row_index": self.row_index,
            "sample_index": self.sample_index,
            "reward": self.reward,
            "scores": self.scores,
            "answer": self.answer,
        }


_Heap = list[tuple[float, int, int, _Ranked]]
"""A bounded min-heap; (row, sample) is unique, so comparisons never reach the `_Ranked`."""


def _push(heap: _Heap, entry: tuple[float, int, int, _Ranked]) -> None:
    if len(heap) < SAMPLES_EACH_WAY:
        heapq.heappush(heap, entry)
    else:
        heapq.heappushpop(heap, entry)


@dataclass(slots=True)
class _Scan:
    """What the first pass over the records keeps: small, whatever the messages' size."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    rewards: dict[int, dict[int, float | None]] = field(default_factory=dict)
    score_names: dict[str, None] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"completed": 0, "failed": 0, "masked": 0, "invalid": 0}
    )
    best: _Heap = field(default_factory=list)
    worst: _Heap = field(default_factory=list)
    duplicates: int = 0
    superseded: int = 0

    def add(self, record: TrajectoryRecord) -> None:
        self.counts[record.status] += 1
        run = record.to_eval_run()
        run["left_out"] = record.status in ("masked", "invalid")
        self.runs.append(run)
        for name in record.scores:
            self.score_names.setdefault(name, None)
        reward = record.reward if record.status == "completed" else None
        self.rewards.setdefault(record.row_index, {})[record.sample_index] = reward
        if reward is not None:
            ranked = _Ranked(reward, record.row_index, record.sample_index,
                             dict(record.scores), _answer(record))
            # The highest rewards (ties: first rows) and the lowest (ties: last rows), so that
            # a run where every reward is equal still shows six different samples.
            _push(self.best, (reward, -record.row_index, -record.sample_index, ranked))
            _push(self.worst, (-reward, record.row_index, record.sample_index, ranked))

    def samples(self) -> list[dict[str, Any]]:
        """The best three, highest first, then the worst three, lowest first (none twice)."""
        chosen = [entry[3] for entry in sorted(self.best, reverse=True)]
        picked = {(r.row_index, r.sample_index) for r in chosen}
        for entry in sorted(self.worst, reverse=True):
            ranked = entry[3]
            if (ranked.row_index, ranked.sample_index) not in picked:
                chosen.append(ranked)
        return [ranked.as_sample() for ranked in chosen]


def _answer(record: TrajectoryRecord) -> str:
    from rollout_operator.runtime.scoring import final_answer

    text = final_answer(record.messages)
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"


def advantages_by_item(rewards: Mapping[int, Mapping[int, float | None]]) -> dict[ItemKey, float]:
    """Group advantages per (row, sample); items without one (masked, failed, invalid) are
    absent."""
    from rollout_operator.runtime.metrics import group_advantages

    result: dict[ItemKey, float] = {}
    for row, by_sample in rewards.items():
        samples = sorted(by_sample)
        values = group_advantages([by_sample[s] for s in samples])
        for sample, value in zip(samples, values, strict=True):
            if value is not None:
                result[(row, sample)] = value
    return result


def build_summary(
    runs: list[dict[str, Any]], names: list[str], *, n_runs: int, pass_threshold: float
) -> dict[str, Any]:
    """The eval `summary` over the runs that were neither masked nor invalid.

    With none of those this is `osmosis eval`'s summary, with keys added beside its own: per
    scorer the `prompts` (rows) and `rollouts` its figures are computed over, and
    `total_prompts`, the rows of every run. Masked and invalid runs (`left_out`) are left out
    of the statistics, and pass@k of a row counts only its other samples, so a row none of
    whose samples was scored is not among the `prompts` of its mean or pass@k.
    """
    from rollout_operator.runtime.metrics import (
        build_eval_summary,
        mean_pass_at_k,
        pass_at_k_values,
    )

    scored = [run for run in runs if not run.get("left_out")]
    summary = build_eval_summary(scored, names, n_runs=n_runs, pass_threshold=pass_threshold)
    if n_runs > 1 and len(scored) < len(runs):
        ks = pass_at_k_values(n_runs)
        for name, stats in summary["eval_fns"].items():
            by_row: dict[Hashable, list[float]] = defaultdict(list)
            for run in scored:
                value = run["scores"].get(name) if run["success"] else None
                by_row[run["row_index"]].append(0.0 if value is None else float(value))
            stats["pass_at_k"] = {
                str(k): v for k, v in mean_pass_at_k(by_row, 1, pass_threshold, ks).items()
            }
    prompts = len({run["row_index"] for run in scored})
    for stats in summary["eval_fns"].values():
        stats["prompts"] = prompts
        stats["rollouts"] = len(scored)
    summary["total_prompts"] = len({run["row_index"] for run in runs})
    return summary


async def record_inspection(store: Any, config: RunConfig) -> None:
    """Add what inspection found (tools, scorers, FastMCP version) to the run's `run.json`,
    which sync wrote before the repo was inspected."""
    from rollout_operator.runtime.run_layout import RUN_JSON

    if not await store.exists(RUN_JSON):
        return
    document = json.loads(await store.get(RUN_JSON))
    if not isinstance(document, dict):
        return
    document["tools"] = list(config.tools)
    document["scorers"] = config.scorer_refs
    document.setdefault("versions", {})["fastmcp"] = config.fastmcp_version
    data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    await store.put(RUN_JSON, data)


async def aggregate_run(
    config: RunConfig,
    *,
    environ: Mapping[str, str] = os.environ,
    write_parquet: bool = True,
) -> dict[str, Any]:
    """Write results.json (and trajectories.parquet); returns the compact summary."""
    from rollout_operator.runtime.outage import OUTAGE_SECONDS_KEY, OutageGate
    from rollout_operator.runtime.run_layout import RESULTS_JSON, SHARDS_DIR, TRAJECTORIES_PARQUET
    from rollout_operator.runtime.scrub import Scrubber
    from rollout_operator.runtime.shards import ReadStats, read_all_records
    from rollout_operator.runtime.storage import open_store

    spec = config.spec
    outage = OutageGate("object storage", spec.faults.outage_budget_seconds)
    store = open_store(config.run_prefix, endpoint=spec.output.endpoint, environ=environ,
                       outage=outage)
    scrubber = Scrubber.for_run(spec, environ)
    await record_inspection(store, config)
    scan = _Scan()
    stats = ReadStats()
    async for record in read_all_records(store, "", stats=stats, scrubber=scrubber):
        scan.add(record)
    scan.duplicates = stats.duplicates
    scan.superseded = stats.superseded
    if stats.superseded:
        logger.info("%d masked records were superseded by a later attempt at the same rollout "
                    "(kept in storage, left out of the results)", stats.superseded)
    if stats.duplicates:
        logger.warning("%d items were committed twice; the first commit of each is kept",
                       stats.duplicates)
    scan.runs.sort(key=lambda run: (run["row_index"], run["run_index"]))
    names = list(config.scorers or spec.scoring.functions or scan.score_names)
    samples_per_prompt = spec.dataset.samples_per_prompt
    summary = build_summary(scan.runs, names, n_runs=samples_per_prompt,
                            pass_threshold=spec.scoring.pass_threshold)
    advantages = advantages_by_item(scan.rewards)

    artifacts: dict[str, str] = {
        "run": store.url,
        "results": store.url_for(RESULTS_JSON),
        "trajectories": store.url_for(f"{SHARDS_DIR}/"),
    }
    if write_parquet:
        with tempfile.TemporaryDirectory(prefix="rollout-aggregate-") as scratch:
            path = Path(scratch) / TRAJECTORIES_PARQUET
            written = await _write_parquet(store, advantages, path, scrubber)
            await store.put_file(TRAJECTORIES_PARQUET, path)
        logger.info("Wrote %s (%d records)", store.url_for(TRAJECTORIES_PARQUET), written)
        artifacts["parquet"] = store.url_for(TRAJECTORIES_PARQUET)

    document = results_document(config, names, scan.runs, summary,
                                masked=scan.counts["masked"])
    text = scrubber.scrub_json(json.dumps(document, indent=1), indent=1)
    await store.put(RESULTS_JSON, text.encode())
    logger.info("Wrote %s (%d runs)", artifacts["results"], len(scan.runs))
    message = compact_summary(scan, summary, artifacts)
    if outage.waited_s > 0:
        message[OUTAGE_SECONDS_KEY] = {"storage": round(outage.waited_s, 1)}
    scrubbed: dict[str, Any] = scrubber.scrub_data(message)
    return scrubbed


def results_document(
    config: RunConfig, names: list[str], runs: list[dict[str, Any]], summary: dict[str, Any],
    *, masked: int = 0,
) -> dict[str, Any]:
    """results.json: the eval results schema, with the run's identity as its config. Its
    status is `partial` when more rollouts than spec.faults.maxMaskedFraction remain masked
    (the run fails with TooManyMasked), else `completed`."""
    import xxhash

    from rollout_operator.runtime.metrics import too_many_masked

    spec = config.spec
    identity = {
        "model": config.model_name,
        "base_url": config.model_endpoint,
        "repo": spec.repo.url,
        "revision": spec.repo.revision,
        "path": spec.repo.path,
        "commit": config.commit,
        "dataset": spec.dataset.url or spec.dataset.path,
        "eval_fns": names,
        "n_runs": spec.dataset.samples_per_prompt,
        "max_turns": spec.agent.max_turns,
        "pass_threshold": spec.scoring.pass_threshold,
        "offset": spec.dataset.offset,
        "limit": spec.dataset.limit,
        "completion_params": config.completion_params(),
        "shards": spec.workers.shards,
        "run": f"{config.namespace}/{config.name}",
        "uid": config.uid,
    }
    if config.policy_version is not None:
        identity["policy_version"] = config.policy_version
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    config_hash = xxhash.xxh3_128_hexdigest(json.dumps(identity, sort_keys=True).encode())
    return {
        "version": RESULTS_VERSION,
        "task_id": config.uid.replace("-", "")[:12],
        "config_hash": config_hash,
        "status": "partial" if too_many_masked(
            masked, len(runs), spec.faults.max_masked_fraction) else "completed",
        "created_at": now,
        "updated_at": now,
        "config": identity,
        "runs": [{k: v for k, v in run.items() if k != "left_out"} for run in runs],
        "summary": summary,
    }


def compact_summary(
    scan: _Scan, summary: dict[str, Any], artifacts: dict[str, str]
) -> dict[str, Any]:
    """The termination message: what status shows, within 4 KiB.

    When no rollout was scored (every one masked or invalid), the statistics are null rather
    than the eval summary's zeros: nothing scored 0.
    """
    scorers: dict[str, Any] = {}
    nothing_scored = summary.get("total_runs") == 0
    for name, stats in summary["eval_fns"].items():
        over = {"prompts": stats.get("prompts", 0), "rollouts": stats.get("rollouts", 0)}
        if nothing_scored:
            scorers[name] = {**dict.fromkeys(("mean", "std", "min", "max")), **over}
            continue
        entry = {key: stats[key] for key in ("mean", "std", "min", "max")}
        if "pass_at_k" in stats:
            entry["pass_at_k"] = stats["pass_at_k"]
        scorers[name] = {**entry, **over}
    message: dict[str, Any] = {
        "progress": {"total": len(scan.runs), **scan.counts},
        "summary": scorers,
        "samples": scan.samples(),
        "artifacts": artifacts,
    }
    if scan.duplicates:
        message["duplicates"] = scan.duplicates
    if scan.superseded:
        message["superseded"] = scan.superseded
    return _within_limit(message)


def _within_limit(message: dict[str, Any]) -> dict[str, Any]:
    """Drop detail, least useful first, until the message fits a termination message."""
    def size(value: Mapping[str, Any]) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    limit = MAX_TERMINATION_MESSAGE_BYTES
    if size(message) > limit:
        message["samples"] = [dict(s, answer=s["answer"][:60]) for s in message["samples"]]
    if size(message) > limit:
        message["samples"] = [dict(s, answer="", scores={}) for s in message["samples"]]
    if size(message) > limit:
        message["samples"] = []
    while size(message) > limit and message["summary"]:
        message["summary"].popitem()
        message["summary_truncated"] = True
    if size(message) > limit:
        return json.loads(fit_json(message))  # type: ignore[no-any-return]
    return message


async def _write_parquet(
    store: Any, advantages: Mapping[ItemKey, float], path: Path, scrubber: Scrubber | None = None
) -> int:
    """Stream every record, advantage filled in, into a Parquet file written in a thread."""
    from rollout_operator.runtime.records import records_to_parquet
    from rollout_operator.runtime.shards import read_all_records

    batches: queue.Queue[list[TrajectoryRecord] | None] = queue.Queue(maxsize=4)

    def records() -> Iterator[TrajectoryRecord]:
        while (batch := batches.get()) is not None:
            yield from batch

    writer = asyncio.ensure_future(asyncio.to_thread(records_to_parquet, records(), path))

    async def hand_over(batch: list[TrajectoryRecord] | None) -> None:
        while True:
            try:
                batches.put_nowait(batch)
                return
            except queue.Full:
                if writer.done():
                    await writer  # raises the writer's error
                    raise RuntimeError("the Parquet writer stopped early") from None
                await asyncio.sleep(0.01)

    try:
        batch: list[TrajectoryRecord] = []
        async for record in read_all_records(store, "", scrubber=scrubber):
            key = (record.row_index, record.sample_index)
            batch.append(record.model_copy(update={"advantage": advantages.get(key)}))
            if len(batch) >= _PARQUET_BATCH:
                await hand_over(batch)
                batch = []
        if batch:
            await hand_over(batch)
    finally:
        with contextlib.suppress(Exception):
            await hand_over(None)
    return await writer
