"""Object storage gone for 15 s while the operator's workers run, and again for 15 s when the
aggregate starts: the pods wait it out and the run succeeds with every record, each once.

The run reaches moto's S3 server through a fault proxy (`spec.output.endpoint`) that resets
every connection while an outage is on; the test checks what is stored with boto3, directly.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.k8s.server import wait_for
from tests.operator.harness import Harness, make_repo, run_manifest
from tests.support.fault_proxy import FaultProxy
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

OUTAGE_S = 15.0
ROWS, SAMPLES = 10, 2


def test_object_storage_gone_for_15s_during_the_workers_and_the_aggregate(
        harness: Harness, scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    storage_port = int(harness.s3.endpoint.rsplit(":", 1)[1])
    with FaultProxy(storage_port) as proxy:
        harness.apply(run_manifest("s3-outage", repo, harness.model_url, harness.bucket,
                                   proxy.endpoint, model="scripted:sleep-100", rows=ROWS,
                                   samples=SAMPLES))
        harness.wait_phase("s3-outage", ("Running",))
        answered = len(scripted_model.requests)
        wait_for(lambda: len(scripted_model.requests) >= answered + 4, 60, interval=0.05,
                 message="rollouts to be under way")
        proxy.outage = "reset"  # the workers' commits meet it
        time.sleep(OUTAGE_S)
        proxy.outage = None
        during_workers = proxy.refused

        # Every record is stored: the aggregate is next, and meets the second outage.
        run = harness.get("s3-outage")
        wait_for(lambda: len(harness.records(run)) >= ROWS * SAMPLES, 120, interval=0.05,
                 message="every record to be stored")
        proxy.outage = "reset"
        time.sleep(OUTAGE_S)
        proxy.outage = None
        run = harness.wait_phase("s3-outage", ("Succeeded", "Failed"))
    status = run["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    assert status["progress"]["completed"] == ROWS * SAMPLES
    records = harness.records(run)
    keys = Counter((r["row_index"], r["sample_index"], r["attempt"]) for r in records)
    assert sorted(keys) == [(row, sample, 0) for row in range(ROWS) for sample in range(SAMPLES)]
    assert set(keys.values()) == {1}  # none written twice
    assert {r["status"] for r in records} == {"completed"}
    assert during_workers > 0 and proxy.refused > during_workers  # both outages were met
    assert status["outageSeconds"]["storage"] > 0
    for container in ("worker", "aggregate"):  # each waited, and said so
        logs = "\n".join(p.read_text(errors="replace")
                         for p in harness.cluster.workdir.rglob("log")
                         if p.is_file() and p.parent.name == container)
        assert "Object storage unreachable" in logs, container
        assert "Object storage is back after" in logs, container
