"""The RolloutRun CustomResourceDefinition, generated from the pydantic models.

Pydantic emits JSON Schema (2020-12 flavour, with `$defs`, `$ref`, `anyOf [X, null]`); the API
server wants a *structural* OpenAPI v3.0 schema: every `$ref` inlined, nullability as
`nullable: true`, boolean `exclusiveMinimum`, no `title`, no `additionalProperties: false`.
`openapi_schema` performs that translation and refuses anything it does not understand, so a
model change that the CRD cannot express fails here, not at `kubectl apply`.

Run `python -m rollout_operator.api.crd` to rewrite `crds/rollouts.dev_rolloutruns.yaml` and its
copy in the Helm chart (`charts/rollout-operator/templates/crds/rolloutruns.yaml`), which wraps the
same manifest in the chart's `crds.enabled` switch, labels and `keep` policy.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from rollout_operator.api import constants
from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.api.status import RolloutRunStatus

CRD_FILENAME = f"{constants.GROUP}_{constants.PLURAL}.yaml"
REGENERATE_COMMAND = "python -m rollout_operator.api.crd"

HEADER = (
    "# Generated from the pydantic models in operator/rollout_operator/api/; do not edit.\n"
    f"# Regenerate with: {REGENERATE_COMMAND}\n"
)

# Keys passed through unchanged; anything else in the pydantic schema is an error.
_PLAIN_KEYS = frozenset(
    {
        "description",
        "type",
        "format",
        "enum",
        "default",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "multipleOf",
        "required",
        "nullable",
    }
)
_DROPPED_KEYS = frozenset({"title", "propertyNames"})

# Output order of a schema node's keys, for a readable, stable file.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "nullable",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "anyOf",
    "items",
    "properties",
    "additionalProperties",
    "required",
)


class SchemaTranslationError(ValueError):
    """A pydantic schema construct that a structural CRD schema cannot express."""


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


class _Translator:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self._defs = defs

    def node(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        schema = self._inline(schema, path)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _DROPPED_KEYS:
                continue
            if key == "default" and value is None:
                continue
            if key == "additionalProperties" and value is False:
                continue
            if key == "description":
                out[key] = " ".join(value.split())
            elif key in _PLAIN_KEYS or key.startswith("x-kubernetes-"):
                out[key] = copy.deepcopy(value)
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                out[bound] = value
                out[key] = True
            elif key == "const":
                out["enum"] = [value]
            elif key == "properties":
                out[key] = {name: self.node(sub, f"{path}.{name}") for name, sub in value.items()}
            elif key == "items":
                out[key] = self.node(value, f"{path}[]")
            elif key == "additionalProperties":
                out[key] = self.node(value, f"{path}.*")
            elif key == "patternProperties":
                # OpenAPI v3.0 has no key patterns; the models still check keys.
                (value_schema,) = value.values()
                out["additionalProperties"] = self.node(value_schema, f"{path}.*")
            elif key == "anyOf":
                out[key] = self._int_or_string(value, schema, path)
            else:
                raise SchemaTranslationError(f"{path}: unsupported JSON Schema keyword {key!r}")
        return _ordered(out)

    def _inline(self, schema: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Resolves `$ref`, single-item `allOf` and `anyOf [X, null]` into one flat node.

        Keys beside a reference (a field's description or default) win over the target's.
        """
        merged = dict(schema)
        while True:
            if "$ref" in merged:
                ref = merged.pop("$ref")
                name = ref.rsplit("/", 1)[-1]
                if not ref.startswith("#/$defs/") or name not in self._defs:
                    raise SchemaTranslationError(f"{path}: unresolvable reference {ref!r}")
                merged = {**self._defs[name], **merged}
            elif "allOf" in merged:
                parts = merged.pop("allOf")
                if len(parts) != 1:
                    raise SchemaTranslationError(f"{path}: allOf with several schemas")
                merged = {**parts[0], **merged}
            elif "anyOf" in merged and any(o == {"type": "null"} for o in merged["anyOf"]):
                options = [o for o in merged.pop("anyOf") if o != {"type": "null"}]
                merged["nullable"] = True
                if len(options) == 1:
                    merged = {**options[0], **merged}
                else:
                    merged["anyOf"] = options
            else:
                return merged

    @staticmethod
    def _int_or_string(
        options: list[Any], schema: Mapping[str, Any], path: str
    ) -> list[dict[str, Any]]:
        if schema.get("x-kubernetes-int-or-string") is not True or sorted(
            o.get("type") for o in options
        ) != ["integer", "string"]:
            raise SchemaTranslationError(
                f"{path}: unions other than int-or-string cannot be expressed in a CRD"
            )
        return [{"type": "integer"}, {"type": "string"}]


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3.0 schema of `model`, keyed by its camelCase aliases."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _Translator(defs).node(raw, model.__name__)


def _immutability_rules(spec_schema: dict[str, Any]) -> None:
    """Adds CEL transition rules: after creation only the mutable fields may change.

    A rule on a field runs only when the old and the new object both have it, so optional
    fields also get a rule on `spec` that forbids adding or removing them.
    """
    required = set(spec_schema.get("required", []))
    spec_rules: list[dict[str, str]] = []
    for name, field in spec_schema["properties"].items():
        if name in constants.MUTABLE_SPEC_FIELDS:
            continue
        field.setdefault("x-kubernetes-validations", []).append(
            {
                "rule": "self == oldSelf",
                "message": (
                    f"spec.{name} cannot change once a run has started; "
                    "create a new RolloutRun (only spec.suspend and "
                    "spec.ttlSecondsAfterFinished may change)"
                ),
            }
        )
        if name not in required:
            spec_rules.append(
                {
                    "rule": f"has(self.{name}) == has(oldSelf.{name})",
                    "message": (
                        f"spec.{name} cannot be added or removed once a run has started; "
                        "create a new RolloutRun"
                    ),
                }
            )
    if spec_rules:
        spec_schema["x-kubernetes-validations"] = spec_rules


def resource_schema() -> dict[str, Any]:
    """The `openAPIV3Schema` of a RolloutRun object."""
    spec = openapi_schema(RolloutRunSpec)
    _immutability_rules(spec)
    return {
        "description": (
            "A RolloutRun runs an Osmosis-layout repository's agent over a dataset with a "
            "model, scores every trajectory and writes the results to object storage."
        ),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "Versioned schema of this object: rollouts.dev/v1alpha1.",
                "type": "string",
            },
            "kind": {"description": "Kind of this object: RolloutRun.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": openapi_schema(RolloutRunStatus),
        },
        "required": ["spec"],
    }


def crd_manifest() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of RolloutRun."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": constants.CRD_NAME,
            "labels": {"app.kubernetes.io/name": "rollout-operator"},
        },
        "spec": {
            "group": constants.GROUP,
            "names": {
                "kind": constants.KIND,
                "listKind": constants.LIST_KIND,
                "plural": constants.PLURAL,
                "singular": constants.SINGULAR,
                "shortNames": list(constants.SHORT_NAMES),
                "categories": list(constants.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Progress",
                            "type": "string",
                            "jsonPath": ".status.progress.percent",
                        },
                        {"name": "Score", "type": "string", "jsonPath": ".status.score"},
                        {
                            "name": "Policy",
                            "type": "string",
                            "jsonPath": ".spec.model.policyVersion",
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {"openAPIV3Schema": resource_schema()},
                }
            ],
        },
    }


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(
        dict(document), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


def crd_yaml() -> str:
    """The CRD as the YAML text committed under crds/, header comment included."""
    return HEADER + _dump(crd_manifest())


CHART_TEMPLATE = Path("charts") / "rollout-operator" / "templates" / "crds" / "rolloutruns.yaml"

_CHART_METADATA = """\
  labels:
    {{- include "rollout-operator.labels" . | nindent 4 }}
  {{- with include "rollout-operator.crdAnnotations" . }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
"""


def chart_template() -> str:
    """The CRD as a Helm template: the same manifest, installed when `crds.enabled` is true,
    with the chart's labels instead of the plain ones and the `keep` policy when asked."""
    manifest = crd_manifest()
    head = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"],
            "metadata": {"name": manifest["metadata"]["name"]}}
    body = _dump({"spec": manifest["spec"]})
    if "{{" in body or "}}" in body:
        raise ValueError("the CRD text contains template delimiters; it cannot go into the chart")
    comment = (
        "{{- /*\n"
        f"The chart's copy of crds/{CRD_FILENAME}, generated from the pydantic models in\n"
        f"operator/rollout_operator/api/; do not edit. Regenerate with: {REGENERATE_COMMAND}\n"
        "*/}}\n"
    )
    return (
        comment
        + "{{- if .Values.crds.enabled }}\n"
        + _dump(head)
        + _CHART_METADATA
        + body
        + "{{- end }}\n"
    )


def _checkout() -> Path:
    """The source checkout this module lives in, else the current directory."""
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "crds").is_dir() else Path.cwd()


def default_output_path() -> Path:
    """crds/ of the source checkout this module lives in, else crds/ under the cwd."""
    return _checkout() / "crds" / CRD_FILENAME


def generated_files() -> dict[Path, str]:
    """Every file generated from the models: the CRD, and the chart's copy when the chart is
    in the checkout."""
    files = {default_output_path(): crd_yaml()}
    chart_template_path = _checkout() / CHART_TEMPLATE
    if chart_template_path.parent.parent.is_dir():
        files[chart_template_path] = chart_template()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE_COMMAND,
        description="Write the RolloutRun CRD (and the chart's copy) generated from the models.",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None,
        help="write only the CRD, to this file ('-' for stdout)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a file differs from the models instead of writing it",
    )
    args = parser.parse_args(argv)
    if str(args.output) == "-":
        sys.stdout.write(crd_yaml())
        return 0
    files = {args.output: crd_yaml()} if args.output else generated_files()
    if args.check:
        stale = [path for path, text in files.items()
                 if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path} is out of date; regenerate with: {REGENERATE_COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
