"""spec.scheduling: what Kubernetes and Kueue accept is accepted; the rest is refused naming the
field and the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.api.validation import SpecError, parse_spec

BASE: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/org/repo.git"},
    "model": {"name": "openai/gpt-4o-mini"},
}


def scheduled(scheduling: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, "scheduling": scheduling}


def test_a_full_scheduling_section_parses() -> None:
    spec = parse_spec({
        **scheduled({
            "queueName": "team-a.batch-1",
            "priorityClassName": "batch.high",
            "nodeSelector": {"cloud.google.com/gke-nodepool": "cpu-pool", "pool": ""},
            "tolerations": [{"operator": "Exists"},
                            {"key": "spot", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 30}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "x"}},
                 "topologyKey": "kubernetes.io/hostname"}]}},
        }),
        "model": {"serve": {"model": "m", "scheduling": {"queueName": "gpu"}}},
    })
    assert spec.scheduling.queue_name == "team-a.batch-1"
    assert spec.scheduling.tolerations[1].toleration_seconds == 30
    assert spec.model.serve is not None and spec.model.serve.scheduling is not None
    assert spec.model.serve.scheduling.queue_name == "gpu"


def test_no_scheduling_means_no_queue_and_no_placement() -> None:
    spec = parse_spec(BASE)
    assert spec.scheduling.queue_name is None
    assert spec.scheduling.tolerations == [] and spec.scheduling.node_selector is None


LABEL_VALUE = ("must be a Kubernetes label value: at most 63 letters, digits, '-', '_' and '.', "
               "starting and ending with a letter or digit")
OBJECT_NAME = ("must be a Kubernetes object name: lowercase letters, digits, '-' and '.', "
               "starting and ending with a letter or digit")
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("queue name with a slash", {"queueName": "team/a"},
     [f'spec.scheduling.queueName: {OBJECT_NAME} (got "team/a")']),
    ("queue name in capitals", {"queueName": "Team_A"},
     [f'spec.scheduling.queueName: {OBJECT_NAME} (got "Team_A")']),
    ("empty queue name", {"queueName": ""}, ["spec.scheduling.queueName: must not be empty"]),
    ("queue name too long", {"queueName": "q" * 64},
     ["spec.scheduling.queueName: must be at most 63 characters (got 64)"]),
    ("priority class in capitals", {"priorityClassName": "High"},
     [f'spec.scheduling.priorityClassName: {OBJECT_NAME} (got "High")']),
    ("node selector value with a space", {"nodeSelector": {"pool": "a b"}},
     [f'spec.scheduling.nodeSelector.pool: {LABEL_VALUE} (got "a b")']),
    ("toleration operator", {"tolerations": [{"key": "k", "operator": "Matches"}]},
     ["spec.scheduling.tolerations[0].operator: must be 'Exists' or 'Equal' (got \"Matches\")"]),
    ("toleration effect", {"tolerations": [{"key": "k", "effect": "NoRun"}]},
     ["spec.scheduling.tolerations[0].effect: must be 'NoSchedule', 'PreferNoSchedule' or "
      "'NoExecute' (got \"NoRun\")"]),
    ("Exists with a value", {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
     ["spec.scheduling.tolerations[0]: toleration of k: operator Exists takes no value; remove "
      "value, or use operator Equal"]),
    ("no key with Equal", {"tolerations": [{"value": "v"}]},
     ["spec.scheduling.tolerations[0]: a toleration without key must use operator Exists (it "
      "matches every taint); set key, or operator: Exists"]),
    ("tolerationSeconds without NoExecute",
     {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
     ["spec.scheduling.tolerations[0]: toleration of k: tolerationSeconds applies only to "
      "effect NoExecute"]),
    ("In without values", {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}},
     ["spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
      "nodeSelectorTerms[0].matchExpressions[0]: zone In needs at least one value"]),
    ("affinity weight", {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 0, "preference": {}}]}}},
     ["spec.scheduling.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
      ".weight: must be >= 1 (got 0)"]),
]


@pytest.mark.parametrize(("scheduling", "expected"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_scheduling_names_the_field_and_the_fix(
        scheduling: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(scheduled(scheduling))
    assert caught.value.problems == expected


def test_the_server_scheduling_is_checked_too() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "model": {"serve": {"model": "m", "scheduling": {
            "tolerations": [{"key": "nvidia.com/gpu", "effect": "Always"}]}}}})
    assert caught.value.problems == [
        "spec.model.serve.scheduling.tolerations[0].effect: must be 'NoSchedule', "
        "'PreferNoSchedule' or 'NoExecute' (got \"Always\")"]


def test_the_example_in_the_scheduling_docs_parses() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "scheduling.md"
    block = re.search(r"```yaml\n(.*?)```", page.read_text(), re.S)
    assert block is not None
    example = yaml.safe_load(block.group(1))["spec"]
    spec = parse_spec({"repo": BASE["repo"], **example})
    assert spec.scheduling.queue_name == "rollouts"
    assert spec.model.serve is not None and spec.model.serve.scheduling is not None
    assert spec.model.serve.scheduling.queue_name == "inference"
