"""`rolloutctl run` over a dataset with bad rows: each sample of a bad row is an `invalid` record
naming the file and line, the run goes on and succeeds; with `spec.dataset.strict` sync refuses
the run up front, naming the same lines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

SAMPLES = 2


def _repo_with_bad_rows(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    good = (EXAMPLE / "test_data.jsonl").read_bytes().splitlines()
    wrong_type = json.loads(good[3])
    wrong_type["ground_truth"] = 980
    lines = [
        good[0],                                       # line 1, row 0
        b'{"system_prompt": "s", "user_prompt": oops',  # line 2, row 1: not JSON
        good[1],                                       # line 3, row 2
        json.dumps(wrong_type).encode(),               # line 4, row 3: ground_truth an int
        good[2].replace(b"What is", b"Qu\xe9 es"),     # line 5, row 4: latin-1, not UTF-8
        good[4],                                       # line 6, row 5
    ]
    (repo / "test_data.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return repo


def _mode() -> list[str]:
    return [] if sandbox_available() else ["--no-sandbox"]


def test_bad_rows_are_invalid_records_and_the_run_goes_on(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    repo = _repo_with_bad_rows(tmp_path)
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "badrows", str(repo), scripted_model.base_url, (tmp_path / "out").as_uri(), rows=6,
        samples=SAMPLES, shards=2))
    done = run_local(path, "--json", *_mode(), cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["ok"] and result["state"] == "Succeeded"
    assert "3 dataset row(s) cannot be used" in done.stderr

    found = records(file_path(result["runPrefix"]))
    assert sorted((r["row_index"], r["sample_index"]) for r in found) == [
        (row, sample) for row in range(6) for sample in range(SAMPLES)]
    expected = {
        1: "test_data.jsonl line 2: not valid JSON: ",
        3: "test_data.jsonl line 4: 'ground_truth' must be a string, got int",
        4: "test_data.jsonl line 5: not valid UTF-8 (byte ",
    }
    for record in found:
        if record["row_index"] in expected:
            assert record["status"] == "invalid", record
            assert record["error"]["category"] == "dataset"
            assert record["error"]["message"].startswith(expected[record["row_index"]])
            assert record["scores"] == {} and record["reward"] is None
        else:
            assert record["status"] == "completed" and record["scores"] == {REWARD: 1.0}

    assert result["progress"] == {"total": 12, "completed": 6, "failed": 0, "masked": 0,
                                  "invalid": 6}
    assert result["summary"][REWARD]["mean"] == 1.0  # invalid rows are never scored 0
    results = json.loads((file_path(result["runPrefix"]) / "results.json").read_text())
    assert len(results["runs"]) == 12 and results["summary"]["total_runs"] == 6


def test_strict_refuses_the_run_at_sync(tmp_path: Path) -> None:
    repo = _repo_with_bad_rows(tmp_path)
    document = manifest("strict", str(repo), "http://127.0.0.1:9/v1",
                        (tmp_path / "out").as_uri(), rows=6, samples=SAMPLES)
    document["spec"]["dataset"]["strict"] = True
    done = run_local(write_manifest(tmp_path / "run.yaml", document), "--json", *_mode(),
                     cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 2, done.stderr
    assert result["state"] == "Failed"
    problems = [(p["file"], p["message"].split(":")[0]) for p in result["problems"]]
    assert problems[:3] == [("test_data.jsonl", "line 2"), ("test_data.jsonl", "line 4"),
                            ("test_data.jsonl", "line 5")]
    assert "spec.dataset.strict is true" in result["problems"][3]["message"]
    assert "test_data.jsonl: line 4: 'ground_truth' must be a string" in result["error"]
    assert not list((tmp_path / "out").glob("default/strict-*/shards/*"))
