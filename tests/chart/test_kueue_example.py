"""The chart's Kueue example (charts/rollout-operator/examples/kueue.yaml): every object is
well-formed for its API (Kubernetes' own schema for the PriorityClass; Kueue v1beta1's rules
for the flavors, queues and their references), and the RolloutRun in it, rendered as the
operator would create it, lands in those queues with resources they cover and quota that fits,
on the flavors' nodes, tolerating their taints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from rollout_operator.api.quantity import parse_quantity
from rollout_operator.api.spec import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN
from rollout_operator.api.validation import parse_spec
from rollout_operator.cli.main import cli
from rollout_operator.resources.placement import KUEUE_QUEUE_LABEL
from tests.chart.render import CHART

EXAMPLE = CHART / "examples" / "kueue.yaml"
KUEUE = "kueue.x-k8s.io/v1beta1"
K8S_VERSION = "1.33"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
# Spec fields of Kueue v1beta1's objects; anything else is a typo Kueue's CRD would refuse.
SPEC_FIELDS = {
    "ResourceFlavor": {"nodeLabels", "nodeTaints", "tolerations", "topologyName"},
    "ClusterQueue": {"resourceGroups", "cohort", "queueingStrategy", "namespaceSelector",
                     "flavorFungibility", "preemption", "admissionChecks",
                     "admissionChecksStrategy", "stopPolicy", "fairSharing"},
    "LocalQueue": {"clusterQueue", "stopPolicy", "fairSharing"},
}

Obj = dict[str, Any]


def _documents() -> list[Obj]:
    docs = [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]
    assert docs, "the example is empty"
    return docs


def _named(kind: str) -> dict[str, Obj]:
    return {doc["metadata"]["name"]: doc for doc in _documents() if doc["kind"] == kind}


def test_the_example_holds_a_whole_setup() -> None:
    kinds = sorted({(doc["apiVersion"], doc["kind"]) for doc in _documents()})
    assert kinds == [(KUEUE, "ClusterQueue"), (KUEUE, "LocalQueue"), (KUEUE, "ResourceFlavor"),
                     ("rollouts.dev/v1alpha1", "RolloutRun"),
                     ("scheduling.k8s.io/v1", "PriorityClass")]


def test_kubernetes_objects_are_valid() -> None:
    for doc in _documents():
        if doc["apiVersion"].startswith("scheduling.k8s.io/"):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kind", sorted(SPEC_FIELDS))
def test_kueue_objects_have_only_known_fields(kind: str) -> None:
    objects = _named(kind)
    assert objects, kind
    for name, doc in objects.items():
        assert DNS_LABEL.match(name), name
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, name
        assert set(doc["spec"]) <= SPEC_FIELDS[kind], (name, set(doc["spec"]))
        namespaced = kind == "LocalQueue"
        assert ("namespace" in doc["metadata"]) == namespaced, name


def test_resource_flavors_are_well_formed() -> None:
    for name, flavor in _named("ResourceFlavor").items():
        for key, value in (flavor["spec"].get("nodeLabels") or {}).items():
            assert re.match(LABEL_KEY_PATTERN, key) and re.match(LABEL_VALUE_PATTERN, value)
        for taint in flavor["spec"].get("nodeTaints") or []:
            assert set(taint) <= {"key", "value", "effect"} and taint["key"], name
            assert taint["effect"] in TAINT_EFFECTS, name


def test_cluster_queues_follow_kueues_rules() -> None:
    flavors = _named("ResourceFlavor")
    for name, queue in _named("ClusterQueue").items():
        spec = queue["spec"]
        assert spec.get("queueingStrategy", "BestEffortFIFO") in ("StrictFIFO", "BestEffortFIFO")
        seen: set[str] = set()
        for group in spec["resourceGroups"]:
            covered = group["coveredResources"]
            assert covered and not seen & set(covered), (name, "a resource in two groups")
            seen |= set(covered)
            for flavor in group["flavors"]:
                assert flavor["name"] in flavors, (name, flavor["name"])
                # Kueue wants each flavor's resources in the order of coveredResources.
                assert [r["name"] for r in flavor["resources"]] == covered, name
                for resource in flavor["resources"]:
                    assert parse_quantity(resource["nominalQuota"]) >= 0, name


def test_local_queues_point_at_cluster_queues() -> None:
    cluster_queues = _named("ClusterQueue")
    for name, queue in _named("LocalQueue").items():
        assert queue["spec"]["clusterQueue"] in cluster_queues, name


def _rendered_run(tmp_path: Path) -> tuple[Obj, dict[str, Obj]]:
    (run,) = _named("RolloutRun").values()
    parse_spec(run["spec"])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    result = CliRunner().invoke(cli, ["render", "-f", str(path)])
    assert result.exit_code == 0, result.output
    children = {doc["metadata"]["labels"]["rollouts.dev/component"] + "/" + doc["kind"]: doc
                for doc in yaml.safe_load_all(result.output) if doc}
    return run, children


def _pod_requests(pod: Obj) -> dict[str, Decimal]:
    """What Kueue counts for one pod: the containers' requests summed, at least each init
    container's (limits stand in for missing requests)."""
    def amounts(container: Obj) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        given = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: parse_quantity(value) for name, value in given.items()}

    total: dict[str, Decimal] = {}
    for container in pod["containers"]:
        for name, amount in amounts(container).items():
            total[name] = total.get(name, Decimal(0)) + amount
    for container in pod.get("initContainers") or []:
        for name, amount in amounts(container).items():
            total[name] = max(total.get(name, Decimal(0)), amount)
    return total


def _queued_workloads(children: dict[str, Obj]) -> Iterator[tuple[Obj, int]]:
    workers = children["workers/Job"]
    yield workers, int(workers["spec"]["parallelism"])
    yield children["inference/Deployment"], 1  # Kueue admits a Deployment's pods one by one


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, taint["effect"]):
            continue
        if toleration.get("key") in (None, taint["key"]) and (
                toleration.get("operator") == "Exists"
                or toleration.get("value") == taint.get("value")):
            return True
    return False


def test_the_example_run_fits_its_queues(tmp_path: Path) -> None:
    run, children = _rendered_run(tmp_path)
    local_queues, cluster_queues = _named("LocalQueue"), _named("ClusterQueue")
    flavors, priorities = _named("ResourceFlavor"), _named("PriorityClass")
    namespace = run["metadata"]["namespace"]
    for workload, pods in _queued_workloads(children):
        queue_name = workload["metadata"]["labels"][KUEUE_QUEUE_LABEL]
        local = local_queues[queue_name]
        assert local["metadata"]["namespace"] == namespace
        groups = cluster_queues[local["spec"]["clusterQueue"]]["spec"]["resourceGroups"]
        (group,) = groups
        (flavor_ref,) = group["flavors"]
        quota = {r["name"]: parse_quantity(r["nominalQuota"]) for r in flavor_ref["resources"]}
        pod = workload["spec"]["template"]["spec"]
        requests = _pod_requests(pod)
        assert set(requests) <= set(group["coveredResources"]), (queue_name, set(requests))
        for name, amount in requests.items():
            assert amount * pods <= quota[name], (queue_name, name, amount * pods, quota[name])
        flavor = flavors[flavor_ref["name"]]["spec"]
        assert pod["nodeSelector"].items() >= flavor["nodeLabels"].items(), queue_name
        for taint in flavor.get("nodeTaints") or []:
            assert _tolerates(pod.get("tolerations") or [], taint), (queue_name, taint)
        assert pod["priorityClassName"] in priorities
    assert children["workers/Job"]["spec"]["suspend"] is True
