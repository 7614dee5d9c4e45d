"""Refusals before anything runs (contract §16.1), through the real `rolloutctl eval run`:
no uv, no model and no rollout server are needed."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.workspaces.conftest import copy_workspace

DATASET = ("--dataset-file", "data/calculator.jsonl")
pytestmark = pytest.mark.slow  # a dozen rolloutctl processes, 1-2 s each


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return copy_workspace(tmp_path / "calculator")


def _error(cwd: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    done = run_cli(["eval", "run", *args, "--yes", "--json"], cwd=cwd,
                   env={"OPENAI_API_KEY": "sk-test-0123456789", **(env or {})})
    assert done.returncode == 1, done.stdout + done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["command"] == "eval run"
    return dict(envelope["error"])


def _write(ws: Path, name: str, text: str) -> str:
    (ws / "configs" / "eval" / name).write_text(text)
    return f"configs/eval/{name}"


BASE = """[experiment]
rollout = "calculator"
entrypoint = "main.py"
model_path = "openai/scripted"
dataset = "calculator"
"""


def test_a_directory_outside_git_is_not_a_workspace(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "workspaces" / "calculator", plain)
    error = _error(plain, "configs/eval/calculator.toml", *DATASET)
    assert error["code"] == "WORKSPACE_REQUIRED"
    assert error["message"] == ("Run this command from an Osmosis workspace directory created "
                                "by Platform.")


def test_a_workspace_without_data_is_refused(ws: Path) -> None:
    shutil.rmtree(ws / "data")
    error = _error(ws, "configs/eval/calculator.toml", "--dataset-file", "elsewhere.jsonl")
    assert error["message"].startswith(
        "This workspace directory is missing required Osmosis scaffold paths.\n  - data\n")


def test_a_config_outside_configs_eval_is_refused(ws: Path) -> None:
    shutil.copy(ws / "configs" / "eval" / "calculator.toml", ws / "calculator.toml")
    error = _error(ws, "calculator.toml", *DATASET)
    assert error["message"].startswith("eval config must live under `configs/eval/`.")


def test_an_unknown_key_is_refused(ws: Path) -> None:
    config = _write(ws, "typo.toml", BASE + '[evaluation]\nlimt = 3\n[secrets]\nrequired = []\n')
    error = _error(ws, config, *DATASET)
    assert error["message"] == "Invalid eval config:\n  - evaluation.limt: Unrecognized key"


def test_a_missing_secrets_section_is_refused(ws: Path) -> None:
    config = _write(ws, "nosecrets.toml", BASE)
    error = _error(ws, config, *DATASET)
    assert error["message"].startswith("Missing [secrets] section in ")


def test_a_reserved_env_name_is_refused(ws: Path) -> None:
    config = _write(ws, "reserved.toml", BASE + '[env]\n_OSMOSIS_ROLLOUT_PORT = "1"\n'
                    '[secrets]\nrequired = []\n')
    error = _error(ws, config, *DATASET)
    assert "env var names starting with _OSMOSIS_ are reserved" in error["message"]


def test_a_missing_experiment_key_is_refused(ws: Path) -> None:
    config = _write(ws, "nomodel.toml", BASE.replace('model_path = "openai/scripted"\n', "")
                    + "[secrets]\nrequired = []\n")
    error = _error(ws, config, *DATASET)
    assert error["message"].startswith("Missing 'model_path' in [experiment] section of ")


def test_a_missing_secret_value_is_refused(ws: Path) -> None:
    config = _write(ws, "secret.toml", BASE + '[secrets]\nrequired = ["JUDGE_TOKEN"]\n')
    error = _error(ws, config, *DATASET)
    assert error["message"] == ("No value found for: JUDGE_TOKEN. Export them or pass "
                                "--secrets-file.")


def test_a_name_in_env_and_secrets_is_refused(ws: Path) -> None:
    config = _write(ws, "both.toml", BASE + '[env]\nJUDGE_TOKEN = "x"\n'
                    '[secrets]\nrequired = ["JUDGE_TOKEN"]\n')
    error = _error(ws, config, *DATASET)
    assert error["message"].startswith("Name(s) appear in both [env] and [secrets] of ")


def test_out_of_range_rows_are_refused(ws: Path) -> None:
    error = _error(ws, "configs/eval/calculator.toml", *DATASET, "--rows", "1,9")
    assert error["message"] == ("--rows: row 9 is out of range (the dataset has 5 rows, 0-4)")


def test_a_platform_dataset_needs_a_file(ws: Path) -> None:
    error = _error(ws, "configs/eval/calculator.toml")
    assert error["code"] == "DATASET_REQUIRED"


def test_without_yes_a_script_must_confirm(ws: Path) -> None:
    done = run_cli(["eval", "run", "configs/eval/calculator.toml", *DATASET, "--json"], cwd=ws,
                   env={"OPENAI_API_KEY": "sk-test-0123456789"})
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "CONFIRMATION_REQUIRED"


def test_a_run_in_use_is_refused(ws: Path) -> None:
    locks = ws / ".osmosis" / "evals" / ".locks"
    locks.mkdir(parents=True)
    with (locks / "busy.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        error = _error(ws, "configs/eval/calculator.toml", *DATASET, "--name", "busy")
    assert error["code"] == "RUN_LOCKED"
    assert error["message"].startswith("run 'busy' is in use by another `eval run`")
