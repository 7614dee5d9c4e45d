"""examples/calculator/rolloutrun.yaml is a valid RolloutRun for the CRD and for the operator."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from rollout_operator.api import constants
from rollout_operator.api.validation import parse_spec, spec_problems
from tests.api.schema_tools import (
    CRD_PATH,
    EXAMPLE_PATH,
    ROOT,
    load_yaml,
    openapi_schema,
    schema_errors,
)


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(EXAMPLE_PATH)
    return loaded


def test_example_passes_the_crd_schema(example: dict[str, Any]) -> None:
    schema = openapi_schema(load_yaml(CRD_PATH))
    assert schema_errors(schema, example) == []


def test_schema_check_can_fail(example: dict[str, Any]) -> None:
    schema = openapi_schema(load_yaml(CRD_PATH))
    broken = {**example, "spec": {**example["spec"], "workers": {"shards": 0}}}
    assert schema_errors(schema, broken) == ["spec/workers/shards: 0 is less than the minimum of 1"]


def test_example_parses_and_is_allowed_in_a_cluster(example: dict[str, Any]) -> None:
    assert example["apiVersion"] == constants.API_VERSION
    assert example["kind"] == constants.KIND
    spec = parse_spec(example["spec"])
    assert spec_problems(spec, cluster=True, allow_file_repos=False) == []
    assert spec.repo.url.startswith("https://")
    assert spec.repo.path == "examples/calculator"
    assert spec.dataset.path == "test_data.jsonl"
    assert spec.dataset.samples_per_prompt == 4
    assert spec.model.name is not None and spec.model.base_url is not None
    assert spec.model.api_key_secret is not None
    assert spec.scoring.functions == ["reward_fn.compute_reward:numbers_match_reward"]
    assert spec.workers.shards == 2
    assert spec.output.url == "s3://rollouts/calculator"
    assert spec.output.endpoint is not None and spec.output.credentials_secret is not None
    assert spec.ttl_seconds_after_finished is not None


def test_example_points_at_files_that_exist(example: dict[str, Any]) -> None:
    spec = parse_spec(example["spec"])
    folder = ROOT / spec.repo.path
    assert (folder / "mcp" / "main.py").is_file()
    assert spec.dataset.path is not None and (folder / spec.dataset.path).is_file()
    assert spec.scoring.functions is not None
    for ref in spec.scoring.functions:
        module, function = ref.split(":")
        source = folder / (module.replace(".", "/") + ".py")
        defined = {
            node.name
            for node in ast.walk(ast.parse(source.read_text()))
            if isinstance(node, ast.FunctionDef)
        }
        assert function in defined, ref


def test_example_mentions_local_runs() -> None:
    assert "rolloutctl run" in EXAMPLE_PATH.read_text()
