"""`rolloutctl eval` as a process against the calculator example and a scripted model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import EXAMPLE, cli_env, rolloutctl_argv, run_cli
from tests.support.scripted_model import ScriptedModelServer

REWARD = "reward_fn.compute_reward:numbers_match_reward"
ROWS = sum(1 for line in (EXAMPLE / "test_data.jsonl").read_text().splitlines() if line.strip())


def _eval_args(base_url: str, model: str, out: Path, *extra: str) -> list[str]:
    return [
        "eval", "--mcp", "mcp", "-d", "test_data.jsonl", "--eval-fn", REWARD,
        "--model", model, "--base-url", base_url, "-o", str(out), *extra,
    ]


def _results(out: Path) -> dict[str, Any]:
    files = list(out.rglob("results_*.json"))
    assert len(files) == 1, files
    return dict(json.loads(files[0].read_text()))


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    return {"OSMOSIS_CACHE_DIR": str(tmp_path / "cache")}


@pytest.mark.slow
def test_eval_writes_upstream_results(
    scripted_model: ScriptedModelServer, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    done = run_cli(
        _eval_args(scripted_model.base_url, "scripted", out, "--n", "4", "--batch-size", "8",
                   "--log-samples"),
        env=cache_env,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    document = _results(out)
    assert document["version"] == 1 and document["status"] == "completed"
    assert len(document["task_id"]) == 12 and len(document["config_hash"]) == 32
    assert document["config"]["eval_fns"] == [REWARD]
    assert document["config"]["n_runs"] == 4
    runs = document["runs"]
    assert len(runs) == ROWS * 4
    assert {(r["row_index"], r["run_index"]) for r in runs} == {
        (i, k) for i in range(ROWS) for k in range(4)
    }
    assert all(r["success"] and r["scores"] == {REWARD: 1.0} for r in runs)
    assert set(runs[0]) == {"row_index", "run_index", "success", "scores", "duration_ms",
                            "tokens", "model_tag", "error"}
    stats = document["summary"]["eval_fns"][REWARD]
    assert stats["mean"] == 1.0 and stats["std"] == 0.0
    assert stats["pass_at_k"] == {"1": 1.0, "2": 1.0, "4": 1.0}
    assert document["summary"]["total_runs"] == ROWS * 4
    samples = next(out.rglob("samples_*.jsonl")).read_text().splitlines()
    assert len(samples) == ROWS * 4
    first = json.loads(samples[0])
    assert set(first) == {"row_index", "run_index", "model_tag", "messages"}
    assert first["messages"][-1]["content"].endswith("#### 96.0")
    assert f"{REWARD}: mean=1.000" in done.stdout
    assert "pass@4: 100.0%" in done.stdout

    again = run_cli(_eval_args(scripted_model.base_url, "scripted", out, "--n", "4"),
                    env=cache_env)
    assert again.returncode == 0
    assert "Evaluation already completed (cached)." in again.stdout


def test_wrong_answers_score_zero(
    scripted_model: ScriptedModelServer, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    done = run_cli(
        _eval_args(scripted_model.base_url, "scripted:wrong", out, "--limit", "3", "--n", "2",
                   "--pass-threshold", "0.5"),
        env=cache_env,
    )
    assert done.returncode == 0, done.stderr
    stats = _results(out)["summary"]["eval_fns"][REWARD]
    assert stats["mean"] == 0.0
    assert stats["pass_at_k"] == {"1": 0.0, "2": 0.0}


@pytest.mark.slow
def test_interrupt_then_resume_skips_finished_runs(
    tmp_path: Path, cache_env: dict[str, str]
) -> None:
    with ScriptedModelServer(latency_ms=100) as server:
        out = tmp_path / "out"
        args = _eval_args(server.base_url, "scripted", out, "--n", "4", "--batch-size", "4")
        proc = subprocess.Popen(rolloutctl_argv(args), cwd=EXAMPLE, env=cli_env(cache_env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cache = Path(cache_env["OSMOSIS_CACHE_DIR"])
        deadline = time.monotonic() + 60
        journal_lines = 0
        while time.monotonic() < deadline and journal_lines < 12:
            journals = list(cache.rglob("*.runs.jsonl"))
            journal_lines = len(journals[0].read_text().splitlines()) if journals else 0
            time.sleep(0.05)
        assert journal_lines >= 12
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=90)  # generous: CI machines may be loaded
        assert proc.returncode == 130, stderr
        assert "Re-run the same command to resume from where you left off." in stdout
        finished = len(next(cache.rglob("*.runs.jsonl")).read_text().splitlines())
        assert not list(out.rglob("results_*.json"))

        before = server.model.counts["scripted"]
        done = run_cli(args, env=cache_env)
        assert done.returncode == 0, done.stderr
        assert f"Resuming eval ({finished}/{ROWS * 4} runs completed)" in done.stdout
        calls = server.model.counts["scripted"] - before
        # preflight + two model calls per remaining run: finished runs are not redone
        assert calls == 1 + 2 * (ROWS * 4 - finished)
    runs = _results(out)["runs"]
    assert len(runs) == ROWS * 4
    assert len({(r["row_index"], r["run_index"]) for r in runs}) == ROWS * 4


def test_model_failures_are_recorded_and_the_batch_completes(
    scripted_model: ScriptedModelServer, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    out = tmp_path / "out"
    done = run_cli(
        _eval_args(scripted_model.base_url, "scripted:status-400", out, "--limit", "3"),
        env=cache_env,
    )
    assert done.returncode == 0, done.stderr
    runs = _results(out)["runs"]
    assert len(runs) == 3
    assert all(not r["success"] and r["error"] and r["scores"] == {} for r in runs)
    assert _results(out)["summary"]["eval_fns"][REWARD]["mean"] == 0.0


def test_systemic_error_stops_before_any_row(
    scripted_model: ScriptedModelServer, tmp_path: Path, cache_env: dict[str, str]
) -> None:
    done = run_cli(
        _eval_args(scripted_model.base_url, "scripted:status-401", tmp_path / "o", "--limit", "3"),
        env=cache_env,
    )
    assert done.returncode == 1
    assert "401" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mcp", "mcp", "-m", "a:b"], "--module and --mcp are mutually exclusive."),
        ([], "Either --module (-m) or --mcp is required."),
        (["--mcp", "mcp", "--model", "m"], "--dataset (-d) is required."),
        (["--mcp", "mcp", "-d", "test_data.jsonl"], "--model is required."),
        (["--mcp", "mcp", "-d", "test_data.jsonl", "--model", "m"], "--eval-fn is required."),
        (["--mcp", "mcp", "-d", "test_data.jsonl", "--model", "m", "--eval-fn", REWARD,
          "--n", "0"], "--n must be >= 1."),
        (["--mcp", "mcp", "-d", "test_data.jsonl", "--model", "m", "--eval-fn", REWARD,
          "--fresh", "--retry-failed"], "--fresh and --retry-failed are mutually exclusive."),
    ],
)
def test_flag_errors(args: list[str], message: str, cache_env: dict[str, str]) -> None:
    done = run_cli(["eval", *args], env=cache_env)
    assert done.returncode != 0
    assert f"Error: {message}" in done.stderr
