"""The generated CRD: in step with the models, structural, valid, and enforcing immutability."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from rollout_operator.api import constants
from rollout_operator.api.crd import (
    REGENERATE_COMMAND,
    SchemaTranslationError,
    crd_manifest,
    crd_yaml,
    main,
    openapi_schema,
)
from rollout_operator.api.spec import ApiModel, RolloutRunSpec
from tests.api.schema_tools import (
    CRD_PATH,
    ROOT,
    cel_violations,
    load_yaml,
    schema_errors,
    walk,
)
from tests.api.schema_tools import openapi_schema as crd_schema

MUTABLE = set(constants.MUTABLE_SPEC_FIELDS)


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crd_manifest()


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd_schema(crd)


@pytest.fixture(scope="module")
def spec_schema(schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = schema["properties"]["spec"]
    return spec


def test_committed_crd_matches_the_models() -> None:
    committed = CRD_PATH.read_text()
    assert committed == crd_yaml(), (
        f"{CRD_PATH.relative_to(ROOT)} is out of date with the models in "
        f"operator/rollout_operator/api/; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_committed_file_has_a_generated_header() -> None:
    head = CRD_PATH.read_text().splitlines()[:2]
    assert "Generated" in head[0]
    assert REGENERATE_COMMAND in head[1]


def test_check_mode_and_output_path(tmp_path: Path) -> None:
    target = tmp_path / "crd.yaml"
    assert main(["--check", "-o", str(target)]) == 1
    assert main(["-o", str(target)]) == 0
    assert target.read_text() == CRD_PATH.read_text()
    assert main(["--check", "-o", str(target)]) == 0
    target.write_text(target.read_text() + "# edited\n")
    assert main(["--check", "-o", str(target)]) == 1


def test_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rollout_operator.api.crd", "-o", "-"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout == crd_yaml()


def test_names_scope_and_subresources(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "rolloutruns.rollouts.dev"
    spec = crd["spec"]
    assert spec["group"] == "rollouts.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "RolloutRun",
        "listKind": "RolloutRunList",
        "plural": "rolloutruns",
        "singular": "rolloutrun",
        "shortNames": ["rr"],
        "categories": ["rollouts"],
    }
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ("string", ".status.phase"),
        "Progress": ("string", ".status.progress.percent"),
        "Score": ("string", ".status.score"),
        "Policy": ("string", ".spec.model.policyVersion"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


@pytest.mark.parametrize("k8s_version", ["1.30", "1.33"])
def test_kubernetes_validate_accepts_the_crd(crd: dict[str, Any], k8s_version: str) -> None:
    kubernetes_validate.validate(crd, k8s_version, strict=True)


def test_kubernetes_validate_rejects_a_broken_crd(crd: dict[str, Any]) -> None:
    broken = copy.deepcopy(crd)
    broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["type"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33", strict=True)


FORBIDDEN_KEYS = {
    "$ref",
    "$defs",
    "definitions",
    "title",
    "allOf",
    "oneOf",
    "const",
    "patternProperties",
    "propertyNames",
    "uniqueItems",
    "x-kubernetes-preserve-unknown-fields",
}


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert not FORBIDDEN_KEYS & node.keys(), f"{path}: {FORBIDDEN_KEYS & node.keys()}"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        if path.count("|"):
            continue
        assert "type" in node, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node:
                assert node[key] is True, path
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            assert set(node["x-kubernetes-list-map-keys"]) <= required, path


def test_metadata_is_left_to_the_api_server(schema: dict[str, Any]) -> None:
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        for name, sub in node.get("properties", {}).items():
            if f"{path}.{name}" == ".metadata":
                continue
            assert sub.get("description", "").strip(), f"{path}.{name} has no description"


def test_nullable_replaces_null_unions(spec_schema: dict[str, Any]) -> None:
    limit = spec_schema["properties"]["dataset"]["properties"]["limit"]
    assert limit == {
        "description": "Maximum number of rows to use after offset; all rows when unset.",
        "type": "integer",
        "nullable": True,
        "minimum": 1,
    }


def test_quantities_are_int_or_string(spec_schema: dict[str, Any]) -> None:
    limits = spec_schema["properties"]["workers"]["properties"]["resources"]["properties"]["limits"]
    value = limits["additionalProperties"]
    assert value["x-kubernetes-int-or-string"] is True
    assert value["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def test_camel_case_names_in_the_schema(spec_schema: dict[str, Any]) -> None:
    props = spec_schema["properties"]
    assert "baseURL" in props["model"]["properties"]
    assert "ttlSecondsAfterFinished" in props
    assert "runtimeClassName" in props["sandbox"]["properties"]
    assert "samplesPerPrompt" in props["dataset"]["properties"]
    assert "secretKeyRef" in props["scoring"]["properties"]["secrets"]["items"]["properties"]


def test_strings_lists_and_maps_of_the_spec_are_bounded(spec_schema: dict[str, Any]) -> None:
    # Unbounded values make the API server's CEL cost estimate of `self == oldSelf` explode.
    for path, node in walk(spec_schema, "spec"):
        if "|" in path:
            continue
        kind = node.get("type")
        if node.get("x-kubernetes-int-or-string") or (kind == "string" and "enum" not in node):
            assert "maxLength" in node, path
        if kind == "array":
            assert "maxItems" in node, path
        if kind == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_every_immutable_spec_field_has_a_transition_rule(spec_schema: dict[str, Any]) -> None:
    required = set(spec_schema["required"])
    presence_rules = {r["rule"] for r in spec_schema["x-kubernetes-validations"]}
    for name, field in spec_schema["properties"].items():
        rules = [r["rule"] for r in field.get("x-kubernetes-validations", [])]
        if name in MUTABLE:
            assert rules == [], name
            continue
        assert rules == ["self == oldSelf"], name
        if name not in required:
            assert f"has(self.{name}) == has(oldSelf.{name})" in presence_rules, name
    assert len(presence_rules) == len(set(spec_schema["properties"]) - required - MUTABLE)


def test_every_top_level_spec_field_is_covered() -> None:
    aliases = {f.alias or n for n, f in RolloutRunSpec.model_fields.items()}
    schema_fields = set(crd_schema(crd_manifest())["properties"]["spec"]["properties"])
    assert schema_fields == aliases


BASE: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/org/repo.git", "revision": "main"},
    "dataset": {"samplesPerPrompt": 4},
    "model": {"name": "openai/m"},
    "workers": {"shards": 2, "resources": {"limits": {"cpu": "2"}}},
    "suspend": False,
}

REJECTED_EDITS: list[tuple[str, dict[str, Any], str]] = [
    ("revision", {"repo": {**BASE["repo"], "revision": "v2"}}, "spec.repo cannot change"),
    ("samples", {"dataset": {"samplesPerPrompt": 8}}, "spec.dataset cannot change"),
    ("model", {"model": {"name": "openai/other"}}, "spec.model cannot change"),
    ("shards", {"workers": {**BASE["workers"], "shards": 3}}, "spec.workers cannot change"),
    (
        "nested quantity",
        {"workers": {"shards": 2, "resources": {"limits": {"cpu": "4"}}}},
        "spec.workers cannot change",
    ),
    ("added section", {"agent": {"maxTurns": 3}}, "spec.agent cannot be added or removed"),
    ("removed section", {"dataset": None}, "spec.dataset cannot be added or removed"),
]


def edited(change: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for key, value in change.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize(
    ("change", "message"), [c[1:] for c in REJECTED_EDITS], ids=[c[0] for c in REJECTED_EDITS]
)
def test_cel_rules_reject_edits_of_a_started_run(
    spec_schema: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    violations = cel_violations(spec_schema, edited(change), BASE)
    assert len(violations) == 1
    assert violations[0].startswith(message)
    assert "create a new RolloutRun" in violations[0]


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"suspend": True},
        {"ttlSecondsAfterFinished": 60},
        {"suspend": True, "ttlSecondsAfterFinished": 0},
    ],
)
def test_cel_rules_allow_suspend_and_ttl(
    spec_schema: dict[str, Any], change: dict[str, Any]
) -> None:
    assert cel_violations(spec_schema, edited(change), BASE) == []


def test_schema_and_models_agree_on_valid_and_invalid_specs(schema: dict[str, Any]) -> None:
    run = {"apiVersion": constants.API_VERSION, "kind": constants.KIND, "metadata": {"name": "r"}}
    assert schema_errors(schema, {**run, "spec": BASE}) == []
    invalid: list[dict[str, Any]] = [
        {"workers": {"shards": -2}},
        {"model": {"serve": {"engine": "tgi", "model": "m"}}},
        {"sandbox": {"egress": [{"cidr": "10.0.0.0/8", "ports": [70000]}]}},
        {"repo": {}},
        {"repo": {"url": "https://h/r.git", "credentialsSecret": "Bad_Name"}},
        {"agent": {"maxTurns": "4"}},
        {"workers": {"resources": {"limits": {"cpu": 0.5}}}},
        {"workers": {"resources": {"limits": {"cpu": "lots"}}}},
        {"ttlSecondsAfterFinished": -1},
        {"agent": {"toolTimeoutSeconds": 0}},
    ]
    for change in invalid:
        spec = edited(change)
        assert schema_errors(schema, {**run, "spec": spec}), change
        with pytest.raises(ValueError):
            RolloutRunSpec.model_validate(spec)


def test_translation_refuses_what_a_crd_cannot_express() -> None:
    class Choice(ApiModel):
        value: int | str | float

    with pytest.raises(SchemaTranslationError, match="int-or-string"):
        openapi_schema(Choice)


def test_committed_file_parses_to_the_manifest() -> None:
    assert load_yaml(CRD_PATH) == crd_manifest()
