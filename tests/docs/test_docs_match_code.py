"""The cluster user docs name settings, chart values, flags, metrics, reasons, labels and paths;
each must exist in the code, and the settings and chart values must all be documented."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.api.constants import ConditionType, Phase, Reason
from rollout_operator.cli.operator_cmd import operator_command
from rollout_operator.operator_metrics import OperatorMetrics
from rollout_operator.resources.context import COMPONENT_LABEL, RUN_LABEL, RUN_UID_LABEL
from rollout_operator.resources.tools import UNENFORCED_HOSTS_ANNOTATION
from rollout_operator.settings import ENV_PREFIX, OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = ("install.md", "configuration.md", "security.md", "gitops.md", "troubleshooting.md",
         "testing-limits.md", "scheduling.md")
CHART = ROOT / "charts" / "rollout-operator"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
TOP_LEVEL_DIRS = ("operator/", "charts/", "crds/", "examples/", "sandbox-image/", "tests/",
                  "docs/", ".github/")
# rollouts.dev/... names that are not labels or annotations of the operator's children.
OTHER_API_NAMES = {"rollouts.dev/v1alpha1", "rollouts.dev/finalizer"}


def _text(page: str) -> str:
    return (DOCS / page).read_text(encoding="utf-8")


def _code_spans(page: str) -> Iterator[str]:
    yield from re.findall(r"`([^`\n]+)`", _text(page))


def _all_spans() -> list[tuple[str, str]]:
    return [(page, span) for page in PAGES for span in _code_spans(page)]


def _leaf_paths(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, f"{path}.")
        else:
            yield path


def _resolves(path: str) -> bool:
    node: Any = VALUES
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in OperatorSettings.model_fields}
    in_table = set(re.findall(rf"`({ENV_PREFIX}[A-Z_]+)`", _text("configuration.md")))
    assert sorted(settings - in_table) == [], "settings missing from configuration.md"
    for page in PAGES:
        named = set(re.findall(rf"({ENV_PREFIX}[A-Z_]+)", _text(page)))
        assert sorted(named - settings) == [], page


def test_chart_values_named_in_the_docs_exist_and_every_config_value_is_documented() -> None:
    value_path = re.compile(r"^((?:config|sandboxImage|image|watch|crds|rbac|serviceAccount|"
                            r"metrics|health)\.[A-Za-z.]+)")
    named = set()
    for page, span in _all_spans():
        match = value_path.match(span)
        if match:
            path = match.group(1).rstrip(".")
            assert _resolves(path), f"{page}: {span}"
            named.add(path)
    configuration = _text("configuration.md")
    for leaf in _leaf_paths(VALUES["config"], "config."):
        parent = leaf.rsplit(".", 1)[0]
        assert f"`{leaf}`" in configuration or f"`{parent}`" in configuration, leaf
    for key in VALUES:
        assert f"`{key}" in configuration, f"chart value {key} is not in configuration.md"


def test_operator_flags_in_the_docs_are_the_commands_flags() -> None:
    flags = {opt for param in operator_command.params for opt in (*param.opts,
                                                                  *param.secondary_opts)}
    documented = set(re.findall(r"`(--?[a-z][a-z-]*)", _text("configuration.md")))
    documented -= {"--set", "--recursive"}
    assert documented, "no flags found"
    assert sorted(documented - flags) == []
    assert sorted(flags - documented - {"--help"}) == [], "flags missing from configuration.md"


def test_metrics_named_in_the_docs_are_served() -> None:
    served = set()
    for family in OperatorMetrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_sum", "_count")}
        served |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    for page in PAGES:
        for name in re.findall(r"(rollout_operator_[a-z_]+)", _text(page)):
            assert name in served, f"{page}: {name}"


def test_reasons_phases_and_conditions_in_the_docs_exist() -> None:
    reasons = {value for key, value in vars(Reason).items() if key.isupper()}
    for page in PAGES:
        for reason in re.findall(r"reason `(\w+)`", _text(page)):
            assert reason in reasons, f"{page}: reason {reason}"
        for type_ in re.findall(r"`(\w+)=(?:True|False)`", _text(page)):
            assert type_ in ConditionType.ALL, f"{page}: condition {type_}"
    phases = re.findall(r"`(\w+)`", _text("gitops.md").split("## Argo CD health check")[1]
                        .split("Add it to")[0])
    assert set(Phase.ALL) <= set(phases), "the Argo CD table must cover every phase"


def test_labels_and_annotations_in_the_docs_exist() -> None:
    known = {RUN_LABEL, RUN_UID_LABEL, COMPONENT_LABEL, UNENFORCED_HOSTS_ANNOTATION}
    for page, span in _all_spans():
        for name in re.findall(r"(rollouts\.dev/[a-z0-9-]+)", span):
            assert name in known | OTHER_API_NAMES, f"{page}: {span}"


@pytest.mark.parametrize("page", PAGES)
def test_repository_paths_in_the_docs_exist(page: str) -> None:
    for span in _code_spans(page):
        path = span.split()[0].rstrip(",.:")
        if path.startswith(TOP_LEVEL_DIRS) and "<" not in path and "*" not in path:
            assert (ROOT / path).exists(), f"{page}: {path}"
        elif path.startswith("templates/"):
            assert (CHART / path).exists(), f"{page}: {path}"
        elif re.fullmatch(r"[a-z-]+\.md", path):
            assert (DOCS / path).exists(), f"{page}: {path}"


def _rbac_tables() -> list[set[tuple[str, str, frozenset[str]]]]:
    """The (group, resource, verbs) rows of each table in security.md's permissions section."""
    section = _text("security.md").split("## The operator's permissions")[1].split("\n## ")[0]
    tables: list[set[tuple[str, str, frozenset[str]]]] = []
    for block in re.split(r"\n\s*\n", section):
        rows = [line for line in block.splitlines() if line.startswith("| ")]
        if not rows or "API group" not in rows[0]:
            continue
        table = set()
        for row in rows[1:]:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            group = "" if cells[0] == "core" else cells[0].strip("`")
            verbs = frozenset(re.findall(r"`(\w+)`", cells[2]))
            table.add((group, cells[1].strip("`"), verbs))
        tables.append(table)
    return tables


def _rules(role: Mapping[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    return {(group, resource, frozenset(rule["verbs"]))
            for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"]}


def test_the_rbac_tables_are_the_charts_rules() -> None:
    from tests.chart.render import load_chart, of_kind, one, render

    chart = load_chart()
    namespaced = render(chart, {"watch": {"namespaces": ["team-a"]}, "replicaCount": 2})
    cluster_wide = render(chart, {"replicaCount": 2})
    per_namespace, other = _rbac_tables()
    role_rules = _rules(one(namespaced, "Role"))
    peering = {rule for rule in role_rules if rule[0] == "kopf.dev"}
    assert per_namespace == role_rules - peering
    cluster_role = _rules(one(cluster_wide, "ClusterRole"))
    assert per_namespace <= cluster_role
    expected_other = (_rules(one(namespaced, "ClusterRole")) | peering
                      | (cluster_role - per_namespace))
    assert other == expected_other
    assert list(of_kind(cluster_wide, "Role")) == []
