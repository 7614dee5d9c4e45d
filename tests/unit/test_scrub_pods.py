"""Secrets that reach a worker's output are scrubbed before anything is written.

The worker and the aggregate run as processes, the way a Job's pod runs them, against the
scripted model and a tool server of the `leaky` fixture repo: its tool's output carries the
model key and the storage secret, and its judge scorer logs the judge key and raises an error
that holds it (plain, quoted and URL-encoded). Nothing the pods write (the committed parts, the
Parquet file, results.json, the termination messages, the logs) may hold a key.

The scorers run in their own server (`rolloutctl serve-scorers`, the user-code side, which
holds the judge key); the worker holds the judge key too, to scrub it from what comes back.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.runtime.records import read_parquet_records
from rollout_operator.runtime.run_config import MODEL_API_KEY_ENV, RUN_CONFIG_ENV, RunConfig
from rollout_operator.runtime.run_layout import run_prefix
from tests.operator.harness import tool_server
from tests.support.cli import REPO_ROOT, cli_env, rolloutctl_argv
from tests.support.loopback import free_port
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture
from tests.support.scripted_model import start_process

LEAKY = REPO_ROOT / "tests" / "fixtures" / "repos" / "leaky"
UID = "0b7d6a52-9c1e-4f3a-8d2b-5e6f7a8b9c0d"
MODEL_KEY = "sk-proj-Qm7XvT2pLk9RwZ4nB8yH"
JUDGE_KEY = "jdg/Hq4+Vn8=Rt2LmX6pKs"
STORAGE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLE"
JUDGE_ENV = "JUDGE_API_KEY"
SCORERS = ["reward_fn.rewards:exact", "reward_fn.rewards:judge"]
FORBIDDEN = (
    MODEL_KEY, JUDGE_KEY, STORAGE_SECRET, quote(JUDGE_KEY, safe=""), quote(JUDGE_KEY),
    # Enough of each key to use it; any part of this length left over is a leak.
    MODEL_KEY[:14], MODEL_KEY[-14:], JUDGE_KEY[:12], JUDGE_KEY[-12:], STORAGE_SECRET[-16:],
)


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    process, url = start_process()
    try:
        yield url
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def leaky_tool_url() -> Iterator[str]:
    with tool_server(LEAKY, {"LEAKY_TOOL_TEXT": f"{MODEL_KEY} {STORAGE_SECRET}"}) as url:
        yield url


@contextmanager
def scorer_service() -> Iterator[dict[str, str]]:
    """A scorer server for the `leaky` repo; what the run config needs to reach it."""
    port = free_port()
    argv = ["serve-scorers", "--repo", str(LEAKY), "--port", str(port), "--timeout", "30"]
    for ref in SCORERS:
        argv += ["--scorer", ref]
    process = subprocess.Popen(rolloutctl_argv(argv), cwd=REPO_ROOT,
                               env=cli_env({JUDGE_ENV: JUDGE_KEY}),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield {"scorer_url": f"http://127.0.0.1:{port}"}
    finally:
        process.terminate()
        process.wait(30)


def assert_no_secret(text: str, where: str) -> None:
    for secret in FORBIDDEN:
        assert secret not in text, f"{where} holds {secret!r}"


def run_pod(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rolloutctl_argv([command]), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_a_worker_and_the_aggregate_write_no_secret(
    s3_server: S3Server, model_url: str, leaky_tool_url: str, tmp_path: Path,  # noqa: F811
) -> None:
    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://git.example.com/team/leaky.git"},
        "dataset": {"path": "data.jsonl"},
        "model": {"name": "openai/scripted", "baseURL": model_url,
                  "apiKeySecret": {"name": "model", "key": "key"}},
        "scoring": {"functions": SCORERS,
                    "secrets": [{"env": JUDGE_ENV,
                                 "secretKeyRef": {"name": "judge", "key": "key"}}]},
    })
    output = s3_server.bucket("out")
    with scorer_service() as scorers:
        config = RunConfig(spec=spec, namespace="team-a", name="leaky", uid=UID,
                           run_prefix=run_prefix(output, "team-a", "leaky", UID),
                           repo_dir=str(LEAKY), tool_url=leaky_tool_url, commit="0" * 40,
                           **scorers)
        message = tmp_path / "termination-log"
        env = cli_env({
            RUN_CONFIG_ENV: config.to_env_value(),
            "ROLLOUT_TERMINATION_MESSAGE_PATH": str(message),
            **s3_server.env,
            "AWS_SECRET_ACCESS_KEY": STORAGE_SECRET,  # the S3 stand-in takes any credentials
            MODEL_API_KEY_ENV: MODEL_KEY,
            JUDGE_ENV: JUDGE_KEY,
        })
        work = run_pod("work", env)
    assert work.returncode == 0, work.stderr
    worker_message = message.read_text()
    assert json.loads(worker_message)["done"] == 2
    logs = work.stdout + work.stderr
    assert_no_secret(logs, "the worker's log")
    assert_no_secret(worker_message, "the worker's termination message")

    # The committed parts, as stored (read with boto3, not with our reader).
    bucket, _, prefix = config.run_prefix.removeprefix("s3://").partition("/")
    client = s3_server.client()
    parts = [key for key in s3_server.keys(config.run_prefix)
             if key.startswith(f"{prefix}/shards/")]
    committed = "".join(client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
                        for key in parts)
    assert_no_secret(committed, "a committed part")
    records = [json.loads(line) for line in committed.splitlines() if line.strip()]
    assert len(records) == 2
    for record in records:
        assert record["status"] == "completed"
        assert record["scores"] == {"reward_fn.rewards:exact": 1.0,
                                    "reward_fn.rewards:judge": 0.0}
        tool_output = next(m["content"] for m in record["messages"] if m["role"] == "tool")
        assert tool_output.endswith("(debug: *** ***)"), tool_output
        error = record["error"]["message"]
        assert "judge rejected https://judge.example/v1/score?key=*** " in error, error
        assert "{'x-api-key': '***'}" in error, error

    aggregate = run_pod("aggregate", env)
    assert aggregate.returncode == 0, aggregate.stderr
    summary_text = message.read_text()
    assert_no_secret(aggregate.stdout + aggregate.stderr, "the aggregate's log")
    assert_no_secret(summary_text, "the aggregate's termination message")
    summary = json.loads(summary_text)
    assert summary["progress"]["completed"] == 2
    assert all("(debug: *** ***)" in sample["answer"] for sample in summary["samples"])

    results = client.get_object(Bucket=bucket, Key=f"{prefix}/results.json")["Body"].read()
    assert_no_secret(results.decode(), "results.json")
    assert len(json.loads(results)["runs"]) == 2

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "trajectories.parquet"
        client.download_file(bucket, f"{prefix}/trajectories.parquet", str(path))
        parquet: list[dict[str, Any]] = [
            record.model_dump(mode="json") for record in read_parquet_records(path)
        ]
    parquet_text = json.dumps(parquet)
    assert_no_secret(parquet_text, "trajectories.parquet")
    assert parquet_text.count("***") >= len(records) * 4


def test_a_pod_failure_reports_its_message_scrubbed(
    s3_server: S3Server, tmp_path: Path,  # noqa: F811
) -> None:
    # A dataset path that holds the key: the worker fails (exit 2) with a message naming it.
    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://git.example.com/team/leaky.git"},
        "dataset": {"path": f"data-{MODEL_KEY}.jsonl"},
        "model": {"name": "openai/scripted", "baseURL": "http://127.0.0.1:9/v1"},
    })
    config = RunConfig(spec=spec, namespace="team-a", name="leaky", uid=UID,
                       run_prefix=run_prefix(s3_server.bucket(), "team-a", "leaky", UID),
                       repo_dir=str(LEAKY), tool_url="http://127.0.0.1:9/mcp")
    message = tmp_path / "termination-log"
    done = run_pod("work", cli_env({
        RUN_CONFIG_ENV: config.to_env_value(),
        "ROLLOUT_TERMINATION_MESSAGE_PATH": str(message),
        **s3_server.env,
        MODEL_API_KEY_ENV: MODEL_KEY,
    }))
    assert done.returncode == 2, done.stderr
    error = json.loads(message.read_text())["error"]
    assert "Dataset 'data-***.jsonl' is not in the repository" in error
    assert_no_secret(error + done.stdout + done.stderr, "the failure")
    assert "data-***.jsonl" in done.stderr
