"""`rolloutctl work`: one shard of a RolloutRun's rollouts, as a pod of the worker Indexed Job.

The shard is `$JOB_COMPLETION_INDEX`. Its (row, sample) items are streamed from the dataset;
those already committed by an earlier attempt are skipped; the rest run through the agent loop,
many at once, against the tool Service and the model, are scored with the repo's functions and
committed to object storage in write-once parts. Group advantages need every sample of a
prompt and are computed by `aggregate`, not here.

A rollout masked by infrastructure (the model endpoint after its retries, a tool or scorer
server out of reach) is run again at the end of the shard, after a short backoff, up to
`spec.faults.maskedRetries` times; each attempt is a new record with the next `attempt`
number, and readers keep the best record of each item. A retried shard, or a rerun, runs again
every item whose kept record is masked.

A model endpoint, tool server or object store that cannot be reached (refused or dropped
connections, 502/503/504, storage timeouts) is waited out, for up to
`spec.faults.outageBudgetSeconds`, by one gate per dependency that every rollout of the shard
shares (`runtime.outage`): one request probes it with backoff while the others wait, and once it
answers they go on where they were; the shard's own retries are for crashes. The wait shows in
the progress line and, as seconds by dependency, in the result (`outageSeconds`).

A model endpoint that fails for every call (bad key, gone past the outage budget) stops the
shard: what finished is committed and the pod exits 1 so that the Job retries the index later.
Failures of single rollouts never stop it: they are recorded as `failed` or, for
infrastructure, `masked`; nor do dataset rows that cannot be used: each sample of such a row is
an `invalid` record whose error (category `dataset`) names the file and the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from rollout_operator.cli.pod_common import (
    EXIT_CONFIG,
    EXIT_RETRY,
    EXIT_TERMINATED,
    PodFailure,
    answer_within,
    job_index,
    load_run_config,
    run_pod_command,
)
from rollout_operator.runtime.outage import OUTAGE_SECONDS_KEY, Dependencies
from rollout_operator.runtime.run_config import MODEL_API_KEY_ENV, RunConfig

logger = logging.getLogger(__name__)

T = TypeVar("T", int, float)

PROGRESS_INTERVAL_S = 5.0
SCORING_IN_FLIGHT = 4
SCORING_LINGER_S = 0.02
"""How long a finished trajectory may wait for others to share its scoring request."""
SCORING_BACKLOG_PER_SLOT = 4
"""Trajectories waiting for scores, per pool slot, before the pool waits for them."""
SCORING_DRAIN_S = 30.0
"""How long a stopping shard waits for the scores of rollouts that finished their loop."""
TOOLS_WAIT_S = 120.0
PART_SIZE_ENV = "ROLLOUT_PART_SIZE"
"""Records per committed part (default 256): smaller parts lose less work to a killed pod."""
COMMIT_INTERVAL_ENV = "ROLLOUT_COMMIT_INTERVAL_SECONDS"
"""Longest a finished record waits before it is committed (default 10)."""
MASKED_BACKOFF_ENV = "ROLLOUT_MASKED_RETRY_BACKOFF_SECONDS"
"""Wait before the first round of retries of masked rollouts (default 5), doubled each round."""
MASKED_BACKOFF_S = 5.0


@click.command("work", hidden=True)
def work_command() -> None:
    """Run shard $JOB_COMPLETION_INDEX of the run in $ROLLOUT_RUN_CONFIG (a pod entrypoint)."""

    def body() -> Mapping[str, Any]:
        config = load_run_config()
        index = job_index(count=config.spec.workers.shards)
        return asyncio.run(run_shard(config, index)).as_dict()

    run_pod_command(body)


@dataclass(slots=True)
class ShardResult:
    """What one attempt at a shard did; the termination message."""

    shard: int
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    masked: int = 0
    """Rollouts still masked when the attempt ended (retries exhausted)."""
    invalid: int = 0
    retried: int = 0
    """Masked records this attempt ran again (each left in storage as history)."""
    scorer_restarts: int = 0
    """Restarts of the scorer server seen by this attempt (a scorer crashed its process)."""
    dependencies: Dependencies | None = None
    """The outage gates of the attempt: their waits are reported."""

    def uncount(self, statuses: Iterable[str]) -> None:
        """Take back rollouts counted as done whose records another writer committed."""
        for status in statuses:
            self.done -= 1
            if status in ("failed", "masked", "invalid"):
                setattr(self, status, getattr(self, status) - 1)

    def outage_seconds(self) -> dict[str, float]:
        """Seconds of outage waited out, by dependency (model, tools, storage)."""
        return self.dependencies.waited() if self.dependencies is not None else {}

    def as_dict(self) -> dict[str, Any]:
        outages = self.outage_seconds()
        return ({OUTAGE_SECONDS_KEY: outages} if outages else {}) | {
            "shard": self.shard,
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "masked": self.masked,
            "invalid": self.invalid,
            "retried": self.retried,
            "scorerRestarts": self.scorer_restarts,
        }


async def run_shard(
    config: RunConfig,
    index: int,
    *,
    environ: Mapping[str, str] = os.environ,
    part_size: int | None = None,
    commit_interval_s: float | None = None,
    handle_sigterm: bool = True,
) -> ShardResult:
    """Process shard `index` of the run; returns the counts, or raises `PodFailure`.

    With `handle_sigterm` (the main thread of a pod), SIGTERM commits what finished and ends
    the shard with exit code 143; leave it off when several shards share one process.
    """
    from rollout_operator.runtime.scrub import Scrubber
    from rollout_operator.runtime.shards import (
        DEFAULT_INTERVAL_S,
        DEFAULT_PART_SIZE,
        ShardWriter,
        committed_records,
    )
    from rollout_operator.runtime.storage import open_store

    spec = config.spec
    dependencies = Dependencies.with_budget(spec.faults.outage_budget_seconds)
    result = ShardResult(shard=index, dependencies=dependencies)
    store = open_store(config.run_prefix, endpoint=spec.output.endpoint, environ=environ,
                       outage=dependencies.storage)
    with tempfile.TemporaryDirectory(prefix="rollout-dataset-") as scratch:
        dataset = await _dataset_file(config, Path(scratch), environ, dependencies)
        result.total = _shard_total(config, dataset, index)
        committed = await committed_records(store, "", index)
        if result.total and sum(not k.masked for k in committed.values()) >= result.total:
            result.skipped = result.total
            logger.info("Shard %d: all %d items are already committed", index, result.total)
            return result
        if spec.rollout is not None:
            from rollout_operator.cli.pod_work_rollout import workspace_runner

            runner, closers = await workspace_runner(config, environ, index)
        else:
            runner, closers = await _runner(config, environ, dependencies)
        await _save_tool_schemas(store, runner.tool_schemas)
        main = asyncio.current_task()
        assert main is not None
        stopping = False

        def terminate() -> None:
            nonlocal stopping
            stopping = True
            main.cancel()

        loop = asyncio.get_running_loop()
        if handle_sigterm:
            loop.add_signal_handler(signal.SIGTERM, terminate)
        progress = asyncio.create_task(_report_progress(result))
        counted: dict[tuple[int, int, int], str] = {}
        try:
            async with ShardWriter(
                store, "", index,
                part_size=part_size or _env_number(environ, PART_SIZE_ENV, int)
                or DEFAULT_PART_SIZE,
                interval_s=commit_interval_s or _env_number(environ, COMMIT_INTERVAL_ENV, float)
                or DEFAULT_INTERVAL_S,
                scrubber=Scrubber.for_run(spec, environ),
            ) as writer:
                await _run_items(config, index, dataset, committed, runner, writer, result,
                                 backoff_s=_env_number(environ, MASKED_BACKOFF_ENV, float)
                                 or MASKED_BACKOFF_S, counted=counted)
            # Another pod of this index committed some of the same records first: they are
            # its rollouts, not this attempt's.
            result.uncount(counted.pop(key) for key in writer.dropped_keys if key in counted)
        except asyncio.CancelledError:
            if not stopping:
                raise
            raise PodFailure(
                f"Stopped by SIGTERM; {result.done} rollouts of shard {index} were committed",
                exit_code=EXIT_TERMINATED, result=result.as_dict(),
            ) from None
        finally:
            if handle_sigterm:
                loop.remove_signal_handler(signal.SIGTERM)
            progress.cancel()
            if runner.scoring is not None:
                result.scorer_restarts = runner.scoring.restarts
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
    logger.info("Shard %d finished: %s", index, result.as_dict())
    return result


def _env_number(environ: Mapping[str, str], name: str, kind: type[T]) -> T | None:
    raw = environ.get(name)
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = kind(0)
    if value <= 0:
        raise PodFailure(f"{name}={raw!r} must be a positive number", exit_code=EXIT_CONFIG)
    return value


async def _run_items(
    config: RunConfig,
    index: int,
    dataset: Path,
    committed: Mapping[tuple[int, int], Any],
    runner: Any,
    writer: Any,
    result: ShardResult,
    *,
    backoff_s: float = MASKED_BACKOFF_S,
    counted: dict[tuple[int, int, int], str] | None = None,
) -> None:
    from rollout_operator.runtime.dataset import iter_rows_lenient
    from rollout_operator.runtime.errors import SystemicProviderError
    from rollout_operator.runtime.pool import run_pool
    from rollout_operator.runtime.records import TrajectoryRecord
    from rollout_operator.runtime.rollout import Played, WorkItem
    from rollout_operator.runtime.shards import rollout_id, shard_items

    spec = config.spec
    attempts: dict[str, int] = {}
    """The attempt number of each item in flight, by rollout id."""
    rounds = 0
    """Rounds of retries of masked rollouts run so far by this attempt at the shard."""
    again: list[WorkItem] = []
    """Items masked in this round that the next round runs again."""

    def items() -> Iterator[WorkItem]:
        # A runner may read rows its own way (0.3 workspaces: `WorkspaceRunner.iter_rows`).
        read = getattr(runner, "iter_rows", iter_rows_lenient)
        rows = read(dataset, offset=spec.dataset.offset, limit=spec.dataset.limit,
                    source=spec.dataset.url or spec.dataset.path)
        for row, sample in shard_items(
            rows, spec.dataset.samples_per_prompt, spec.workers.shards, index
        ):
            kept = committed.get((row.row_index, sample))
            if kept is not None and not kept.masked:
                result.skipped += 1
                continue
            item = WorkItem(rollout_id(config.name, row.row_index, sample), row, sample)
            attempts[item.rollout_id] = kept.attempt + 1 if kept is not None else 0
            yield item

    def retry_items(batch: list[WorkItem]) -> Iterator[WorkItem]:
        for item in batch:
            attempts[item.rollout_id] += 1
            yield item

    async def commit(record: TrajectoryRecord, item: WorkItem) -> None:
        attempt = attempts[item.rollout_id]
        if attempt:
            record = record.model_copy(update={"attempt": attempt})
        await writer.add(record)
        if record.status == "masked" and rounds < spec.faults.masked_retries:
            again.append(item)
            result.retried += 1
        else:
            attempts.pop(item.rollout_id, None)
            count(record)

    def count(record: TrajectoryRecord) -> None:
        if counted is not None:
            counted[(record.row_index, record.sample_index, record.attempt)] = record.status
        result.done += 1
        if record.status == "failed":
            result.failed += 1
        elif record.status == "masked":
            result.masked += 1
        elif record.status == "invalid":
            result.invalid += 1

    # A rollout's pool slot is free once its agent loop ends; its scoring and commit go on
    # beside the pool, so scoring out of process adds no time to a slot. Their number is
    # bounded: past it, the pool waits.
    scoring_slots = asyncio.Semaphore(SCORING_BACKLOG_PER_SLOT * spec.workers.concurrency)
    scoring: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def finish(played: Played) -> None:
        try:
            await commit(await runner.score(played), played.item)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            failures.append(exc)
        finally:
            scoring_slots.release()

    async def play(item: WorkItem) -> tuple[WorkItem, TrajectoryRecord | Played]:
        return item, await runner.play(item)

    async def run_round(work: Iterator[WorkItem]) -> None:
        async for item, played in run_pool(work, play, spec.workers.concurrency):
            if failures:
                raise failures[0]
            if isinstance(played, TrajectoryRecord):
                await commit(played, item)
                continue
            await scoring_slots.acquire()
            task = asyncio.create_task(finish(played))
            scoring.add(task)
            task.add_done_callback(scoring.discard)
        if scoring:
            await asyncio.wait(set(scoring))
        if failures:
            raise failures[0]

    try:
        try:
            await run_round(items())
            # Masked rollouts again, after the others and a backoff that doubles each round:
            # a burst of endpoint errors is over by then.
            while again:
                batch, again[:] = list(again), []
                rounds += 1
                delay = backoff_s * 2 ** (rounds - 1)
                logger.info("Shard %d: running %d masked rollouts again in %.0f s (retry %d "
                            "of %d)", index, len(batch), delay, rounds,
                            spec.faults.masked_retries)
                await writer.flush()
                await asyncio.sleep(delay)
                await run_round(retry_items(batch))
        finally:
            if scoring:  # played rollouts are scored and kept, whatever stopped the pool
                _, late = await asyncio.wait(set(scoring), timeout=SCORING_DRAIN_S)
                for task in late:
                    task.cancel()
    except SystemicProviderError as exc:
        await writer.flush()
        raise PodFailure(
            f"The model endpoint cannot serve any request, so shard {index} stops here "
            f"({writer.committed} rollouts committed; a retry resumes): {exc}",
            exit_code=EXIT_RETRY, result=result.as_dict(),
        ) from None


async def _dataset_file(config: RunConfig, scratch: Path, environ: Mapping[str, str],
                        dependencies: Dependencies | None = None) -> Path:
    """The dataset as a local file: in the unpacked repo, or downloaded from object storage."""
    from rollout_operator.runtime.storage import download_url, split_object_url

    dataset = config.spec.dataset
    if dataset.url:
        _, name = split_object_url(dataset.url)
        logger.info("Downloading the dataset from %s", dataset.url)
        return await download_url(
            dataset.url, scratch / name, endpoint=config.spec.output.endpoint, environ=environ,
            outage=dependencies.storage if dependencies is not None else None,
        )
    assert dataset.path is not None
    path = Path(config.repo_dir) / dataset.path
    if not path.is_file():
        raise PodFailure(
            f"Dataset {dataset.path!r} is not in the repository (looked for {path}); fix "
            "spec.dataset.path or set spec.dataset.url",
            exit_code=EXIT_CONFIG,
        )
    return path


def _shard_total(config: RunConfig, dataset: Path, index: int) -> int:
    from rollout_operator.runtime.dataset import count_rows
    from rollout_operator.runtime.shards import shard_rows

    spec = config.spec.dataset
    window = max(0, count_rows(dataset) - spec.offset)
    if spec.limit is not None:
        window = min(window, spec.limit)
    return shard_rows(window, config.spec.workers.shards, index) * spec.samples_per_prompt


async def _runner(config: RunConfig, environ: Mapping[str, str],
                  dependencies: Dependencies) -> tuple[Any, list[Any]]:
    """The rollout runner (model client, tool client, scorers) and what to close afterwards."""
    from rollout_operator.runtime.agent_loop import AgentConfig, model_outage
    from rollout_operator.runtime.errors import SystemicProviderError
    from rollout_operator.runtime.models import (
        TokenCaptureError,
        check_api_key,
        make_chat_model,
        preflight,
        resolve_model,
    )
    from rollout_operator.runtime.rollout import RolloutRunner

    spec = config.spec
    if not config.tool_url:
        raise PodFailure("The run config has no tool_url (the tool Service's /mcp URL)",
                         exit_code=EXIT_CONFIG)
    api_key = environ.get(MODEL_API_KEY_ENV) or None
    base_url = config.model_endpoint
    check_api_key(resolve_model(config.model_name, base_url), api_key, base_url, environ)
    capture = config.capture_tokens
    try:
        chat = make_chat_model(
            config.model_name, base_url=base_url, api_key=api_key,
            request_timeout=spec.model.request_timeout_seconds,
            capture_tokens=capture, engine=config.engine,
        )
    except TokenCaptureError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG) from None
    closers: list[Any] = [chat.aclose]
    # A cheap check of the endpoint, where the client has one, tells an outage from an error
    # only some requests meet.
    dependencies.model.probe = getattr(chat, "reachable", None)
    try:
        await dependencies.model.call(lambda: preflight(chat, require_tokens=capture),
                                      model_outage)
    except SystemicProviderError as exc:
        await chat.aclose()
        raise PodFailure(f"Model check failed: {exc}", exit_code=EXIT_RETRY) from None
    except TokenCaptureError as exc:
        await chat.aclose()
        raise PodFailure(f"Model check failed: {exc}", exit_code=EXIT_CONFIG) from None
    tools, schemas = await _tools(config, wait_s=max(TOOLS_WAIT_S,
                                                     dependencies.tools.budget_s))
    closers.append(tools.aclose)
    try:
        scoring = await _scoring(config)
    except BaseException:
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
        raise
    if scoring is not None:
        closers.append(scoring.aclose)
    agent = AgentConfig(
        max_turns=spec.agent.max_turns,
        completion_params=config.completion_params(),
        tool_timeout_s=spec.agent.tool_timeout_seconds,
        rollout_timeout_s=spec.agent.rollout_timeout_seconds,
        model_gate=dependencies.model,
        tool_gate=dependencies.tools,
    )
    runner = RolloutRunner(
        chat, tools, schemas, (), agent,
        score_timeout_s=spec.scoring.timeout_seconds,
        fastmcp_version=config.fastmcp_version,
        scoring=scoring,
        policy_version=config.policy_version,
    )
    return runner, closers


async def _scoring(config: RunConfig) -> Any:
    """The scorer server's client, once the server answers; None when the run has no scorers.

    The worker never imports the repo: its scorers run on the user-code side, in the scorer
    server at `config.scorer_url`.
    """
    from rollout_operator.runtime.scorer_client import RemoteScorers, ScoringUnavailable
    from rollout_operator.runtime.scorer_protocol import ProtocolError

    refs = config.scorer_refs
    if not config.scorer_url:
        if refs:
            raise PodFailure(
                f"The run has scorers ({', '.join(refs)}) but its config has no scorer_url "
                "(the scorer Service's URL)", exit_code=EXIT_CONFIG)
        logger.info("Scorers: none")
        return None
    scoring = RemoteScorers(config.scorer_url, refs=refs,
                            timeout_s=config.spec.scoring.timeout_seconds,
                            max_in_flight=SCORING_IN_FLIGHT, linger_s=SCORING_LINGER_S)
    try:
        served = await scoring.start(wait_s=TOOLS_WAIT_S)
    except ScoringUnavailable as exc:
        await scoring.aclose()
        raise PodFailure(str(exc), exit_code=EXIT_RETRY) from None
    except (ProtocolError, ValueError) as exc:
        await scoring.aclose()
        raise PodFailure(f"Scorer server at {config.scorer_url}: {exc}",
                         exit_code=EXIT_CONFIG) from None
    logger.info("Scorers at %s: %s", config.scorer_url, ", ".join(served) or "none")
    return scoring


async def _tools(config: RunConfig, wait_s: float = TOOLS_WAIT_S) -> tuple[Any, list[Any]]:
    """The tool Service's client and its tools, waiting a while for the Service to answer."""
    from rollout_operator.runtime.tools import HttpTools

    assert config.tool_url is not None
    tools = HttpTools(
        config.tool_url,
        max_result_chars=config.spec.agent.tool_result_max_chars,
        max_connections=max(100, config.spec.workers.concurrency),
    )
    try:
        schemas = await answer_within(
            tools.list_tools, wait_s=wait_s, retry_on=ConnectionError,
            waiting=lambda exc: logger.info("Waiting for the tool server: %s", exc))
    except ConnectionError as exc:
        await tools.aclose()
        raise PodFailure(f"{exc} (waited {wait_s:g}s)", exit_code=EXIT_RETRY) from None
    logger.info("Tools from %s: %s", config.tool_url,
                ", ".join(s["function"]["name"] for s in schemas))
    return tools, schemas


async def _save_tool_schemas(store: Any, schemas: list[Any]) -> None:
    """`tools.json`: the tools' schemas as the model saw them, for exports (the first worker
    to get there writes it; it is the same for every shard), scrubbed as records are."""
    from rollout_operator.runtime.run_layout import TOOLS_JSON
    from rollout_operator.runtime.scrub import process_scrubber
    from rollout_operator.runtime.storage import StorageError

    text = process_scrubber().scrub_json(json.dumps(schemas, indent=1, sort_keys=True),
                                         indent=1, sort_keys=True)
    data = text.encode() + b"\n"
    try:
        await store.put(TOOLS_JSON, data, if_absent=True)
    except StorageError as exc:  # exports fall back to the tool names in the records
        logger.warning("Could not write %s: %s", store.url_for(TOOLS_JSON), exc)


async def _report_progress(result: ShardResult) -> None:
    start = time.monotonic()
    last_done, last_time = 0, start
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        now = time.monotonic()
        rate = (result.done - last_done) / (now - last_time)
        left = result.total - result.skipped - result.done
        waiting = ""
        if result.dependencies is not None:
            gates = (result.dependencies.model, result.dependencies.tools,
                     result.dependencies.storage)
            waiting = "".join(f"; {gate.what} unreachable, waiting {gate.down_for_s:.0f} s of "
                              f"{gate.budget_s:g} s budget" for gate in gates if gate.down)
        logger.info(
            "Shard %d: %d done, %d left, %d failed, %d masked, %d invalid, %d skipped; "
            "%.1f items/s%s", result.shard, result.done, left, result.failed, result.masked,
            result.invalid, result.skipped, rate, waiting,
        )
        last_done, last_time = result.done, now
