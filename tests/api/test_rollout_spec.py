"""spec.rollout (an Osmosis 0.3 workspace's rollout): parsing, defaults and the checks that say
what to fix; and the inspection of a bundle against it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.api.validation import SpecError, parse_spec, spec_problems
from rollout_operator.workspaces.bundle_check import inspect_workspace_rollout

WORKSPACE = Path(__file__).parents[1] / "fixtures" / "workspaces" / "calculator"
MINIMAL: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/org/workspace.git"},
    "model": {"name": "openai/gpt-4o-mini"},
}


def problems(**parts: Any) -> list[str]:
    return spec_problems(parse_spec({**MINIMAL, **parts}), cluster=True, allow_file_repos=False)


def test_defaults_and_camel_case_keys() -> None:
    spec = parse_spec({**MINIMAL, "rollout": {
        "name": "calculator", "env": {"LOG_LEVEL": "debug"},
        "secrets": [{"env": "JUDGE_KEY", "secretKeyRef": {"name": "judge", "key": "key"}}]}})
    assert spec.rollout is not None
    assert spec.rollout.entrypoint == "main.py"
    assert spec.rollout.env == {"LOG_LEVEL": "debug"}
    assert spec.rollout.secrets[0].secret_key_ref.name == "judge"
    assert spec_problems(spec, cluster=True, allow_file_repos=False) == []
    assert parse_spec(MINIMAL).rollout is None


@pytest.mark.parametrize("name", ["a/b", "", "-x"])
def test_rollout_name_must_be_one_segment(name: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**MINIMAL, "rollout": {"name": name}})
    assert "spec.rollout.name" in str(err.value)


@pytest.mark.parametrize(("entrypoint", "fix"), [
    ("../main.py", "must be a file inside rollouts/calculator/"),
    ("/abs/main.py", "must be a file inside rollouts/calculator/"),
    ("main.sh", "must be a Python file"),
])
def test_entrypoint_inside_the_rollout(entrypoint: str, fix: str) -> None:
    found = problems(rollout={"name": "calculator", "entrypoint": entrypoint})
    assert found == [f"spec.rollout.entrypoint: {fix}, e.g. main.py (got {entrypoint!r})"]


def test_env_and_secret_names() -> None:
    secret = {"env": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}
    found = problems(rollout={
        "name": "calculator",
        "env": {"_OSMOSIS_ROLLOUT_PORT": "1", "ROLLOUT_MODEL": "x", "TOKEN": "plain"},
        "secrets": [secret, secret]})
    assert "spec.rollout.env._OSMOSIS_ROLLOUT_PORT: names starting with _OSMOSIS_ are " \
           "reserved by the platform; choose a different name" in found
    assert any(p.startswith("spec.rollout.env.ROLLOUT_MODEL: names starting with ROLLOUT_")
               for p in found)
    assert "spec.rollout.secrets[0].env: 'TOKEN' is also in spec.rollout.env; each variable " \
           "must come from exactly one place" in found
    assert "spec.rollout.secrets[1].env: 'TOKEN' is set twice; keep one entry" in found


def test_mcp_and_scorer_fields_are_refused() -> None:
    found = problems(rollout={"name": "calculator"},
                     scoring={"functions": ["reward_fn.m:f"],
                              "secrets": [{"env": "J", "secretKeyRef": {"name": "s", "key": "k"}}],
                              "egress": [{"host": "judge.example.com"}]},
                     sandbox={"egress": [{"cidr": "10.0.0.0/8"}]})
    assert [p.split(":")[0] for p in found] == [
        "spec.scoring.functions", "spec.scoring.secrets", "spec.scoring.egress",
        "spec.sandbox.egress"]
    assert "scored by its Grader" in found[0]


def test_inspection_accepts_the_workspace(tmp_path: Path) -> None:
    report = inspect_workspace_rollout(WORKSPACE, "calculator", "main.py")
    assert report.ok, report.problems
    assert report.tools == [] and report.scorers == []


def test_inspection_refuses_a_missing_rollout_or_entrypoint() -> None:
    report = inspect_workspace_rollout(WORKSPACE, "other", "main.py")
    assert [p.message for p in report.problems] == [
        "Rollout directory not found: rollouts/other/ (spec.rollout.name is 'other', "
        "spec.rollout.entrypoint is 'main.py')"]
    report = inspect_workspace_rollout(WORKSPACE, "calculator", "serve.py")
    assert report.problems[0].message.startswith(
        "Entrypoint not found: rollouts/calculator/serve.py")


def test_inspection_of_a_repo_that_is_not_a_workspace(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).parents[2] / "examples" / "calculator", tmp_path / "repo")
    report = inspect_workspace_rollout(tmp_path / "repo", "calculator", "main.py")
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.file == "rollouts"
    assert "spec.rollout needs an Osmosis 0.3 workspace" in problem.message
    assert "remove spec.rollout to run its tools and reward functions" in problem.message
