"""Render the Helm chart offline (helm-python-sdk) into plain manifests for the chart tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rollout-operator"
RELEASE = "ro"
RELEASE_NAMESPACE = "rollout-system"

Manifest = dict[str, Any]

# Value sets every chart test runs over: the defaults and the shapes a team would install.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "peering": {"replicaCount": 3},
    "namespaced-peering": {"replicaCount": 2, "watch": {"namespaces": ["research"]}},
    "monitoring": {
        "metrics": {"service": {"enabled": True},
                    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
    "no-metrics": {"metrics": {"enabled": False}},
    "bring-your-own": {
        "crds": {"enabled": False},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "platform-operator"},
    },
    "configured": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "sandboxImage": {"repository": "registry.example.com/sandbox", "tag": "2.0",
                         "pullPolicy": "Always", "pullSecrets": ["regcred"]},
        "config": {
            "defaultOutputURL": "s3://rollouts/runs",
            "defaultOutputEndpoint": "http://minio.storage.svc:9000",
            "allowedRuntimeClasses": ["gvisor"],
            "defaultEgress": ["10.0.0.0/8"],
            "storageEgress": ["10.1.0.0/16"],
            "allowFileRepos": True,
            "reconcileIntervalSeconds": 2.5,
            "defaultResources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                 "limits": {"cpu": "4", "memory": "8Gi"}},
            "inference": {"cacheSizeLimit": "200Gi"},
        },
        "crds": {"keep": False},
        "verbose": True,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                         "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "rl"},
    },
}


def load_chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render(chart: helm_python.Chart, values: Mapping[str, Any] | None = None) -> list[Manifest]:
    """Every object the chart renders with `values`, in template order (NOTES.txt left out)."""
    rendered = chart.render(dict(values or {}), name=RELEASE, namespace=RELEASE_NAMESPACE,
                            is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def notes(chart: helm_python.Chart, values: Mapping[str, Any] | None = None) -> str:
    rendered = chart.render(dict(values or {}), name=RELEASE, namespace=RELEASE_NAMESPACE,
                            is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def of_kind(manifests: list[Manifest], kind: str) -> Iterator[Manifest]:
    return (m for m in manifests if m["kind"] == kind)


def one(manifests: list[Manifest], kind: str) -> Manifest:
    (found,) = of_kind(manifests, kind)
    return found
