"""Reading a RolloutRun manifest for a local run: paths, the uid that makes reruns resume, and
the messages for manifests that cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.local.run_file import RunFileError, load_run_file
from tests.local.support import manifest, run_local, write_manifest
from tests.support.cli import run_cli
from tests.support.hostile_yaml import DEEP_BLOCK_MAPS, DEEP_FLOW_LISTS, alias_bomb


def _write(tmp_path: Path, document: dict[str, Any], name: str = "run.yaml") -> Path:
    return write_manifest(tmp_path / name, document)


def _doc(**changes: Any) -> dict[str, Any]:
    return manifest("calc", ".", "http://127.0.0.1:9/v1", "file:///tmp/out", **changes)


def test_local_repo_is_relative_to_the_manifest_and_output_to_the_cwd(tmp_path: Path) -> None:
    folder = tmp_path / "project" / "runs"
    folder.mkdir(parents=True)
    document = _doc()
    document["spec"]["repo"]["url"] = "../repo"
    del document["spec"]["output"]
    cwd = tmp_path / "elsewhere"
    run = load_run_file(_write(folder, document), cwd=cwd)
    assert run.spec.repo.url == str(tmp_path / "project" / "repo")
    assert run.output_url == (cwd / "rollout-output").as_uri()
    assert (run.name, run.namespace) == ("calc", "default")


@pytest.mark.parametrize(("given", "expected"), [
    ("file://./out", "out"),
    ("file://out/sub", "out/sub"),
    ("relative/folder", "relative/folder"),
    ("file:///abs/out/", "/abs/out"),
])
def test_output_urls_are_made_absolute(tmp_path: Path, given: str, expected: str) -> None:
    run = load_run_file(_write(tmp_path, _doc()), output=given, cwd=tmp_path)
    assert run.output_url == (tmp_path / expected).resolve().as_uri()


def test_bucket_and_git_urls_are_kept(tmp_path: Path) -> None:
    document = _doc()
    document["spec"]["repo"]["url"] = "https://example.com/org/repo.git"
    document["spec"]["output"] = {"url": "s3://bucket/prefix"}
    run = load_run_file(_write(tmp_path, document))
    assert run.spec.repo.url == "https://example.com/org/repo.git"
    assert run.output_url == "s3://bucket/prefix"


def test_uid_is_stable_for_the_same_run_and_changes_with_it(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc())
    first, again = load_run_file(path, cwd=tmp_path), load_run_file(path, cwd=tmp_path)
    assert first.uid == again.uid
    assert load_run_file(path, name="other", cwd=tmp_path).uid != first.uid
    assert load_run_file(path, shards=5, cwd=tmp_path).uid != first.uid
    assert load_run_file(path, shards=5, cwd=tmp_path).spec.workers.shards == 5
    edited = _doc()
    edited["spec"]["dataset"]["limit"] = 3
    assert load_run_file(_write(tmp_path, edited, "edited.yaml"), cwd=tmp_path).uid != first.uid
    suspended = _doc()
    suspended["spec"]["ttlSecondsAfterFinished"] = 60  # may change: still the same run
    assert load_run_file(_write(tmp_path, suspended, "ttl.yaml"), cwd=tmp_path).uid == first.uid


@pytest.mark.parametrize(("text", "fragment"), [
    ("kind: Pod\nmetadata: {name: x}\n", "no document with kind: RolloutRun"),
    ("{not yaml", "not valid YAML"),
    ("apiVersion: other.io/v1\nkind: RolloutRun\nspec: {}\n", "is not rollouts.dev/v1alpha1"),
    ("kind: RolloutRun\nmetadata: {name: Bad_Name}\nspec: {}\n", "name: 'Bad_Name'"),
    ("kind: RolloutRun\nmetadata: {name: x}\n", "spec: missing"),
])
def test_manifests_that_cannot_run(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(RunFileError) as caught:
        load_run_file(path)
    assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("change", "field"), [
    ({"workers": {"shards": 0}}, "spec.workers.shards"),
    ({"repo": {"url": "ftp://example.com/r.git"}}, "spec.repo.url"),
    ({"repo": {"url": ".", "path": "../x"}}, "spec.repo.path"),
    ({"scoring": {"functions": ["not a ref"]}}, "spec.scoring.functions[0]"),
    ({"workers": {"resources": {"limits": {"memory": "2Pi"}}}},
     "spec.workers.resources.limits.memory: 2Pi is more than 1Pi"),
    ({"sandbox": {"resources": {"limits": {"memory": 4096}}}},
     "spec.sandbox.resources.limits.memory: 4096 is 4096 bytes, less than 1Mi"),
])
def test_spec_problems_name_their_fields(tmp_path: Path, change: dict[str, Any],
                                         field: str) -> None:
    document = _doc()
    document["spec"].update(change)
    with pytest.raises(RunFileError) as caught:
        load_run_file(_write(tmp_path, document))
    assert any(problem.startswith(field) for problem in caught.value.problems), \
        caught.value.problems


def test_cli_says_what_to_fix_and_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc(workers={"shards": -2}))
    done = run_local(path, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert "cannot be run" in done.stderr and "spec.workers.shards" in done.stderr
    done = run_local(path, "--json", cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    result = yaml.safe_load(done.stdout)
    assert result["ok"] is False and result["state"] == "Invalid"
    assert any("spec.workers.shards" in p["message"] for p in result["problems"])


HOSTILE = {
    # Six levels (531441 strings) keep the test cheap even for a loader without bounds.
    "alias-bomb.yaml": (alias_bomb(levels=6), "more than 20000 YAML nodes once aliases are "
                                               "expanded (line 9)"),
    "deep-lists.yaml": (DEEP_FLOW_LISTS, "nested more than 100 levels deep (line 2)"),
    "deep-maps.yaml": (DEEP_BLOCK_MAPS, "nested more than 100 levels deep (line 101)"),
}


@pytest.mark.parametrize("command", ["run", "render"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_cli_refuses_hostile_yaml_in_one_line_with_exit_2(tmp_path: Path, command: str,
                                                          name: str) -> None:
    text, message = HOSTILE[name]
    (tmp_path / name).write_text(text)
    done = run_cli([command, "-f", name], cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    prefix = f"{name} cannot be run: " if command == "run" else f"Error: {name}: "
    assert lines[0].startswith(prefix), lines[0]


def test_cli_refuses_absurd_quantities_naming_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc(workers={"resources": {"requests": {"memory": "8Gi"},
                                                        "limits": {"memory": "4Gi"}}}))
    done = run_local(path, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{path} cannot be run: spec.workers.resources.requests.memory: 8Gi is more than "
        "its limit 4Gi; lower the request or raise spec.workers.resources.limits.memory"
    ]


def test_the_examples_load_for_a_local_run(tmp_path: Path) -> None:
    from tests.local.support import EXAMPLE

    local = load_run_file(EXAMPLE / "rolloutrun.local.yaml", cwd=tmp_path)
    assert local.spec.repo.url == str(EXAMPLE)
    assert local.output_url == (tmp_path / "rollout-output").as_uri()
    assert (local.name, local.spec.workers.shards) == ("calculator", 2)
    cluster = load_run_file(EXAMPLE / "rolloutrun.yaml", cwd=tmp_path)
    assert cluster.output_url == "s3://rollouts/calculator"
    assert cluster.uid != local.uid


def test_command_line_overrides_change_the_spec_and_so_the_uid(tmp_path: Path) -> None:
    from rollout_operator.local.run_file import Overrides

    path = _write(tmp_path, _doc())
    plain = load_run_file(path, cwd=tmp_path)
    changed = load_run_file(path, cwd=tmp_path, overrides=Overrides(
        model="openai/other", base_url="http://127.0.0.1:8/v1", limit=3, samples=5))
    assert changed.spec.model.name == "openai/other"
    assert changed.spec.model.base_url == "http://127.0.0.1:8/v1"
    assert (changed.spec.dataset.limit, changed.spec.dataset.samples_per_prompt) == (3, 5)
    assert changed.uid != plain.uid
    same = load_run_file(path, cwd=tmp_path, overrides=Overrides(
        model=plain.spec.model.name, limit=plain.spec.dataset.limit))
    assert same.uid == plain.uid  # a flag that says what the file says changes nothing


def test_model_flag_replaces_a_managed_server(tmp_path: Path) -> None:
    from rollout_operator.local.run_file import Overrides

    document = _doc()
    document["spec"]["model"] = {"serve": {"engine": "vllm", "model": "Qwen/Qwen3-8B"}}
    run = load_run_file(_write(tmp_path, document), cwd=tmp_path, overrides=Overrides(
        model="served", base_url="http://127.0.0.1:8000/v1"))
    assert run.spec.model.serve is None and run.spec.model.name == "served"
    with pytest.raises(RunFileError, match="baseURL"):
        load_run_file(_write(tmp_path, document, "serve.yaml"), cwd=tmp_path,
                      overrides=Overrides(base_url="http://127.0.0.1:8000/v1"))


def test_each_generation_has_its_own_uid(tmp_path: Path) -> None:
    run = load_run_file(_write(tmp_path, _doc()), cwd=tmp_path)
    assert run.generation == 0 and run.with_generation(0).uid == run.uid
    fresh = run.with_generation(1)
    assert fresh.generation == 1 and fresh.uid not in (run.uid, run.with_generation(2).uid)
    assert fresh.spec == run.spec and fresh.name == run.name
