"""`rolloutctl test`, `eval` and `run` with the oldest FastMCP the project supports.

The pyproject's floor (`fastmcp>=2.12.4`, the version the public Osmosis example pins) is
installed from PyPI, with the packages it needs beside the suite's own, into a folder put first
on PYTHONPATH: the commands then run against FastMCP 2.12 exactly as a user of that pin does.
FastMCP 2.12 has no public `list_tools`/`call_tool` on the server, and its MCP library is one
the lean tool server cannot use (it falls back to FastMCP's own transport).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.local.support import manifest, sandbox_available
from tests.support.cli import EXAMPLE, REPO_ROOT, run_cli
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

REWARD = "reward_fn.compute_reward:numbers_match_reward"
# What pip resolves for fastmcp 2.12.4 beside this project's other dependencies (its MCP 1.x
# and the OpenAPI packages it imports); the rest comes from the suite's environment.
FLOOR_COMPANIONS = (
    "mcp==1.30.0", "httpx-sse==0.4.3", "isodate==0.7.2", "jsonschema-path==0.4.6",
    "more-itertools==11.2.1", "openapi-core==0.23.1", "openapi-schema-validator==0.8.1",
    "openapi-spec-validator==0.8.5", "pathable==0.5.0",
)


def fastmcp_floor() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    for requirement in dependencies:
        match = re.fullmatch(r"fastmcp>=([0-9.]+)", requirement.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml has no fastmcp>=X floor")


@pytest.fixture(scope="module")
def floor_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    overlay = tmp_path_factory.mktemp("fastmcp-floor")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(overlay), f"fastmcp=={fastmcp_floor()}", *FLOOR_COMPANIONS],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    path = os.pathsep.join([str(overlay), str(REPO_ROOT / "operator"), str(REPO_ROOT)])
    check = subprocess.run([sys.executable, "-c", "import fastmcp; print(fastmcp.__version__)"],
                           env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                           text=True, check=True)
    assert check.stdout.strip() == fastmcp_floor()
    return {"PYTHONPATH": path}


def test_test_and_eval_on_the_floor(floor_env: dict[str, str],
                                    scripted_model: ScriptedModelServer,
                                    tmp_path: Path) -> None:
    model = ["--model", "openai/scripted", "--base-url", scripted_model.base_url]
    tested = run_cli(["test", "--mcp", "mcp", "-d", "test_data.jsonl", "--limit", "4", *model],
                     env=floor_env)
    assert tested.returncode == 0, tested.stderr
    assert re.search(r"^  Passed: 4$", tested.stdout, re.M), tested.stdout
    out = tmp_path / "eval"
    evaluated = run_cli(["eval", "--mcp", "mcp", "-d", "test_data.jsonl", "--limit", "4",
                         "--eval-fn", REWARD, "--n", "2", "--fresh", "-o", str(out), *model],
                        env={**floor_env, "OSMOSIS_CACHE_DIR": str(tmp_path / "cache")})
    assert evaluated.returncode == 0, evaluated.stderr
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["summary"]["eval_fns"][REWARD]["mean"] == 1.0


@pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not installed or "
                    "cannot create sandboxes on this machine")
def test_run_on_the_floor(floor_env: dict[str, str], scripted_model: ScriptedModelServer,
                          tmp_path: Path) -> None:
    document = manifest("floor", str(EXAMPLE), scripted_model.base_url,
                        (tmp_path / "out").as_uri(), rows=3, samples=2, shards=1)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(document))
    done = run_cli(["run", "-f", str(path), "--json"], cwd=tmp_path,
                   env={**floor_env, "ROLLOUT_MODEL_API_KEY": "sk-floor-test"}, timeout=240)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "Succeeded"
    assert result["progress"]["completed"] == 6
    assert result["summary"][REWARD]["mean"] == 1.0
