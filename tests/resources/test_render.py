"""`rolloutctl render`: the manifests a RolloutRun would create, as a YAML stream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from rollout_operator.cli.main import cli
from rollout_operator.resources.names import MAX_NAME_LENGTH
from rollout_operator.resources.security import workload_security_violations

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "calculator" / "rolloutrun.yaml"

SERVED_RUN = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata:
  name: served
  namespace: research
spec:
  repo: {url: "git@github.com:example/calculator.git", credentialsSecret: deploy-key}
  model:
    serve: {engine: vllm, model: Qwen/Qwen3-8B, gpus: 1}
  sandbox: {runtimeClassName: gvisor}
  output: {url: "gs://bucket/runs"}
"""


def render(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["render", *args], env=env)


def documents(text: str) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    return docs


def test_render_the_calculator_example() -> None:
    result = render("-f", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Objects the operator creates for RolloutRun default/calc")
    assert "Placeholders" in result.output.splitlines()[1]
    assert "signed   https://signed-url-of-the-bundle.invalid/" in result.output
    docs = documents(result.output)
    assert [(d["kind"], d["metadata"]["labels"]["rollouts.dev/component"]) for d in docs] == [
        ("Job", "sync"), ("NetworkPolicy", "inspect"), ("Job", "inspect"),
        ("NetworkPolicy", "tools"), ("Service", "tools"), ("Deployment", "tools"),
        ("NetworkPolicy", "scorers"), ("Service", "scorers"), ("Deployment", "scorers"),
        ("Job", "workers"), ("Job", "aggregate"),
    ]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "default"
        assert len(doc["metadata"]["name"]) <= MAX_NAME_LENGTH
        assert workload_security_violations(doc) == []
    inspect = docs[2]["spec"]["template"]["spec"]["containers"][0]
    assert inspect["command"][-2:] == ["--scorer", "reward_fn.compute_reward:numbers_match_reward"]
    workers = docs[9]
    assert workers["spec"]["completions"] == 2
    assert workers["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "2", "memory": "2Gi"
    }


def test_namespace_and_name_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(SERVED_RUN)
    result = render("-f", str(path), "--namespace", "other", "--name", "renamed")
    assert result.exit_code == 0, result.output
    docs = documents(result.output)
    assert {d["metadata"]["namespace"] for d in docs} == {"other"}
    assert all(d["metadata"]["name"].startswith("renamed-") for d in docs)
    assert all(d["metadata"]["ownerReferences"][0]["name"] == "renamed" for d in docs)
    kinds = [(d["kind"], d["metadata"]["labels"]["rollouts.dev/component"]) for d in docs]
    assert ("Deployment", "inference") in kinds and ("Service", "inference") in kinds


def test_standard_input_and_several_runs(tmp_path: Path) -> None:
    second = SERVED_RUN.replace("name: served", "name: second")
    result = CliRunner().invoke(
        cli, ["render", "-f", "-"], input=f"{SERVED_RUN}---\n{second}"
    )
    assert result.exit_code == 0, result.output
    docs = documents(result.output)
    owners = {d["metadata"]["ownerReferences"][0]["name"] for d in docs}
    assert owners == {"served", "second"}
    assert result.output.count("# Objects the operator creates") == 2


def test_operator_settings_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(SERVED_RUN)
    result = render(
        "-f", str(path),
        env={"ROLLOUT_OPERATOR_RUNTIME_IMAGE": "reg.example/sandbox:7",
             "ROLLOUT_OPERATOR_VLLM_IMAGE": "reg.example/vllm:1"},
    )
    assert result.exit_code == 0, result.output
    assert "image: reg.example/sandbox:7" in result.output
    assert "image: reg.example/vllm:1" in result.output
    refused = render(
        "-f", str(path), env={"ROLLOUT_OPERATOR_ALLOWED_RUNTIME_CLASSES": "kata"}
    )
    assert refused.exit_code == 2
    assert "spec.sandbox.runtimeClassName" in refused.output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("shards: 2", "shards: -2"), "spec.workers.shards: must be >= 1 (got -2)"),
        (("path: examples/calculator", "path: ../x"), "spec.repo.path: must not contain '..'"),
        (("url: s3://rollouts/calculator", "url: ftp://x/y"), "spec.output.url"),
        (("memory: 2Gi", "memory: 2Pi"), "spec.workers.resources.limits.memory: 2Pi is more"),
        (("cpu: 500m", "cpu: 4"), "spec.workers.resources.requests.cpu: 4 is more than its limit"),
    ],
)
def test_an_invalid_run_says_what_to_fix(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    text = EXAMPLE.read_text()
    assert edit[0] in text
    path = tmp_path / "run.yaml"
    path.write_text(text.replace(edit[0], edit[1]))
    result = render("-f", str(path))
    assert result.exit_code == 2
    assert "RolloutRun 'calculator' cannot run" in result.output
    assert expected in result.output


def test_file_repos_only_with_the_operator_switch(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(SERVED_RUN.replace("git@github.com:example/calculator.git", "file:///repo")
                    .replace("gs://bucket/runs", "file:///data/runs"))
    assert render("-f", str(path)).exit_code == 2
    allowed = render("-f", str(path), env={"ROLLOUT_OPERATOR_ALLOW_FILE_REPOS": "true"})
    assert allowed.exit_code == 0, allowed.output


def test_files_without_a_run_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = render("-f", str(path))
    assert result.exit_code == 2
    assert "no document with kind: RolloutRun" in result.output
    path.write_text("kind: [unclosed")
    assert "not valid YAML" in render("-f", str(path)).output


def test_rolloutctl_entry_point_renders() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "rollout_operator.cli.main", "render", "-f", str(EXAMPLE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert len(documents(completed.stdout)) == 11
