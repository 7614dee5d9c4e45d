"""A copy of the 0.3 test workspace as a git repository, the scripted model, and what running
`rolloutctl eval run` there needs: uv, a CPython 3.12 for the rollout's environment, and PyPI
(the rollout pins osmosis-ai 0.3.8; a cold `uv sync` takes about 8 s)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import REPO_ROOT, run_cli
from tests.support.scripted_model import ScriptedModelServer

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "workspaces" / "calculator"
PROVIDER_KEY = "sk-provider-key-for-tests-0123456789"
FIRST_ID = 100
"""Where the scripted model's tool-call ids start: three digits, as when the reference figures
were recorded, so token counts do not depend on which tests ran before."""


def _python312() -> str | None:
    """A working CPython 3.12 (a pyenv shim without a selected 3.12 does not count)."""
    candidates = []
    try:
        out = subprocess.run(["pyenv", "which", "python3.12"], capture_output=True, text=True,
                             env={**os.environ, "PYENV_VERSION": "3.12.1"}, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(out.stdout.strip())
    except OSError:
        pass
    found = shutil.which("python3.12")
    if found:
        candidates.append(found)
    for candidate in candidates:
        try:
            check = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if check.returncode == 0 and check.stdout.strip() == "(3, 12)":
            return candidate
    return None


def _uv_dir() -> str | None:
    found = shutil.which("uv", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                     os.environ.get("PATH", "")]))
    return str(Path(found).parent) if found else None


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def copy_workspace(target: Path) -> Path:
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns(
        ".venv", "uv.lock", "*.egg-info", "__pycache__", ".osmosis"))
    git = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "workspace"]):
        subprocess.run(["git", *args], cwd=target, env=git, check=True)
    return target


@dataclass
class Workspace:
    path: Path
    env: dict[str, str]
    model: ScriptedModelServer

    def eval_run(self, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any]]:
        done = run_cli(["eval", "run", *args, "--yes", "--json"], cwd=self.path, env=self.env,
                       timeout=timeout)
        assert done.stdout.strip(), done.stderr
        return done.returncode, json.loads(done.stdout)

    def run_dir(self, name: str) -> Path:
        return self.path / ".osmosis" / "evals" / name


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    python = _python312()
    uv_dir = _uv_dir()
    if python is None:
        pytest.skip("no CPython 3.12 here: the rollout project requires >=3.12")
    if uv_dir is None:
        pytest.skip("uv is not installed: `eval run` builds the rollout's environment with it")
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable: the rollout's environment (osmosis-ai 0.3.8) "
                    "comes from it")
    path = copy_workspace(tmp_path_factory.mktemp("ws") / "calculator")
    with ScriptedModelServer(first_id=FIRST_ID) as model:
        env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": PROVIDER_KEY,
               "UV_PYTHON": python, "UV_PYTHON_DOWNLOADS": "never",
               "PATH": os.pathsep.join([uv_dir, os.environ.get("PATH", "")])}
        yield Workspace(path, env, model)
