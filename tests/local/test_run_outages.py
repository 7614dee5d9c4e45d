"""`rolloutctl run` through outages of what it depends on, mid-run: the model endpoint gone
(connections refused), the model endpoint answering 503, object storage gone (connections
reset). Each outage lasts
longer than the old limits (a refused model connection stopped the shard at once; storage gave
up after about 2 s) and is waited out: the run succeeds with exactly rows x samples records in
storage, each written once, none masked.

The three runs go at once, each behind fault proxies of its own in front of one scripted model
server and one moto S3 server, so that their waits overlap.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import (
    EXAMPLE,
    local_env,
    manifest,
    result_json,
    run_argv,
    write_manifest,
)
from tests.support.fault_proxy import FaultProxy, Outage
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer

ROWS, SAMPLES = 12, 2
OUTAGE_S = 8.0
"""How long each outage lasts: past the old limits, short enough for the suite."""
STARTED_AFTER = 8
"""Model requests answered before the outage begins: rollouts are under way."""


@dataclass
class Outcome:
    done: subprocess.CompletedProcess[str]
    result: dict[str, Any]
    records: list[dict[str, Any]]
    refused: int


def run_through(tmp_path: Path, s3: S3Server, model: ScriptedModelServer, *,
                model_outage: Outage = None, storage_outage: Outage = None,
                outage_s: float = OUTAGE_S, rows: int = ROWS, samples: int = SAMPLES,
                started_after: int = STARTED_AFTER, concurrency: int = 2,
                faults: dict[str, Any] | None = None, repo: Path = EXAMPLE) -> Outcome:
    """One `rolloutctl run` whose model endpoint or storage goes away for `outage_s` once
    `started_after` model requests were answered."""
    model_port = int(model.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    storage_port = int(s3.endpoint.rsplit(":", 1)[1])
    bucket = s3.bucket()
    with FaultProxy(model_port) as model_proxy, FaultProxy(storage_port) as storage_proxy:
        document = manifest("outage", str(repo), f"{model_proxy.endpoint}/v1", bucket,
                            rows=rows, samples=samples, shards=2,
                            workers={"shards": 2, "concurrency": concurrency},
                            faults=faults or {})
        document["spec"]["output"]["endpoint"] = storage_proxy.endpoint
        path = write_manifest(tmp_path / "run.yaml", document)
        env = local_env({**s3.env, "ROLLOUT_PART_SIZE": "4"})
        process = subprocess.Popen(run_argv(path, "--json", "--no-sandbox"), cwd=tmp_path,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while sum(r[0] == "POST" for r in model_proxy.requests) < started_after:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the rollouts did not start"
                time.sleep(0.05)
            proxy = model_proxy if model_outage else storage_proxy
            proxy.outage = model_outage or storage_outage
            time.sleep(outage_s)
            proxy.outage = None
            stdout, stderr = process.communicate(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        result = result_json(done)
    return Outcome(done, result, records_under(s3, result["runPrefix"]), proxy.refused)


def records_under(s3: S3Server, run_prefix: str) -> list[dict[str, Any]]:
    """Every record line under the run's shards/, read with boto3 (not with our reader)."""
    bucket, _, prefix = run_prefix.removeprefix("s3://").partition("/")
    client = s3.client()
    lines: list[dict[str, Any]] = []
    for key in s3.keys(run_prefix):
        if key.startswith(f"{prefix}/shards/"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            lines.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return lines


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    scenarios: dict[str, dict[str, Outage]] = {
        "model refused": {"model_outage": "refuse"},
        "model 503": {"model_outage": "503"},
        "storage reset": {"storage_outage": "reset"},
    }
    with S3Server() as s3, ScriptedModelServer(latency_ms=150) as model, \
            ThreadPoolExecutor(len(scenarios)) as pool:
        futures = {name: pool.submit(run_through, tmp_path_factory.mktemp("run"), s3, model,
                                     **faults) for name, faults in scenarios.items()}
        yield {name: future.result() for name, future in futures.items()}


def assert_every_record_once_and_none_masked(outcome: Outcome) -> None:
    assert outcome.done.returncode == 0, outcome.done.stderr
    assert outcome.result["state"] == "Succeeded" and outcome.result["ok"]
    assert outcome.result["progress"] == {"total": ROWS * SAMPLES, "completed": ROWS * SAMPLES,
                                          "failed": 0, "masked": 0, "invalid": 0}
    items = Counter((r["row_index"], r["sample_index"], r["attempt"]) for r in outcome.records)
    assert sorted(items) == [(row, sample, 0) for row in range(ROWS)
                             for sample in range(SAMPLES)]
    assert set(items.values()) == {1}  # no duplicates
    assert {r["status"] for r in outcome.records} == {"completed"}


@pytest.mark.slow
def test_a_model_endpoint_gone_for_8s_mid_run_is_waited_out(
        outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["model refused"]
    assert_every_record_once_and_none_masked(outcome)
    assert outcome.result["outageSeconds"]["model"] > 0


@pytest.mark.slow
def test_an_8s_burst_of_model_503s_mid_run_leaves_no_rollout_masked(
        outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["model 503"]
    assert_every_record_once_and_none_masked(outcome)
    assert outcome.refused > 0
    assert outcome.result["outageSeconds"]["model"] > 0


@pytest.mark.slow
def test_object_storage_gone_for_8s_mid_run_is_waited_out(
        outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["storage reset"]
    assert_every_record_once_and_none_masked(outcome)
    assert outcome.refused > 0
    assert outcome.result["outageSeconds"]["storage"] > 0
