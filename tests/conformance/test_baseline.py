"""`--baseline-model` runs are tagged as `osmosis eval` 0.2.17 tags them, so caches are shared."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rollout_operator.cli.main import cli
from tests.conformance.scenarios import REWARD
from tests.support.cli import EXAMPLE
from tests.support.scripted_model import ScriptedModelServer


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(record=False) as server:
        yield server


def test_baseline_runs_are_tagged_primary_and_baseline(
    model: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(repo)
    url = model.base_url
    args = ["eval", "--mcp", "./mcp", "-d", "test_data.jsonl", "--model", "scripted",
            "--base-url", url, "--api-key", "EMPTY", "--baseline-model", "scripted:wrong",
            "--baseline-base-url", url, "--baseline-api-key", "EMPTY", "--eval-fn", REWARD,
            "--limit", "2"]
    result = CliRunner().invoke(cli, args, env={"OSMOSIS_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "Running evaluation (2 rows x2 models)..." in result.stdout
    assert "[1/4] [primary] OK (" in result.stdout
    assert "[2/4] [baseline] OK (" in result.stdout
    cache_file = next((tmp_path / "cache" / "eval" / "scripted" / "test_data").glob("*_*.json"))
    runs = json.loads(cache_file.read_text())["runs"]
    assert [(r["row_index"], r["model_tag"]) for r in runs] == [
        (0, "primary"), (0, "baseline"), (1, "primary"), (1, "baseline")
    ]
    blocks = result.stdout.split("Evaluation Results:")
    assert len(blocks) == 3
    assert f"{REWARD}: mean=1.000" in blocks[1] and f"{REWARD}: mean=0.000" in blocks[2]
