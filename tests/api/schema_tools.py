"""Helpers that read the generated CRD the way the API server would, for tests.

`draft4_schema` turns the CRD's OpenAPI v3.0 schema into JSON Schema Draft 4 (whose boolean
`exclusiveMinimum` matches OpenAPI 3.0) so that `jsonschema` can validate custom resources.
`cel_violations` evaluates the CRD's `x-kubernetes-validations` rules with cel-python, following
the API server's rule: a rule runs only where both the old and the new object have the field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy.adapter import json_to_cel

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "rollouts.dev_rolloutruns.yaml"
EXAMPLE_PATH = ROOT / "examples" / "calculator" / "rolloutrun.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def openapi_schema(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def draft4_schema(node: Any) -> Any:
    """The OpenAPI v3.0 node as JSON Schema Draft 4: k8s extensions dropped, nullable as a type."""
    if isinstance(node, list):
        return [draft4_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "additionalProperties") and isinstance(value, Mapping):
            if key == "properties":
                out[key] = {name: draft4_schema(sub) for name, sub in value.items()}
            else:
                out[key] = draft4_schema(value)
        elif key in ("items", "anyOf"):
            out[key] = draft4_schema(value)
        else:
            out[key] = value
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def schema_errors(schema: Mapping[str, Any], instance: Any) -> list[str]:
    """jsonschema's complaints about `instance`, each prefixed with its path."""
    validator = jsonschema.Draft4Validator(draft4_schema(schema))
    return [
        "/".join(str(p) for p in error.absolute_path) + ": " + error.message
        for error in validator.iter_errors(instance)
    ]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `node`, with a readable path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    for i, option in enumerate(node.get("anyOf", [])):
        yield from walk(option, f"{path}|{i}")


def cel_violations(schema: Mapping[str, Any], new: Any, old: Any) -> list[str]:
    """Messages of the transition rules that `new` breaks as an update of `old`."""
    messages: list[str] = []
    environment = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = environment.program(environment.compile(rule["rule"]))
        result = program.evaluate({"self": json_to_cel(new), "oldSelf": json_to_cel(old)})
        if isinstance(result, Exception) or not bool(result):
            messages.append(rule["message"])
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        for name, sub in schema.get("properties", {}).items():
            if name in new and name in old:
                messages += cel_violations(sub, new[name], old[name])
    return messages
