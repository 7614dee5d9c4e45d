"""What `rolloutctl report` says when PATH is not something it can read."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import pytest

from rollout_operator.report.load import load_report_input
from rollout_operator.report.model import ReportSourceError
from rollout_operator.runtime.records import JsonlRecordWriter, TrajectoryRecord
from tests.support.cli import run_cli


def test_a_missing_path_exits_1_saying_what_to_give(tmp_path: Path) -> None:
    done = run_cli(["report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "r.html")])
    assert done.returncode == 1
    assert f"{tmp_path / 'nope.json'} does not exist" in done.stderr
    assert "eval results JSON or a run's output folder" in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_json_that_is_not_eval_results(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"runs": "no"}))
    with pytest.raises(ReportSourceError, match="is not eval results"):
        load_report_input(str(path))
    path.write_text("{not json")
    with pytest.raises(ReportSourceError, match="is not JSON"):
        load_report_input(str(path))


def test_a_folder_without_results(tmp_path: Path) -> None:
    with pytest.raises(ReportSourceError, match=re.escape(
            "holds no results.json, trajectories.parquet or shards/")):
        load_report_input(str(tmp_path))


def test_a_records_file_with_a_bad_line_names_it(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with JsonlRecordWriter(path) as writer:
        writer.write(TrajectoryRecord(rollout_id="r", row_index=0, status="completed"))
    with path.open("a") as handle:
        handle.write('{"rollout_id": "r2"}\n')
    with pytest.raises(ReportSourceError, match="line 2 is not a valid trajectory record"):
        load_report_input(str(path))


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "trajectories.parquet"
    path.write_text("not parquet")
    with pytest.raises(ReportSourceError, match="is not a trajectory records file"):
        load_report_input(str(path))


def test_secrets_in_the_environment_are_scrubbed_from_the_page(tmp_path: Path) -> None:
    key = "sk-test-0123456789abcdefghij"
    path = tmp_path / "records.jsonl"
    with JsonlRecordWriter(path) as writer:
        writer.write(TrajectoryRecord(
            rollout_id="r", row_index=0, status="completed",
            messages=[{"role": "user", "content": f"my key is {key}"}]))
    page = tmp_path / "r.html"
    done = run_cli(["report", str(path), "-o", str(page)], env={"OPENAI_API_KEY": key})
    assert done.returncode == 0, done.stderr
    report = load_report_input(str(path))
    assert report.rollouts[0].messages == [{"role": "user", "content": f"my key is {key}"}]
    blob = re.search(r'id="report-trajectories">([^<]*)<', page.read_text())
    assert blob is not None
    shown = gzip.decompress(base64.b64decode(blob.group(1))).decode()
    assert "my key is ***" in shown and key not in page.read_text() + shown
