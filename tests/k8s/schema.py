"""What the apiserver does to a custom resource with its CRD's structural schema.

In order: unknown fields are pruned (so a status field missing from the schema silently
disappears, as on a real cluster), defaults are filled in, then the object is validated
(`jsonschema`, with OpenAPI's `nullable` and `x-kubernetes-int-or-string` translated).
CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def prune(value: Any, schema: dict[str, Any], *, root: bool = False) -> Any:
    """`value` without the fields `schema` does not declare."""
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                result[key] = item
            elif key in properties:
                result[key] = prune(item, properties[key])
            elif isinstance(additional, dict):
                result[key] = prune(item, additional)
            elif keep_unknown or additional is True:
                result[key] = item
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the schema's `default`s filled in where fields are absent."""
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        for key, subschema in properties.items():
            if key not in value and "default" in subschema:
                value[key] = copy.deepcopy(subschema["default"])
            if key in value:
                value[key] = apply_defaults(value[key], subschema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in properties:
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _as_json_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_as_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _as_json_schema(item) for key, item in schema.items()}
    if result.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if result.pop("nullable", False) and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if result.get("x-kubernetes-preserve-unknown-fields") and "type" not in result:
        result.pop("properties", None)
    return result


_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft7Validator]] = {}
"""Validators by the id of the CRD schema they were made from (kept with it, so an id reused
by another schema is told apart): a CRD's schema is converted once, not on every write."""


def _validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    known = _VALIDATORS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    root = _as_json_schema(schema)
    if isinstance(root.get("properties"), dict):
        root["properties"] = {
            key: value for key, value in root["properties"].items() if key not in _ROOT_KEEP
        }
    validator = jsonschema.Draft7Validator(root)
    if len(_VALIDATORS) > 64:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def validate(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Messages for every violation, in the apiserver's `path: message` form."""
    body = {key: value for key, value in obj.items() if key not in _ROOT_KEEP}
    validator = _validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(body), key=lambda err: list(err.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        messages.append(f"{path}: {error.message}")
    return messages
