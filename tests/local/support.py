"""Helpers for driving `rolloutctl run` as a real process, the way a user does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.cli import REPO_ROOT, cli_env, rolloutctl_argv

EXAMPLE = REPO_ROOT / "examples" / "calculator"
REWARD = "reward_fn.compute_reward:numbers_match_reward"
BWRAP_MISSING = "bubblewrap (bwrap) is not installed or cannot create sandboxes here"


def sandbox_available() -> bool:
    from rollout_operator.local.sandbox import sandbox_problem

    return sandbox_problem() is None


def manifest(name: str, repo: str, model_url: str, output_url: str, *, model: str = "scripted",
             rows: int = 6, samples: int = 2, shards: int = 2,
             **spec_changes: Any) -> dict[str, Any]:
    """A RolloutRun of the calculator example (the operator tests' spec, output on disk)."""
    spec: dict[str, Any] = {
        "repo": {"url": repo, "revision": "main"},
        "dataset": {"path": "test_data.jsonl", "limit": rows, "samplesPerPrompt": samples},
        "model": {"name": model, "baseURL": model_url},
        "agent": {"maxTurns": 4, "toolTimeoutSeconds": 10, "rolloutTimeoutSeconds": 60},
        "scoring": {"functions": [REWARD]},
        "workers": {"shards": shards, "concurrency": 8},
        "output": {"url": output_url},
    }
    spec.update(spec_changes)
    return {"apiVersion": "rollouts.dev/v1alpha1", "kind": "RolloutRun",
            "metadata": {"name": name}, "spec": spec}


def write_manifest(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


def local_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return cli_env({"ROLLOUT_MODEL_API_KEY": "sk-local-test", **(extra or {})})


def run_argv(manifest_path: Path, *args: str) -> list[str]:
    return rolloutctl_argv(["run", "-f", str(manifest_path), *args])


def run_local(manifest_path: Path, *args: str, cwd: Path, env: Mapping[str, str] | None = None,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(run_argv(manifest_path, *args), cwd=cwd, env=local_env(env),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def result_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        value = json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"no JSON on stdout:\n{done.stdout}\n{done.stderr}") from None
    assert isinstance(value, dict)
    return value


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every committed trajectory record under a run folder, parts in order."""
    found = []
    for part in sorted(run_dir.glob("shards/*/part-*.jsonl")):
        found += [json.loads(line) for line in part.read_text().splitlines() if line.strip()]
    return found


def file_path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(url.removeprefix("file://"))
