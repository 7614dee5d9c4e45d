"""The Helm chart: lint, render with several value sets, validate every object, and hold the
operator's pods, settings, CRD and values schema to what the code expects."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from rollout_operator.api.crd import CHART_TEMPLATE as CRD_TEMPLATE
from rollout_operator.api.crd import CRD_FILENAME, chart_template
from rollout_operator.cli.operator_cmd import operator_command
from rollout_operator.resources.security import workload_security_violations
from rollout_operator.settings import ENV_PREFIX, OperatorSettings
from tests.chart.render import (
    CHART,
    RELEASE_NAMESPACE,
    ROOT,
    VALUE_SETS,
    Manifest,
    load_chart,
    notes,
    of_kind,
    one,
    render,
)

K8S_VERSION = "1.33"
# Kinds kubernetes-validate has no schema for (their CRDs live outside Kubernetes itself).
EXTERNAL_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def rendered(chart: helm_python.Chart) -> dict[str, list[Manifest]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def _args(manifests: list[Manifest]) -> list[str]:
    deployment = one(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


# Lint and validation.


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_is_clean(value_set: str) -> None:
    report = helm_python.lint(CHART, VALUE_SETS[value_set], strict=True,
                              namespace=RELEASE_NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid_kubernetes(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    assert manifests
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in EXTERNAL_KINDS:
            continue
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == "ro"


def test_the_validator_rejects_a_broken_object(rendered: dict[str, list[Manifest]]) -> None:
    deployment = one(rendered["defaults"], "Deployment")
    deployment = json.loads(json.dumps(deployment))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# The CRD.


def test_the_chart_crd_is_the_generated_crd(rendered: dict[str, list[Manifest]]) -> None:
    assert (ROOT / CRD_TEMPLATE).read_text() == chart_template(), (
        "the chart's CRD template is stale; regenerate with: python -m rollout_operator.api.crd"
    )
    committed = yaml.safe_load((ROOT / "crds" / CRD_FILENAME).read_text())
    (crd,) = (m for m in of_kind(rendered["defaults"], "CustomResourceDefinition")
              if m["metadata"]["name"] == committed["metadata"]["name"])
    assert crd["spec"] == committed["spec"]
    assert crd["apiVersion"] == committed["apiVersion"]


def test_crds_are_kept_on_uninstall_unless_told_otherwise(
    rendered: dict[str, list[Manifest]]
) -> None:
    for crd in of_kind(rendered["peering"], "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    for crd in of_kind(rendered["configured"], "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    assert list(of_kind(rendered["bring-your-own"], "CustomResourceDefinition")) == []


# Replicas and peering.


def test_one_replica_runs_standalone_and_never_overlaps(
    rendered: dict[str, list[Manifest]]
) -> None:
    manifests = rendered["defaults"]
    assert one(manifests, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(arg.startswith("--peering") for arg in _args(manifests))
    crds = {m["metadata"]["name"] for m in of_kind(manifests, "CustomResourceDefinition")}
    assert crds == {"rolloutruns.rollouts.dev"}


@pytest.mark.parametrize(("value_set", "peering_kind"), [
    ("peering", "clusterkopfpeerings"), ("namespaced-peering", "kopfpeerings"),
])
def test_several_replicas_peer_with_distinct_priorities(
    rendered: dict[str, list[Manifest]], value_set: str, peering_kind: str
) -> None:
    manifests = rendered[value_set]
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == VALUE_SETS[value_set]["replicaCount"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = _args(manifests)
    assert "--peering" in args and "--priority=auto" in args
    crds = {m["metadata"]["name"] for m in of_kind(manifests, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    granted = [rule for role in [*of_kind(manifests, "Role"), *of_kind(manifests, "ClusterRole")]
               for rule in role["rules"] if "kopf.dev" in rule["apiGroups"]]
    assert [rule["resources"] for rule in granted] == [[peering_kind]]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rolloutctl_operator_accepts_the_deployment_args(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    args = _args(rendered[value_set])
    assert args[0] == "operator"
    context = operator_command.make_context("operator", args[1:])
    namespaces = VALUE_SETS[value_set].get("watch", {}).get("namespaces", [])
    assert list(context.params["namespaces"]) == namespaces


# RBAC shape (what the rules must contain is tested against real API calls in test_rbac.py).


def test_cluster_wide_mode_has_one_cluster_role(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["defaults"]
    assert list(of_kind(manifests, "Role")) == []
    role = one(manifests, "ClusterRole")
    assert any("rolloutruns" in rule["resources"] for rule in role["rules"])
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": one(manifests, "ServiceAccount")["metadata"]["name"],
        "namespace": RELEASE_NAMESPACE,
    }]


def test_namespaced_mode_has_a_role_per_namespace(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["namespaced"]
    roles = {role["metadata"]["namespace"]: role for role in of_kind(manifests, "Role")}
    assert sorted(roles) == ["team-a", "team-b"]
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(manifests, "RoleBinding")}
    assert sorted(bindings) == ["team-a", "team-b"]
    for role in roles.values():
        assert any("rolloutruns" in rule["resources"] for rule in role["rules"])
    cluster_role = one(manifests, "ClusterRole")
    assert not any("rolloutruns" in rule["resources"] or "secrets" in rule["resources"]
                   for rule in cluster_role["rules"]), "namespaced mode grants cluster-wide"
    assert _args(manifests)[1:].count("--namespace=team-a") == 1


def test_rbac_and_service_account_can_be_left_to_the_platform(
    rendered: dict[str, list[Manifest]]
) -> None:
    manifests = rendered["bring-your-own"]
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"ServiceAccount", "Role", "ClusterRole", "RoleBinding",
                        "ClusterRoleBinding"}
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"


# Pod security.


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_chart_pod_meets_the_restricted_standard(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    workloads = [m for m in rendered[value_set] if m["kind"] in WORKLOAD_KINDS]
    assert workloads
    for workload in workloads:
        assert workload_security_violations(workload, api_client=True) == [], workload["kind"]


def test_a_weakened_security_context_is_caught(chart: helm_python.Chart) -> None:
    manifests = render(chart, {"securityContext": {"readOnlyRootFilesystem": False,
                                                   "allowPrivilegeEscalation": True}})
    problems = workload_security_violations(one(manifests, "Deployment"), api_client=True)
    assert any("allowPrivilegeEscalation" in p for p in problems)
    assert any("readOnlyRootFilesystem" in p for p in problems)


# Settings: the ConfigMap is the operator's configuration.


def _settings_from(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    data = one(manifests, "ConfigMap")["data"]
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in OperatorSettings.model_fields}
    unknown = sorted(set(data) - fields)
    assert unknown == [], f"ConfigMap keys the operator would ignore: {unknown}"
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    return OperatorSettings()


def test_default_config_is_the_operators_default(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_from(rendered["defaults"], monkeypatch)
    defaults = OperatorSettings.model_construct()
    for name in OperatorSettings.model_fields:
        if name == "runtime_image":
            continue
        assert getattr(settings, name) == getattr(defaults, name), name
    assert settings.runtime_image == "ghcr.io/rollout-operator/sandbox:0.1.0"


def test_configured_values_reach_the_operator_and_its_pods(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollout_operator.cli.render_cmd import render_run

    settings = _settings_from(rendered["configured"], monkeypatch)
    config = VALUE_SETS["configured"]["config"]
    assert settings.runtime_image == "registry.example.com/sandbox:2.0"
    assert settings.default_output_url == config["defaultOutputURL"]
    assert settings.default_output_endpoint == config["defaultOutputEndpoint"]
    assert settings.allowed_runtime_classes == ["gvisor"]
    assert settings.allow_file_repos is True
    assert settings.reconcile_interval_seconds == 2.5
    assert settings.default_limits == {"cpu": "4", "memory": "8Gi"}
    assert settings.inference_cache_size_limit == "200Gi"

    run = yaml.safe_load((ROOT / "examples" / "calculator" / "rolloutrun.yaml").read_text())
    _, children = render_run(run, namespace="research", name=None, settings=settings)
    workloads = [c for c in children if c["kind"] in WORKLOAD_KINDS]
    assert workloads
    for workload in workloads:
        assert workload_security_violations(workload) == [], workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        for container in pod["containers"]:
            assert container["image"] == "registry.example.com/sandbox:2.0"
            assert container["imagePullPolicy"] == "Always"


def test_a_config_change_restarts_the_operator(chart: helm_python.Chart) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(chart, values), "Deployment")
        annotation: str = deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"]
        return annotation

    assert checksum({}) != checksum({"config": {"allowFileRepos": True}})


# Values and their schema.


def test_the_schema_accepts_every_value_set(chart: helm_python.Chart) -> None:
    for values in VALUE_SETS.values():
        chart.validate_schema(values)


@pytest.mark.parametrize(("values", "complaint"), [
    ({"replicaCout": 2}, "replicaCout"),
    ({"config": {"defaultOutputUrl": "s3://b/p"}}, "defaultOutputUrl"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
    ({"replicaCount": "2"}, "replicaCount"),
    ({"crds": {"enabled": "yes"}}, "enabled"),
    ({"watch": {"namespaces": "team-a"}}, "namespaces"),
    ({"metrics": {"port": 70000}}, "port"),
    ({"config": {"defaultOutputURL": "bucket/prefix"}}, "defaultOutputURL"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
])
def test_the_schema_rejects_misspelt_keys_and_wrong_types(
    chart: helm_python.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        chart.validate_schema(values)


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [path for key, value in node.items() for path in _leaf_paths(value, (*prefix, key))]
    return [prefix]


# Kubernetes objects passed through as they are: their fields are Kubernetes' own.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "livenessProbe",
               "readinessProbe", "defaultResources"}


def test_every_value_is_in_the_schema_and_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path in _leaf_paths(values):
        node = schema
        for key in path:
            if PASSTHROUGH & set(path[: path.index(key)]):
                break
            assert key in node.get("properties", {}), f"{'.'.join(path)} is not in the schema"
            node = node["properties"][key]
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = {key for _, key in stack}
        stack.append((indent, match.group(2)))
        if parents & PASSTHROUGH:
            continue
        previous = lines[number - 1].strip() if number else ""
        assert previous.startswith("#"), f"values.yaml line {number + 1}: {line.strip()} " \
            "has no comment above it"


def test_notes_tell_how_to_submit_the_example(chart: helm_python.Chart) -> None:
    text = notes(chart, {"watch": {"namespaces": ["research"]}})
    assert "kubectl -n research apply -f" in text
    assert "examples/calculator/rolloutrun.yaml" in text
    assert "It serves RolloutRuns in: research." in text
    assert "crds.enabled=false" in notes(chart, {"crds": {"enabled": False}})


def test_metrics_are_wired_from_pod_to_service_monitor(
    rendered: dict[str, list[Manifest]]
) -> None:
    manifests = rendered["monitoring"]
    pod = one(manifests, "Deployment")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert f"--metrics-address=0.0.0.0:{ports['metrics']}" in container["args"]
    service = one(manifests, "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert list(of_kind(rendered["no-metrics"], "Service")) == []
    assert not any(a.startswith("--metrics-address") for a in _args(rendered["no-metrics"]))
