"""A hostile repo through `rolloutctl run`, sandboxed: its scorers snoop for the model key (their
environment, every process's /proc environ and cmdline), read and append to files beside the run,
try the model server, and crash in every way a process can. The run must end with exact records,
the key in no output, no file outside the run changed, and each fault named on its trajectories.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.support import (
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.support.cli import REPO_ROOT
from tests.support.scripted_model import ScriptedModelServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not installed or "
                       "cannot create sandboxes on this machine"),
]

HOSTILE = REPO_ROOT / "tests" / "fixtures" / "repos" / "hostile"
KEY = "sk-planted-0123456789abcdef"
HONEST = "reward_fn.honest:exact"
SNOOP = "reward_fn.snoop:snoop"
FAULTS = "reward_fn.faults:faulty"
# Row index -> (extra columns, the faults scorer's expected error, or None for a clean score).
ROWS: list[tuple[dict[str, object], str | None]] = [
    ({}, None),
    ({"exit": True}, None),
    ({"fault": "os_exit"}, "its process exited with code 7 (os._exit) while scoring this item"),
    ({"fault": "segfault"}, "its process was killed by SIGSEGV while scoring this item"),
    ({"fault": "hang"}, "timed out after 3.0s"),
    ({"fault": "nan"}, "ValueError: returned nan, not a finite number"),
    ({"fault": "huge"}, "TypeError: must return a number, got str"),
    ({"fault": "raise"}, "ValueError: this row is cursed"),
    ({"fault": "string"}, "TypeError: must return a number, got str"),
    ({}, None),
]
SAMPLES = 2


def _tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under `root` (but `skip`) with the hash of its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (skip and path.is_relative_to(skip)):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _every_text(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path, path.read_bytes()


def test_hostile_scorers_are_contained(scripted_model: ScriptedModelServer,
                                       tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(HOSTILE, repo)
    out = tmp_path / "out"
    other_run = out / "default" / "other-run-00000000" / "shards" / "0"
    other_run.mkdir(parents=True)
    (other_run / "part-000000.jsonl").write_text('{"rollout_id": "someone else"}\n')
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "notes.txt").write_text("outside every run\n")
    rows = []
    for index, (extra, _) in enumerate(ROWS):
        a, b = index + 10, 7  # the tool kills its server on 5: not here
        rows.append({"system_prompt": "Use the tools.", "user_prompt": f"What is {a} * {b}?",
                     "ground_truth": str(a * b), "output_root": str(out),
                     "canary_dir": str(canary), "model_url": scripted_model.base_url,
                     **extra})
    (repo / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    document = manifest("hostile", str(repo), scripted_model.base_url, out.as_uri(),
                        rows=len(ROWS), samples=SAMPLES, shards=2)
    document["spec"]["dataset"] = {"path": "data.jsonl", "samplesPerPrompt": SAMPLES}
    document["spec"]["scoring"] = {"functions": [HONEST, SNOOP, FAULTS], "timeoutSeconds": 3}
    path = write_manifest(tmp_path / "hostile.yaml", document)
    before = _tree(tmp_path)

    done = run_local(path, "--json", cwd=tmp_path, env={"ROLLOUT_MODEL_API_KEY": KEY},
                     timeout=300)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["state"] == "Succeeded" and result["sandbox"] is True

    # Exactly rows x samples records, each scored by all three scorers.
    run_dir = file_path(result["runPrefix"])
    found = records(run_dir)
    assert sorted((r["row_index"], r["sample_index"]) for r in found) == [
        (row, sample) for row in range(len(ROWS)) for sample in range(SAMPLES)]
    for record in found:
        row = record["row_index"]
        assert record["status"] == "completed", record
        assert set(record["scores"]) == {HONEST, SNOOP, FAULTS}
        message = (record["error"] or {}).get("message", "")
        assert "LEAK" not in message, message  # the snooper found nothing and wrote nothing
        assert record["scores"][HONEST] == 1.0
        if row == 1:
            assert record["scores"][SNOOP] == 0.0
            assert f"{SNOOP}: called sys.exit(3)" in message
        else:
            assert record["scores"][SNOOP] == 1.0
            assert SNOOP not in message
        expected = ROWS[row][1]
        if expected is None:
            assert record["scores"][FAULTS] == 1.0
            assert FAULTS not in message
        else:
            assert record["scores"][FAULTS] == 0.0
            assert f"{FAULTS}: {expected}" in message, message
        if expected is None and row != 1:
            assert record["error"] is None

    # The key is in no output, no log line and nothing the command printed.
    assert KEY not in done.stdout and KEY not in done.stderr
    for file, data in _every_text(out):
        assert KEY.encode() not in data, file
    # Nothing that existed before the run changed, and nothing appeared outside the run's
    # own folder and the bundle store.
    after = _tree(tmp_path, skip=run_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    new = set(after) - set(before)
    assert all(name.startswith("out/bundles/") for name in new), sorted(new)


def test_a_tool_that_kills_its_server_masks_only_what_it_lost(
        scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    """`os._exit` in a tool: the tool server is restarted, the rollouts whose calls it was
    answering are masked as sandbox failures (never scored), and the rest complete."""
    repo = tmp_path / "repo"
    shutil.copytree(HOSTILE, repo)
    factors = [2, 5, 3, 4, 6, 7, 8, 9]
    (repo / "data.jsonl").write_text("".join(
        json.dumps({"system_prompt": "Use the tools.", "user_prompt": f"What is {a} * 7?",
                    "ground_truth": str(a * 7)}) + "\n" for a in factors))
    out = tmp_path / "out"
    document = manifest("toolcrash", str(repo), scripted_model.base_url, out.as_uri(),
                        rows=len(factors), samples=SAMPLES, shards=1)
    document["spec"]["dataset"] = {"path": "data.jsonl", "samplesPerPrompt": SAMPLES}
    document["spec"]["scoring"] = {"functions": [HONEST]}
    document["spec"]["workers"] = {"shards": 1, "concurrency": 2}
    # The tool kills its server on every attempt: no retries, and its rows may stay masked.
    document["spec"]["faults"] = {"maskedRetries": 0, "maxMaskedFraction": 0.5}
    done = run_local(write_manifest(tmp_path / "run.yaml", document), "--json", cwd=tmp_path,
                     timeout=300)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["restarts"]["tools"] >= 1, result
    found = records(file_path(result["runPrefix"]))
    assert len(found) == len(factors) * SAMPLES
    completed = 0
    for record in found:
        if factors[record["row_index"]] == 5:
            assert record["status"] == "masked", record
        if record["status"] == "masked":
            assert record["error"]["category"] == "sandbox" and record["scores"] == {}
        else:
            assert record["status"] == "completed" and record["scores"] == {HONEST: 1.0}
            completed += 1
    # Only the calls the dead server was answering are lost: the restarted server serves on.
    assert completed >= (len(factors) - 2) * SAMPLES, [r["status"] for r in found]
