"""Run `rolloutctl` as a real process, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "calculator"


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "operator"), str(REPO_ROOT)])
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def rolloutctl_argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "rollout_operator.cli.main", *args]


def run_cli(
    args: Sequence[str],
    cwd: Path = EXAMPLE,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rolloutctl_argv(args),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
