"""`rolloutctl work` and `aggregate`, the worker and aggregator pod entrypoints.

The process tests run the real commands as subprocesses, the way a Job's pod does: against the
scripted OpenAI-compatible model server and a real tool server in their own processes, and
moto's S3 server for storage. The rest covers the pieces in process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.cli.pod_aggregate import (
    advantages_by_item,
    aggregate_run,
    build_summary,
    compact_summary,
)
from rollout_operator.cli.pod_common import (
    EXIT_CONFIG,
    MAX_TERMINATION_MESSAGE_BYTES,
    PodFailure,
    fit_json,
    job_index,
)
from rollout_operator.runtime.records import RecordError, TrajectoryRecord, read_parquet_records
from rollout_operator.runtime.run_config import RUN_CONFIG_ENV, RunConfig, RunConfigError
from rollout_operator.runtime.run_layout import part_key, run_prefix
from rollout_operator.runtime.shards import ShardWriter
from rollout_operator.runtime.storage import open_store
from tests.operator.harness import scorer_server, tool_server
from tests.support.cli import EXAMPLE, REPO_ROOT, cli_env, rolloutctl_argv
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture
from tests.support.scripted_model import start_process

REWARD = "reward_fn.compute_reward:numbers_match_reward"
UID = "5e1c0f3a-2b4d-4c6e-8f10-123456789abc"
SYSTEM = "You are a calculator assistant. Use the tools, then answer with #### and the number."


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    process, url = start_process()
    try:
        yield url
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def tool_url() -> Iterator[str]:
    with tool_server(EXAMPLE) as url:
        yield url


@pytest.fixture(scope="module", autouse=True)
def scorer_url() -> Iterator[str]:
    """The calculator's scorers in their own server, as the scorer Service serves them."""
    global SCORER_URL
    with scorer_server() as url:
        SCORER_URL = url
        yield url


SCORER_URL = ""


# --- helpers ------------------------------------------------------------------------------


def make_config(
    output: str,
    model_url: str,
    tool_url: str,
    *,
    name: str = "calc",
    model: str = "scripted",
    shards: int = 1,
    samples: int = 1,
    concurrency: int = 8,
    dataset: dict[str, Any] | None = None,
    faults: dict[str, Any] | None = None,
) -> RunConfig:
    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://git.example.com/team/calculator.git"},
        "dataset": {**(dataset or {}), "samplesPerPrompt": samples},
        "model": {"name": f"openai/{model}", "baseURL": model_url},
        "agent": {"rolloutTimeoutSeconds": 60},
        "scoring": {"functions": [REWARD]},
        "workers": {"shards": shards, "concurrency": concurrency},
        "faults": faults or {},
    })
    return RunConfig(
        spec=spec, namespace="team-a", name=name, uid=UID,
        run_prefix=run_prefix(output, "team-a", name, UID),
        repo_dir=str(EXAMPLE), tool_url=tool_url, scorer_url=SCORER_URL, commit="0" * 40,
    )


def pod_env(config: RunConfig, s3: S3Server, message: Path, **extra: str) -> dict[str, str]:
    return cli_env({
        RUN_CONFIG_ENV: config.to_env_value(),
        "ROLLOUT_TERMINATION_MESSAGE_PATH": str(message),
        **s3.env,
        **extra,
    })


def run_pod(
    command: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rolloutctl_argv([command]), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def records_in(s3: S3Server, config: RunConfig) -> list[dict[str, Any]]:
    """Every record line under the run's shards/, read with boto3 (not with our reader)."""
    bucket, _, prefix = config.run_prefix.removeprefix("s3://").partition("/")
    client = s3.client()
    lines: list[dict[str, Any]] = []
    for key in s3.keys(config.run_prefix):
        if key.startswith(f"{prefix}/shards/"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            lines.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return lines


def upload_dataset(s3: S3Server, bucket_url: str, rows: int) -> str:
    """A JSONL dataset of `rows` products; rows divisible by 5 carry a wrong ground truth."""
    lines = []
    for i in range(rows):
        a, b = 2 + i, 3 + i % 7
        truth = a * b + (1 if i % 5 == 0 else 0)
        lines.append(json.dumps({"system_prompt": SYSTEM, "user_prompt": f"What is {a} * {b}?",
                                 "ground_truth": str(truth), "topic": "math"}))
    bucket = bucket_url.removeprefix("s3://").split("/", 1)[0]
    s3.client().put_object(Bucket=bucket, Key="datasets/products.jsonl",
                           Body=("\n".join(lines) + "\n").encode())
    return f"s3://{bucket}/datasets/products.jsonl"


def message_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# --- the pod entrypoints as processes -----------------------------------------------------


@pytest.mark.slow
def test_shards_commit_every_item_scored_and_aggregate_matches(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    config = make_config(s3_server.bucket("out"), model_url, tool_url, shards=2, samples=2)
    message = tmp_path / "termination-log"
    env = pod_env(config, s3_server, message)

    done = run_pod("work", {**env, "JOB_COMPLETION_INDEX": "1"})
    assert done.returncode == 0, done.stderr
    assert message_of(message) == {"shard": 1, "total": 20, "done": 20, "skipped": 0,
                                   "failed": 0, "masked": 0, "invalid": 0, "retried": 0,
                                   "scorerRestarts": 0}
    records = records_in(s3_server, config)
    assert sorted((r["row_index"], r["sample_index"]) for r in records) == [
        (row, sample) for row in range(1, 20, 2) for sample in range(2)
    ]
    assert all(r["status"] == "completed" and r["scores"] == {REWARD: 1.0} for r in records)
    assert {r["rollout_id"] for r in records} == {
        f"calc-{r['row_index']}-{r['sample_index']}" for r in records
    }
    assert all(r["advantage"] is None for r in records)  # computed at aggregation

    done = run_pod("work", {**env, "JOB_COMPLETION_INDEX": "0"})
    assert done.returncode == 0, done.stderr
    aggregated = run_pod("aggregate", env)
    assert aggregated.returncode == 0, aggregated.stderr
    summary = message_of(message)
    assert summary["progress"] == {"total": 40, "completed": 40, "failed": 0, "masked": 0,
                                   "invalid": 0}
    assert summary["summary"][REWARD]["mean"] == 1.0
    assert summary["summary"][REWARD]["pass_at_k"] == {"1": 1.0, "2": 1.0}
    assert len(summary["samples"]) == 6
    assert summary["artifacts"]["results"] == f"{config.run_prefix}/results.json"
    assert len(message.read_bytes()) <= MAX_TERMINATION_MESSAGE_BYTES

    store = open_store(config.run_prefix, environ=s3_server.env)
    results = json.loads(_run(store.get("results.json")))
    assert results["task_id"] == UID.replace("-", "")[:12]
    assert results["status"] == "completed"
    assert len(results["runs"]) == 40
    assert results["summary"]["eval_fns"][REWARD]["mean"] == 1.0
    assert results["summary"]["total_runs"] == 40
    assert results["summary"]["total_tokens"] == sum(
        r["usage"]["total_tokens"] for r in records_in(s3_server, config)
    )


@pytest.mark.slow
def test_a_worker_killed_mid_shard_resumes_without_gaps_or_duplicates(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    bucket = s3_server.bucket()
    dataset = upload_dataset(s3_server, bucket, 60)
    config = make_config(bucket, model_url, tool_url, model="scripted:sleep-60",
                         concurrency=4, dataset={"url": dataset})
    message = tmp_path / "termination-log"
    env = pod_env(config, s3_server, message, ROLLOUT_PART_SIZE="4")

    worker = subprocess.Popen(rolloutctl_argv(["work"]), cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while len(records_in(s3_server, config)) < 12:
            assert worker.poll() is None, "the worker finished before it could be killed"
            assert time.monotonic() < deadline, "no parts were committed within 60 s"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    before = records_in(s3_server, config)
    assert 12 <= len(before) < 60

    done = run_pod("work", env)
    assert done.returncode == 0, done.stderr
    result = message_of(message)
    assert result["skipped"] == len(before)
    assert result["done"] == 60 - len(before)

    items = [(r["row_index"], r["sample_index"]) for r in records_in(s3_server, config)]
    assert sorted(items) == [(row, 0) for row in range(60)]
    rewards = {r["row_index"]: r["reward"] for r in records_in(s3_server, config)}
    assert rewards == {row: 0.0 if row % 5 == 0 else 1.0 for row in range(60)}


@pytest.mark.slow
def test_bad_dataset_rows_become_invalid_records_and_the_shard_goes_on(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    not_utf8 = b"\xe4"  # "ä" in latin-1

    def row(a: int, b: int, **changes: Any) -> bytes:
        fields = {"system_prompt": SYSTEM, "user_prompt": f"What is {a} * {b}?",
                  "ground_truth": str(a * b), **changes}
        return json.dumps(fields).encode()

    lines = [
        row(2, 3),                                          # line 1, row 0
        b'{"system_prompt": "s", "user_prompt": "What is 4 * 5?", oops}',  # line 2, row 1
        row(3, 3, ground_truth=9),                          # line 3, row 2: an int
        b"",                                                # line 4: blank, not a row
        row(4, 4, system_prompt=None),                      # line 5, row 3: null
        b'{"system_prompt": "s", "user_prompt": "What is 5 * 5?"}',  # line 6, row 4: missing
        row(6, 6).replace(b"a", not_utf8, 1),              # line 7, row 5: not UTF-8
        row(7, 8),                                          # line 8, row 6
    ]
    bucket = s3_server.bucket()
    name = bucket.removeprefix("s3://").split("/", 1)[0]
    s3_server.client().put_object(Bucket=name, Key="datasets/bad.jsonl",
                                  Body=b"\n".join(lines) + b"\n")
    dataset = f"s3://{name}/datasets/bad.jsonl"
    config = make_config(bucket, model_url, tool_url, samples=2, dataset={"url": dataset})
    message = tmp_path / "termination-log"
    env = pod_env(config, s3_server, message)
    done = run_pod("work", env)
    assert done.returncode == 0, done.stderr
    result = message_of(message)
    assert (result["total"], result["done"], result["invalid"], result["failed"],
            result["masked"]) == (14, 14, 10, 0, 0)

    records = records_in(s3_server, config)
    assert sorted((r["row_index"], r["sample_index"]) for r in records) == [
        (row, sample) for row in range(7) for sample in range(2)]
    expected = {
        1: "line 2: not valid JSON: Expecting property name enclosed in double quotes",
        2: "line 3: 'ground_truth' must be a string, got int",
        3: "line 5: 'system_prompt' cannot be null",
        4: "line 6: Missing required columns: ['ground_truth']",
        5: f"line 7: not valid UTF-8 (byte {lines[6].index(not_utf8) + 1} of the line)",
    }
    for record in records:
        if record["row_index"] in expected:
            assert record["status"] == "invalid", record
            assert record["error"]["category"] == "dataset"
            assert record["error"]["message"].startswith(
                f"{dataset} {expected[record['row_index']]}"), record["error"]
            assert record["scores"] == {} and record["reward"] is None
            assert record["messages"] == [] and record["usage"]["num_llm_calls"] == 0
        else:
            assert record["status"] == "completed" and record["reward"] == 1.0, record

    aggregated = run_pod("aggregate", env)
    assert aggregated.returncode == 0, aggregated.stderr
    summary = message_of(message)
    assert summary["progress"] == {"total": 14, "completed": 4, "failed": 0, "masked": 0,
                                   "invalid": 10}
    # Invalid rows are never scored: the mean is over the rows that ran, not dragged to 0.
    assert summary["summary"][REWARD]["mean"] == 1.0
    assert summary["summary"][REWARD]["pass_at_k"] == {"1": 1.0, "2": 1.0}
    store = open_store(config.run_prefix, environ=s3_server.env)
    results = json.loads(_run(store.get("results.json")))
    assert len(results["runs"]) == 14
    assert results["summary"]["total_runs"] == 4
    parquet = tmp_path / "trajectories.parquet"
    parquet.write_bytes(_run(store.get("trajectories.parquet")))
    statuses = sorted(r.status for r in read_parquet_records(parquet))
    assert statuses == ["completed"] * 4 + ["invalid"] * 10


@pytest.mark.slow
def test_a_model_failing_half_its_calls_never_scores_zero(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    config = make_config(s3_server.bucket(), model_url, tool_url, model="scripted:fail-every-2",
                         concurrency=20)
    message = tmp_path / "termination-log"
    done = run_pod("work", pod_env(config, s3_server, message))
    assert done.returncode == 0, done.stderr
    records = list(kept_records(records_in(s3_server, config)).values())
    assert sorted(r["row_index"] for r in records) == list(range(20))
    for record in records:
        if record["status"] == "masked":
            assert record["error"]["category"] == "inference"
            assert record["scores"] == {} and record["reward"] is None
        else:
            assert record["status"] == "completed"
            assert record["reward"] == 1.0
    masked = sum(r["status"] == "masked" for r in records)
    assert message_of(message)["masked"] == masked
    # Without retries nearly every rollout would meet a 500; with them few run out.
    assert masked <= 10


def kept_records(records: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The record kept of each item: a non-masked one over masked ones, else the latest."""
    kept: dict[tuple[int, int], dict[str, Any]] = {}
    for record in records:
        item = (record["row_index"], record["sample_index"])
        before = kept.get(item)
        if before is None or (before["status"] == "masked" and (
                record["status"] != "masked" or record["attempt"] > before["attempt"])):
            kept[item] = record
    return kept


@pytest.mark.slow
def test_rollouts_masked_by_a_burst_of_503s_are_run_again_at_the_end_of_the_shard(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    # Every model call of the first 4 s is refused: the first rollouts exhaust their retries
    # (at most 3.5 s) and are masked; run again after the others, they complete.
    # No outage waits: the endpoint's answers to other requests show it is there anyway, and
    # this is about what becomes of rollouts that are masked.
    config = make_config(s3_server.bucket(), model_url, tool_url, samples=2, concurrency=8,
                         model="scripted:burst-4000:retried", faults={"outageBudgetSeconds": 0})
    message = tmp_path / "termination-log"
    env = pod_env(config, s3_server, message, ROLLOUT_MASKED_RETRY_BACKOFF_SECONDS="1")
    done = run_pod("work", env)
    assert done.returncode == 0, done.stderr
    result = message_of(message)
    assert (result["total"], result["done"], result["masked"]) == (40, 40, 0)
    assert result["retried"] >= 8

    records = records_in(s3_server, config)
    assert len(records) == 40 + result["retried"]  # the masked ones stay, as history
    assert sum(r["status"] == "masked" for r in records) == result["retried"]
    kept = kept_records(records)
    assert sorted(kept) == [(row, sample) for row in range(20) for sample in range(2)]
    assert all(r["status"] == "completed" and r["reward"] == 1.0 for r in kept.values())
    assert sum(r["attempt"] > 0 for r in kept.values()) >= 8

    aggregated = run_pod("aggregate", env)
    assert aggregated.returncode == 0, aggregated.stderr
    summary = message_of(message)
    assert summary["progress"] == {"total": 40, "completed": 40, "failed": 0, "masked": 0,
                                   "invalid": 0}
    assert summary["superseded"] == result["retried"]
    assert "duplicates" not in summary
    store = open_store(config.run_prefix, environ=s3_server.env)
    results = json.loads(_run(store.get("results.json")))
    assert [(r["row_index"], r["run_index"]) for r in results["runs"]] == sorted(kept)
    assert results["summary"]["total_runs"] == 40
    assert summary["summary"][REWARD]["prompts"] == 20
    assert summary["summary"][REWARD]["rollouts"] == 40
    parquet = tmp_path / "trajectories.parquet"
    parquet.write_bytes(_run(store.get("trajectories.parquet")))
    in_parquet = list(read_parquet_records(parquet))
    assert sorted((r.row_index, r.sample_index) for r in in_parquet) == sorted(kept)
    assert {(r.row_index, r.sample_index): r.attempt for r in in_parquet} == {
        item: r["attempt"] for item, r in kept.items()}


@pytest.mark.slow
def test_masked_rollouts_are_run_again_by_a_retried_shard(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    bucket = s3_server.bucket()
    dataset = {"limit": 4}
    down = make_config(bucket, model_url, tool_url, model="scripted:status-503",
                       dataset=dataset, faults={"outageBudgetSeconds": 0})
    message = tmp_path / "termination-log"
    extra = {"ROLLOUT_MASKED_RETRY_BACKOFF_SECONDS": "0.1"}
    done = run_pod("work", pod_env(down, s3_server, message, **extra))
    assert done.returncode == 0, done.stderr
    result = message_of(message)
    assert (result["done"], result["masked"], result["retried"]) == (4, 4, 8)  # 2 retries each
    records = records_in(s3_server, down)
    assert sorted((r["row_index"], r["attempt"]) for r in records) == [
        (row, attempt) for row in range(4) for attempt in range(3)]

    up = make_config(bucket, model_url, tool_url, model="scripted:resumed", dataset=dataset)
    done = run_pod("work", pod_env(up, s3_server, message, **extra))
    assert done.returncode == 0, done.stderr
    result = message_of(message)
    assert (result["skipped"], result["done"], result["masked"]) == (0, 4, 0)
    kept = kept_records(records_in(s3_server, up))
    assert {item: (r["status"], r["attempt"]) for item, r in kept.items()} == {
        (row, 0): ("completed", 3) for row in range(4)}

    done = run_pod("work", pod_env(up, s3_server, message, **extra))  # nothing left to do
    assert done.returncode == 0, done.stderr
    assert (message_of(message)["skipped"], message_of(message)["done"]) == (4, 0)


@pytest.mark.slow
def test_a_model_endpoint_that_dies_mid_shard_keeps_what_finished(
    s3_server: S3Server, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    model, url = start_process(latency_ms=50)
    bucket = s3_server.bucket()
    # Gone for longer than the outage budget: the shard stops.
    config = make_config(bucket, url, tool_url, concurrency=2, faults={"outageBudgetSeconds": 1})
    message = tmp_path / "termination-log"
    env = pod_env(config, s3_server, message, ROLLOUT_PART_SIZE="2")
    worker = subprocess.Popen(rolloutctl_argv(["work"]), cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(records_in(s3_server, config)) < 4:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        model.kill()
        model.wait(10)
    assert worker.wait(60) == 1
    stopped = message_of(message)
    assert "model endpoint cannot serve any request" in stopped["error"]
    committed = records_in(s3_server, config)
    assert stopped["done"] == len(committed) < 20  # everything that finished was committed
    assert all(r["status"] == "completed" for r in committed)

    model, url = start_process()
    try:
        retry = make_config(bucket, url, tool_url, concurrency=2)
        done = run_pod("work", pod_env(retry, s3_server, message))
    finally:
        model.kill()
        model.wait(10)
    assert done.returncode == 0, done.stderr
    assert message_of(message)["skipped"] == len(committed)
    rows = sorted(r["row_index"] for r in records_in(s3_server, config))
    assert rows == list(range(20))


def test_an_endpoint_that_refuses_every_call_fails_the_pod_for_a_retry(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    config = make_config(s3_server.bucket(), model_url, tool_url, model="scripted:status-401")
    message = tmp_path / "termination-log"
    done = run_pod("work", pod_env(config, s3_server, message,
                                   ROLLOUT_MODEL_API_KEY="sk-not-a-real-key-123"))
    assert done.returncode == 1
    error = message_of(message)["error"]
    assert "Model check failed" in error
    assert "sk-not-a-real-key-123" not in done.stdout + done.stderr + error
    assert records_in(s3_server, config) == []


def test_a_pod_without_its_config_exits_2_saying_why(tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    env = cli_env({"ROLLOUT_TERMINATION_MESSAGE_PATH": str(message)})
    env.pop(RUN_CONFIG_ENV, None)
    done = run_pod("work", env)
    assert done.returncode == EXIT_CONFIG
    assert "ROLLOUT_RUN_CONFIG is not set" in message_of(message)["error"]


# --- in process ---------------------------------------------------------------------------


def _run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


def record(row: int, sample: int, reward: float | None, status: str = "completed",
           answer: str = "#### 1") -> TrajectoryRecord:
    error = None if status == "completed" else RecordError(category="inference", message="500")
    return TrajectoryRecord(
        rollout_id=f"calc-{row}-{sample}", row_index=row, sample_index=sample,
        status=status,  # type: ignore[arg-type]
        error=error,
        scores={REWARD: reward} if reward is not None and status == "completed" else {},
        reward=reward if status == "completed" else None,
        messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
    )


async def test_aggregate_fills_advantages_and_leaves_masked_out(tmp_path: Path) -> None:
    output = (tmp_path / "out").as_uri()
    config = make_config(output, "http://127.0.0.1:1/v1", "http://127.0.0.1:2/mcp",
                         shards=2, samples=3)
    store = open_store(config.run_prefix)
    async with ShardWriter(store, "", 0) as writer:
        for sample, reward in enumerate((1.0, 0.0, 1.0)):
            await writer.add(record(0, sample, reward))
        for sample in range(3):
            await writer.add(record(2, sample, 0.0))
    async with ShardWriter(store, "", 1) as writer:
        await writer.add(record(1, 0, 1.0))
        await writer.add(record(1, 1, None, status="masked"))
        await writer.add(record(1, 2, 0.0))
    # An item committed again, as writers that did not read each other's parts could leave it.
    await store.put(part_key(1, 2), record(1, 0, 0.0).model_dump_json().encode() + b"\n")

    summary = await aggregate_run(config, environ={})
    assert summary["progress"] == {"total": 9, "completed": 8, "failed": 0, "masked": 1,
                                   "invalid": 0}
    assert summary["duplicates"] == 1
    stats = summary["summary"][REWARD]
    assert stats["mean"] == pytest.approx(3 / 8)
    # Row 0 passes, row 2 never does, row 1 passes with its two unmasked samples.
    assert stats["pass_at_k"]["1"] == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert stats["pass_at_k"]["3"] == pytest.approx(2 / 3)

    by_item = {(r.row_index, r.sample_index): r
               for r in read_parquet_records(tmp_path / "out" / "team-a" / "calc-5e1c0f3a"
                                             / "trajectories.parquet")}
    assert len(by_item) == 9
    assert by_item[(0, 0)].advantage == pytest.approx(0.7071, abs=1e-3)
    assert by_item[(0, 1)].advantage == pytest.approx(-1.4142, abs=1e-3)
    assert by_item[(2, 0)].advantage == 0.0
    assert by_item[(1, 1)].advantage is None
    assert by_item[(1, 0)].reward == 1.0  # the first commit won
    assert by_item[(1, 0)].advantage == pytest.approx(1.0, abs=1e-3)

    results = json.loads(await store.get("results.json"))
    assert [(r["row_index"], r["run_index"]) for r in results["runs"]] == [
        (row, sample) for row in range(3) for sample in range(3)
    ]
    assert results["runs"][4]["success"] is False and results["runs"][4]["error"] == "500"
    assert results["summary"]["eval_fns"][REWARD]["mean"] == stats["mean"]
    assert results["config"]["n_runs"] == 3 and results["config"]["commit"] == "0" * 40


async def test_a_run_with_nothing_scored_reports_no_statistics(tmp_path: Path) -> None:
    """Every rollout masked or invalid: the summary's statistics are null, not zeros."""
    config = make_config((tmp_path / "out").as_uri(), "http://127.0.0.1:1/v1",
                         "http://127.0.0.1:2/mcp", samples=2)
    store = open_store(config.run_prefix)
    async with ShardWriter(store, "", 0) as writer:
        await writer.add(record(0, 0, None, status="masked"))
        await writer.add(record(0, 1, None, status="masked"))
        await writer.add(TrajectoryRecord(
            rollout_id="calc-1-0", row_index=1, status="invalid",
            error=RecordError(category="dataset", message="test_data.jsonl line 2: x")))
    summary = await aggregate_run(config, environ={}, write_parquet=False)
    assert summary["progress"] == {"total": 3, "completed": 0, "failed": 0, "masked": 2,
                                   "invalid": 1}
    assert summary["summary"] == {REWARD: {"mean": None, "std": None, "min": None,
                                           "max": None, "prompts": 0, "rollouts": 0}}
    results = json.loads(await store.get("results.json"))
    assert results["summary"]["total_runs"] == 0  # results.json keeps the eval summary


def test_summary_without_masked_runs_is_the_eval_summary() -> None:
    from rollout_operator.runtime.metrics import build_eval_summary

    runs = [{"row_index": r, "run_index": s, "success": True, "scores": {"f": float(r == s)},
             "tokens": 3, "duration_ms": 1.0, "model_tag": None, "left_out": False}
            for r in range(3) for s in range(2)]
    summary = build_summary(runs, ["f"], n_runs=2, pass_threshold=1.0)
    eval_summary = build_eval_summary(runs, ["f"], n_runs=2, pass_threshold=1.0)
    # The eval summary's keys, unchanged, and beside them what each figure is over.
    assert summary.pop("total_prompts") == 3
    assert summary["eval_fns"]["f"].pop("prompts") == 3
    assert summary["eval_fns"]["f"].pop("rollouts") == 6
    assert summary == eval_summary


async def test_the_summary_says_over_how_many_prompts_and_rollouts(tmp_path: Path) -> None:
    """Every sample of row 2 masked, one of row 1: the figures are over 2 of 3 prompts."""
    from rollout_operator.api.status import ScorerSummary

    config = make_config((tmp_path / "out").as_uri(), "http://127.0.0.1:1/v1",
                         "http://127.0.0.1:2/mcp", samples=2)
    store = open_store(config.run_prefix)
    async with ShardWriter(store, "", 0) as writer:
        await writer.add(record(0, 0, 1.0))
        await writer.add(record(0, 1, 0.0))
        await writer.add(record(1, 0, 1.0))
        await writer.add(record(1, 1, None, status="masked"))
        await writer.add(record(2, 0, None, status="masked"))
        await writer.add(record(2, 1, None, status="masked"))
    summary = await aggregate_run(config, environ={}, write_parquet=False)
    stats = summary["summary"][REWARD]
    assert (stats["prompts"], stats["rollouts"]) == (2, 3)
    assert stats["pass_at_k"] == {"1": pytest.approx(0.75), "2": 1.0}  # over rows 0 and 1
    status = ScorerSummary.model_validate(stats)
    assert (status.prompts, status.rollouts) == (2, 3)

    results = json.loads(await store.get("results.json"))
    eval_stats = results["summary"]["eval_fns"][REWARD]
    assert {"mean", "std", "min", "max", "pass_at_k"} <= set(eval_stats)
    assert (eval_stats["prompts"], eval_stats["rollouts"]) == (2, 3)
    assert results["summary"]["total_prompts"] == 3
    assert results["summary"]["total_runs"] == 3  # the eval key, as before


def test_advantages_are_per_prompt() -> None:
    rewards: dict[int, dict[int, float | None]] = {0: {0: 1.0, 1: 0.0}, 1: {0: 0.5, 1: None}}
    advantages = advantages_by_item(rewards)
    assert advantages[(0, 0)] == pytest.approx(1.0, abs=1e-5)
    assert advantages[(0, 1)] == pytest.approx(-1.0, abs=1e-5)
    assert advantages[(1, 0)] == 0.0
    assert (1, 1) not in advantages


def test_the_compact_summary_fits_whatever_the_run() -> None:
    from rollout_operator.cli.pod_aggregate import _Scan

    scan = _Scan()
    for row in range(50):
        scan.add(record(row, 0, row / 50, answer="x" * 5000))
    names = [f"reward_fn.module_{i}:a_rather_long_function_name_{i}" for i in range(40)]
    summary = {"eval_fns": {name: {"mean": 0.5, "std": 0.1, "min": 0.0, "max": 1.0,
                                   "pass_at_k": {str(k): 0.5 for k in range(1, 12)}}
                            for name in names}}
    message = compact_summary(scan, summary, {"run": "s3://b/" + "p" * 900})
    assert len(json.dumps(message, separators=(",", ":")).encode()) <= 4096
    assert message["progress"]["total"] == 50

    small = compact_summary(scan, {"eval_fns": {}}, {})
    samples = small["samples"]
    assert [s["row_index"] for s in samples] == [49, 48, 47, 0, 1, 2]
    assert all(len(s["answer"]) <= 200 for s in samples)


def test_fit_json_keeps_numbers_and_cuts_text() -> None:
    payload = {"shard": 3, "done": 12345, "error": "e" * 10000,
               "samples": [{"answer": "a" * 1000, "reward": 0.5}] * 50}
    text = fit_json(payload)
    assert len(text.encode()) <= 4096
    fitted = json.loads(text)
    assert fitted["shard"] == 3 and fitted["done"] == 12345
    assert fitted["error"].startswith("eee") and fitted["error"].endswith("...")
    assert fit_json({"a": 1}) == '{"a":1}'


def test_job_index() -> None:
    assert job_index({"JOB_COMPLETION_INDEX": "3"}, count=4) == 3
    assert job_index({}, count=1) == 0
    for environ, count, message in (({}, 3, "is not set"),
                                    ({"JOB_COMPLETION_INDEX": "4"}, 4, "out of range"),
                                    ({"JOB_COMPLETION_INDEX": "x"}, 4, "not a number")):
        with pytest.raises(PodFailure, match=message) as info:
            job_index(environ, count=count)
        assert info.value.exit_code == EXIT_CONFIG


def test_run_config_round_trips_through_the_environment() -> None:
    config = make_config("s3://bucket/out", "http://127.0.0.1:1/v1", "http://tools:8000/mcp")
    value = config.to_env_value()
    assert '"baseURL"' in value and '"samplesPerPrompt"' in value
    assert RunConfig.from_env({RUN_CONFIG_ENV: value}) == config
    assert config.run_prefix == "s3://bucket/out/team-a/calc-5e1c0f3a"
    with pytest.raises(RunConfigError, match="is not set"):
        RunConfig.from_env({})
    with pytest.raises(RunConfigError, match=r"spec\.model"):
        RunConfig.from_env({RUN_CONFIG_ENV: value.replace('"model":{', '"model":{"bogus":1,')})



def test_the_first_worker_writes_the_tool_schemas_once_scrubbed(tmp_path: Path) -> None:
    import asyncio

    from rollout_operator.cli.pod_work import _save_tool_schemas
    from rollout_operator.runtime.scrub import Scrubber, process_scrubber, use_process_scrubber
    from rollout_operator.runtime.storage import open_store

    store = open_store(str(tmp_path))
    schema = {"type": "function", "function": {"name": "lookup",
                                               "description": "uses key sk-tool-secret-123"}}
    before = process_scrubber()
    use_process_scrubber(Scrubber(["sk-tool-secret-123"]))
    try:
        asyncio.run(_save_tool_schemas(store, [schema]))
        asyncio.run(_save_tool_schemas(store, [{"type": "function",
                                                "function": {"name": "other"}}]))
    finally:
        use_process_scrubber(before)
    written = (tmp_path / "tools.json").read_text()
    assert "sk-tool-secret-123" not in written
    (saved,) = json.loads(written)
    assert saved["function"]["name"] == "lookup"


@pytest.mark.slow
def test_two_pods_of_one_shard_count_only_the_rollouts_they_committed(
    s3_server: S3Server, model_url: str, tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    """A retried pod while the old one still runs: both run the same items; each record is
    committed once, and each pod's `done` counts only what it committed itself."""
    import asyncio

    from rollout_operator.cli.pod_work import run_shard

    config = make_config(s3_server.bucket(), model_url, tool_url, samples=2, concurrency=4)
    env = pod_env(config, s3_server, tmp_path / "termination-log")

    async def both() -> list[Any]:
        return list(await asyncio.gather(*(
            run_shard(config, 0, environ=env, part_size=2, handle_sigterm=False)
            for _ in range(2))))

    first, second = asyncio.run(both())
    records = records_in(s3_server, config)
    assert sorted((r["row_index"], r["sample_index"]) for r in records) == [
        (row, sample) for row in range(20) for sample in range(2)]
    assert first.done + second.done == len(records) == 40
    assert first.failed == second.failed == first.masked == second.masked == 0
