"""One table of RolloutRun manifests, run by both backends: the operator (a real `rolloutctl
operator` process against the emulated cluster, with Jobs run as local processes) and `rolloutctl
run` on this machine. The very same manifest document goes to both, output to the same moto S3
bucket (the runs differ by uid, so by folder); both must write the same records and report
the same summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import result_json, run_local, sandbox_available, write_manifest
from tests.operator.harness import MODEL_KEY, REWARD, Harness, make_repo, run_manifest

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    rows: int
    samples: int
    shards: int


CASES = [
    Case("right", "scripted", rows=6, samples=2, shards=2),
    Case("wrong", "scripted:wrong", rows=4, samples=3, shards=1),
    Case("loops", "scripted:always-tool", rows=3, samples=2, shards=3),
]


def _s3_records(h: Harness, prefix_url: str) -> list[dict[str, Any]]:
    bucket, prefix = prefix_url.removeprefix("s3://").split("/", 1)
    client = h.s3.client()
    found = []
    for key in h.s3.keys(f"s3://{bucket}"):
        if key.startswith(prefix + "/shards/"):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            found += [json.loads(line) for line in body.splitlines() if line.strip()]
    return found


def _keys(records: list[dict[str, Any]]) -> Counter[tuple[int, int]]:
    return Counter((r["row_index"], r["sample_index"]) for r in records)


def _outcome(records: list[dict[str, Any]]) -> list[tuple[int, int, str, dict[str, float]]]:
    """What a record says about its rollout, whoever ran it."""
    return sorted((r["row_index"], r["sample_index"], r["status"], r["scores"]) for r in records)


def test_operator_and_local_runs_agree(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    manifests = {case.name: run_manifest(case.name, repo, harness.model_url, harness.bucket,
                                         harness.s3.endpoint, model=case.model, rows=case.rows,
                                         samples=case.samples, shards=case.shards)
                 for case in CASES}
    for document in manifests.values():
        harness.apply(document)

    local: dict[str, dict[str, Any]] = {}
    env = {**harness.s3.env, "ROLLOUT_MODEL_API_KEY": MODEL_KEY}
    sandbox = [] if sandbox_available() else ["--no-sandbox"]
    for case in CASES:
        path = write_manifest(tmp_path / f"{case.name}.yaml", manifests[case.name])
        done = run_local(path, "--json", *sandbox, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        local[case.name] = result_json(done)

    for case in CASES:
        run = harness.wait_phase(case.name, ("Succeeded", "Failed"))
        status = run["status"]
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
        mine = local[case.name]
        expected = {(row, s) for row in range(case.rows) for s in range(case.samples)}

        cluster_records = _s3_records(harness, status["artifacts"]["run"])
        local_records = _s3_records(harness, mine["runPrefix"])
        assert mine["runPrefix"] != status["artifacts"]["run"]
        for records in (cluster_records, local_records):
            assert set(_keys(records)) == expected and set(_keys(records).values()) == {1}
        assert _outcome(local_records) == _outcome(cluster_records), case.name

        progress = {key: status["progress"][key] for key in ("completed", "failed", "masked")}
        assert progress == {key: mine["progress"][key] for key in progress}
        assert mine["progress"]["total"] == len(expected)
        ours, theirs = mine["summary"][REWARD], status["summary"][REWARD]
        for key in ("mean", "std", "min", "max"):
            assert ours[key] == pytest.approx(theirs[key]), (case.name, key)
        assert ours.get("pass_at_k") == theirs.get("passAtK"), case.name  # status is camelCase
        assert mine["commit"] == status["commit"]

    assert [local[c.name]["summary"][REWARD]["mean"] for c in CASES] == [1.0, 0.0, 0.0]
    assert MODEL_KEY not in harness.object_text()
