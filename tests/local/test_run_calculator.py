"""`rolloutctl run` end to end: the calculator example against the scripted model, output in a
file:// folder, as real processes (the command, its tool server and its shard workers)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    local_env,
    manifest,
    records,
    result_json,
    run_argv,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

SANDBOX_MODES = [
    pytest.param(True, id="sandboxed", marks=pytest.mark.skipif(
        not sandbox_available(), reason="bubblewrap (bwrap) is not installed or cannot create "
        "sandboxes on this machine")),
    pytest.param(False, id="no-sandbox"),
]


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
def test_calculator_runs_to_results(scripted_model: ScriptedModelServer, tmp_path: Path,
                                    sandbox: bool) -> None:
    out = tmp_path / "out"
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "calc", str(EXAMPLE), scripted_model.base_url, out.as_uri(), rows=6, samples=2,
        shards=2))
    flags = ["--json"] + ([] if sandbox else ["--no-sandbox"])
    done = run_local(path, *flags, cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["ok"] and result["state"] == "Succeeded" and result["sandbox"] is sandbox

    run_dir = file_path(result["runPrefix"])
    assert run_dir.parent == out / "default" and run_dir.name.startswith("calc-")
    found = records(run_dir)
    keys = Counter((r["row_index"], r["sample_index"]) for r in found)
    assert set(keys) == {(row, s) for row in range(6) for s in range(2)}
    assert set(keys.values()) == {1}
    assert all(r["status"] == "completed" and r["scores"] == {REWARD: 1.0} for r in found)
    assert {p.parent.name for p in run_dir.glob("shards/*/part-*.jsonl")} == {"0", "1"}

    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["runs"]) == 12
    assert results["summary"]["eval_fns"][REWARD]["mean"] == 1.0
    assert result["summary"][REWARD]["mean"] == 1.0
    assert result["progress"] == {"total": 12, "completed": 12, "failed": 0, "masked": 0,
                                  "invalid": 0}
    assert (run_dir / "trajectories.parquet").is_file()
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["commit"] == result["commit"] and run_json["tools"] == ["add", "multiply"]
    assert list((out / "bundles").glob(f"{result['commit']}-*.tar.gz"))
    # the key reached the model as the workers' credentials, and no file of the run holds it
    assert "sk-local-test" not in "".join(p.read_text(errors="replace")
                                          for p in run_dir.rglob("*.json*"))


def test_rerun_of_a_finished_run_writes_nothing_new(scripted_model: ScriptedModelServer,
                                                    tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "again", str(EXAMPLE), scripted_model.base_url, (tmp_path / "out").as_uri(), rows=2,
        samples=1, shards=1, model="scripted:again"))
    first = result_json(run_local(path, "--json", "--no-sandbox", cwd=tmp_path))
    asked = _rollouts_started(scripted_model, "scripted:again")
    second = result_json(run_local(path, "--json", "--no-sandbox", cwd=tmp_path))
    assert first["ok"] and second["ok"]
    assert second["runPrefix"] == first["runPrefix"] and second["uid"] == first["uid"]
    assert _rollouts_started(scripted_model, "scripted:again") == asked == 2
    assert len(records(file_path(first["runPrefix"]))) == 2


def _rollouts_started(model: ScriptedModelServer, name: str) -> int:
    """First model requests of rollouts (the preflight's one-token "hi" left out)."""
    return sum(1 for body in model.requests if body.get("model") == name
               and len(body["messages"]) == 2 and body["messages"][-1]["role"] == "user")


@pytest.mark.parametrize("sandbox", SANDBOX_MODES)
def test_interrupted_run_resumes_without_duplicates(scripted_model: ScriptedModelServer,
                                                    tmp_path: Path, sandbox: bool) -> None:
    name = f"scripted:sleep-250:resume-{sandbox}"
    mode = [] if sandbox else ["--no-sandbox"]
    out = tmp_path / "out"
    rows, samples = 16, 2
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "resume", str(EXAMPLE), scripted_model.base_url, out.as_uri(), rows=rows,
        samples=samples, shards=2, model=name,
        workers={"shards": 2, "concurrency": 2}))
    env = local_env({"ROLLOUT_PART_SIZE": "2", "ROLLOUT_COMMIT_INTERVAL_SECONDS": "0.5"})
    process = subprocess.Popen(run_argv(path, "--json", *mode), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(list(out.glob("default/resume-*/shards/*/part-*.jsonl"))) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no part was committed in time"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    stopped = json.loads(stdout)
    assert stopped["state"] == "Stopped" and not stopped["ok"]
    run_dir = file_path(stopped["runPrefix"])
    kept = records(run_dir)
    assert 0 < len(kept) < rows * samples
    assert not (run_dir / "results.json").exists()

    started_before = _rollouts_started(scripted_model, name)
    done = run_local(path, "--json", *mode, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert result_json(done)["runPrefix"] == stopped["runPrefix"]
    found = records(run_dir)
    keys = Counter((r["row_index"], r["sample_index"]) for r in found)
    assert set(keys) == {(row, s) for row in range(rows) for s in range(samples)}
    assert set(keys.values()) == {1}, "a trajectory was written twice"
    # the rerun started exactly the rollouts that were not committed
    assert _rollouts_started(scripted_model, name) - started_before == rows * samples - len(kept)


def test_a_repo_with_problems_stops_before_anything_starts(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "mcp" / "main.py").unlink()
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "broken", str(repo), "http://127.0.0.1:9/v1", (tmp_path / "out").as_uri()))
    done = run_local(path, "--json", *([] if sandbox_available() else ["--no-sandbox"]),
                     cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 2, done.stderr
    assert result["state"] == "Invalid" and "mcp/main.py" in result["error"]
    assert any(p["file"] == "mcp/main.py" for p in result["problems"])
    assert not (tmp_path / "out").exists()  # nothing synced, a broken repo never stored


def test_a_repo_whose_tools_do_not_import_stops_at_inspection(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "mcp" / "main.py").write_text("import no_such_module_for_the_run\n")
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "broken", str(repo), "http://127.0.0.1:9/v1", (tmp_path / "out").as_uri()))
    done = run_local(path, "--json", *([] if sandbox_available() else ["--no-sandbox"]),
                     cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 2, done.stderr
    assert result["state"] == "Failed" and "no_such_module_for_the_run" in result["error"]
    assert any(p["file"] and p["file"].startswith("mcp") for p in result["problems"])


def test_make_example_script(scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    """examples/run-calculator.sh (what `make example` runs) with an OpenAI-compatible endpoint;
    extra arguments reach `rolloutctl run`, so the output goes to a temporary folder."""
    script = EXAMPLE.parent / "run-calculator.sh"
    venv_python = EXAMPLE.parents[1] / ".venv" / "bin" / "python"
    if not venv_python.is_file():
        pytest.skip("the script runs the project's .venv (make install creates it)")
    out = tmp_path / "out"
    env = local_env({"ROLLOUT_BASE_URL": scripted_model.base_url, "ROLLOUT_MODEL": "scripted"})
    env.pop("ROLLOUT_MODEL_API_KEY")
    done = subprocess.run([str(script), "--output", str(out), "--json"], env=env,
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "calculator" and result["ok"]
    assert result["progress"]["total"] == 40 and result["progress"]["completed"] == 40
    assert result["summary"][REWARD]["mean"] == 1.0

    no_model = {k: v for k, v in env.items() if k not in ("ROLLOUT_BASE_URL", "ROLLOUT_MODEL")}
    refused = subprocess.run([str(script)], env=no_model, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "No model configured" in refused.stderr


def test_a_run_with_too_many_masked_rollouts_fails_with_its_results(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    """One prompt of five always meets a 503: after its retry it remains masked, 20% of the
    run, above the default 5%: the run says so and fails, with its results written."""
    model = "scripted:fail-on-52 * 85:masked-fraction"
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "masked", str(EXAMPLE), scripted_model.base_url, (tmp_path / "out").as_uri(), rows=5,
        samples=1, shards=1, model=model, faults={"maskedRetries": 1}))
    done = run_local(path, "--json", "--no-sandbox", cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 1, done.stderr
    assert result["state"] == "Failed" and not result["ok"]
    assert result["error"].startswith(
        "1 of 5 rollouts (20.0%) remain masked after retries, more than "
        "spec.faults.maxMaskedFraction (0.05)")
    assert result["progress"] == {"total": 5, "completed": 4, "failed": 0, "masked": 1,
                                  "invalid": 0}
    run_dir = file_path(result["runPrefix"])
    assert result["artifacts"]["results"].endswith("results.json")
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["runs"]) == 5 and results["status"] == "partial"
    found = records(run_dir)
    masked = sorted(r["attempt"] for r in found if r["status"] == "masked")
    assert masked == [0, 1] and len(found) == 6  # the first attempt stays, as history
