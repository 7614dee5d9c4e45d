"""`--eval-fn` resolves from the current folder, as `osmosis eval` does, and its errors say so."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rollout_operator.cli.main import cli
from tests.support.cli import EXAMPLE
from tests.support.scripted_model import ScriptedModelServer


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(record=False) as server:
        yield server


def _eval(model: ScriptedModelServer, eval_fn: str, cache: Path) -> tuple[int, str]:
    args = ["eval", "--mcp", str(EXAMPLE / "mcp"), "-d", str(EXAMPLE / "test_data.jsonl"),
            "--model", "scripted", "--base-url", model.base_url, "--api-key", "EMPTY",
            "--eval-fn", eval_fn, "--limit", "1"]
    result = CliRunner().invoke(cli, args, env={"OSMOSIS_CACHE_DIR": str(cache)})
    return result.exit_code, result.stderr


def test_a_module_missing_from_the_current_folder_is_named_with_that_folder(
    model: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the repo's reward_fn/ is not here
    code, stderr = _eval(model, "reward_fn.compute_reward:numbers_match_reward", tmp_path / "c")
    assert code == 1
    assert "Error: Cannot import module 'reward_fn.compute_reward'" in stderr
    assert f"under {tmp_path.resolve()}" in stderr
    assert "resolved from that folder" in stderr
    assert "repo root" not in stderr


def test_the_same_reference_loads_from_the_repo_folder(
    model: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(repo)
    code, stderr = _eval(model, "reward_fn.compute_reward:numbers_match_reward", tmp_path / "c")
    assert code == 0, stderr
