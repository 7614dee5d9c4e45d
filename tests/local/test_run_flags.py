"""`rolloutctl run`'s flags (`--model`, `--base-url`, `--limit`, `--samples`, `--fresh`), the
checks before anything starts, an edited repo on a rerun, and `rolloutctl runs` / `describe`
reading what the runs left: real processes against the scripted model, output on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    local_env,
    manifest,
    records,
    result_json,
    run_local,
    write_manifest,
)
from tests.support.cli import rolloutctl_argv
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow


def _ctl(*args: str, cwd: Path, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(rolloutctl_argv(list(args)), cwd=cwd, env=env or local_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _no_key_env() -> dict[str, str]:
    env = local_env()
    for name in ("ROLLOUT_MODEL_API_KEY", "OPENAI_API_KEY", "LITELLM_API_KEY"):
        env.pop(name, None)
    return env


def _provider_manifest(tmp_path: Path, repo: Path = EXAMPLE, **changes: Any) -> Path:
    """The calculator run with a provider's model and no baseURL: it needs a key."""
    document = manifest("flags", str(repo), "http://127.0.0.1:9/v1",
                        (tmp_path / "out").as_uri(), rows=6, samples=2, shards=1, **changes)
    document["spec"]["model"] = {"name": "openai/gpt-5-mini"}
    return write_manifest(tmp_path / "run.yaml", document)


def test_a_missing_model_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = _provider_manifest(tmp_path)
    done = subprocess.run(rolloutctl_argv(["run", "-f", str(path), "--no-sandbox"]),
                          cwd=tmp_path, env=_no_key_env(), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert "'openai/gpt-5-mini' needs an API key" in message
    assert "ROLLOUT_MODEL_API_KEY" in message and "OPENAI_API_KEY" in message
    assert "--base-url" in message and "--api-key" not in message
    assert not (tmp_path / "out").exists()  # nothing synced, nothing written

    judged = manifest("judged", str(EXAMPLE), "http://127.0.0.1:9/v1",
                      (tmp_path / "out").as_uri())
    judged["spec"]["scoring"]["secrets"] = [
        {"env": "JUDGE_API_KEY", "secretKeyRef": {"name": "judge", "key": "api-key"}}]
    path = write_manifest(tmp_path / "judged.yaml", judged)
    done = _ctl("run", "-f", str(path), "--no-sandbox", "--json", cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 2 and result["state"] == "Invalid"
    assert any("JUDGE_API_KEY is not set" in p["message"] for p in result["problems"])
    assert not (tmp_path / "out").exists()


def test_model_limit_and_samples_flags(scripted_model: ScriptedModelServer,
                                       tmp_path: Path) -> None:
    path = _provider_manifest(tmp_path)
    done = run_local(path, "--json", "--no-sandbox", "--model", "scripted:flags",
                     "--base-url", scripted_model.base_url, "--limit", "2", "--samples", "3",
                     cwd=tmp_path, env={"ROLLOUT_MODEL_API_KEY": ""})
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    found = records(file_path(result["runPrefix"]))
    assert Counter((r["row_index"], r["sample_index"]) for r in found) == {
        (row, sample): 1 for row in range(2) for sample in range(3)}
    assert {body["model"] for body in scripted_model.requests
            if body.get("model", "").startswith("scripted:flags")} == {"scripted:flags"}
    run_json = json.loads((file_path(result["runPrefix"]) / "run.json").read_text())
    assert run_json["spec"]["model"]["name"] == "scripted:flags"
    assert run_json["spec"]["dataset"]["limit"] == 2
    assert run_json["spec"]["dataset"]["samplesPerPrompt"] == 3


def test_fresh_runs_beside_and_runs_and_describe_list_them(scripted_model: ScriptedModelServer,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "fresh", str(EXAMPLE), scripted_model.base_url, out.as_uri(), rows=2, samples=1,
        shards=1, model="scripted:fresh"))
    first = result_json(run_local(path, "--json", "--no-sandbox", cwd=tmp_path))
    fresh = result_json(run_local(path, "--json", "--no-sandbox", "--fresh", cwd=tmp_path))
    again = result_json(run_local(path, "--json", "--no-sandbox", cwd=tmp_path))
    assert first["ok"] and fresh["ok"] and again["ok"]
    assert fresh["runPrefix"] != first["runPrefix"] and fresh["uid"] != first["uid"]
    assert again["runPrefix"] == fresh["runPrefix"]  # a plain rerun resumes the newest
    assert (first["generation"], fresh["generation"], again["generation"]) == (0, 1, 1)
    for result in (first, fresh):
        assert (file_path(result["runPrefix"]) / "results.json").is_file()  # both kept
        assert len(records(file_path(result["runPrefix"]))) == 2

    listed = _ctl("runs", "--output", str(out), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert sorted(r["folder"] for r in runs) == sorted([first["runPrefix"], fresh["runPrefix"]])
    assert {r["state"] for r in runs} == {"Succeeded"}
    assert {(r["progress"]["done"], r["progress"]["total"]) for r in runs} == {(2, 2)}
    assert {r["generation"] for r in runs} == {0, 1}

    text = _ctl("runs", "--output", str(out), cwd=tmp_path).stdout.splitlines()
    assert text[0].split() == ["NAMESPACE", "NAME", "STATUS", "PROGRESS", "MEAN", "AGE"]
    leaf = fresh["runPrefix"].rsplit("/", 1)[-1]
    assert any(line.split()[:5] == ["default", leaf, "Succeeded", "2/2", "1.000"]
               for line in text[1:])

    described = _ctl("describe", leaf, "--output", str(out), cwd=tmp_path)
    assert described.returncode == 0, described.stderr
    for expected in (f"Folder:        {fresh['runPrefix']}", "Status:        Succeeded (exit 0)",
                     "Generation:    1", f"{REWARD}: 1.000"):
        assert expected in described.stdout, described.stdout
    assert ["results:", f"{fresh['runPrefix']}/results.json"] in [
        line.split() for line in described.stdout.splitlines()], described.stdout
    assert [line.split()[:2] for line in described.stdout.splitlines()
            if line.strip().startswith(("Synced", "WorkDone", "Aggregated"))] == [
        ["Synced", "True"], ["WorkDone", "True"], ["Aggregated", "True"]]
    as_json = json.loads(_ctl("describe", "default/" + leaf, "--output", str(out), "--json",
                              cwd=tmp_path).stdout)
    assert as_json["progress"]["completed"] == 2 and as_json["failures"] == {}
    missing = _ctl("describe", "nope", "--output", str(out), cwd=tmp_path)
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr


def test_an_edited_repo_points_at_fresh(scripted_model: ScriptedModelServer,
                                        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    path = write_manifest(tmp_path / "run.yaml", manifest(
        "edited", str(repo), scripted_model.base_url, (tmp_path / "out").as_uri(), rows=2,
        samples=1, shards=1, model="scripted:edited"))
    first = result_json(run_local(path, "--json", "--no-sandbox", cwd=tmp_path))
    assert first["ok"]
    with (repo / "mcp" / "main.py").open("a") as file:
        file.write("\n# edited\n")
    done = run_local(path, "--no-sandbox", cwd=tmp_path)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "changed since this run started" in message and "--fresh" in message
    fresh = result_json(run_local(path, "--json", "--no-sandbox", "--fresh", cwd=tmp_path))
    assert fresh["ok"] and fresh["runPrefix"] != first["runPrefix"]
    assert len(records(file_path(first["runPrefix"]))) == 2
