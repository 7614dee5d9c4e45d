"""Kopf indexes of RolloutRuns, their children and their pods, fed by Kopf's watches.

A reconcile pass reads a run and what it owns from here instead of asking the API server: the
watches keep them current, and Kopf fills every index before any other handler runs. Each entry
is keyed by the run's uid (children and pods carry it as a label). Children and pods are kept
in part: the metadata, spec fields and status that decisions read, not their pod templates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from rollout_operator.api.constants import GROUP, PLURAL, VERSION
from rollout_operator.resources.context import RUN_UID_LABEL

Object = Mapping[str, Any]
CHILD = {RUN_UID_LABEL: kopf.PRESENT}


METADATA = ("name", "namespace", "uid", "labels", "creationTimestamp", "deletionTimestamp",
            "resourceVersion")
SPEC = {"Job": ("completions", "suspend", "completionMode"), "Deployment": ("replicas",)}
"""The parts of a child's spec that decisions read (reconcile/observed.py); the rest (pod
templates above all) is not kept."""
POD_SPEC = ("schedulingGates",)
"""The part of a pod's spec decisions read: Kueue's admission gate on inference pods."""


def _owned(body: kopf.Body, api_version: str, kind: str) -> dict[str, Any]:
    labels = body.metadata.get("labels") or {}
    spec = {key: body.spec[key] for key in SPEC.get(kind, ()) if key in body.spec}
    return {str(labels[RUN_UID_LABEL]): {
        "apiVersion": api_version, "kind": kind, "spec": spec, "status": dict(body.status),
        "metadata": {key: body.metadata.get(key) for key in METADATA}}}


@kopf.index(GROUP, VERSION, PLURAL)
def run_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return {str(body.metadata.get("uid")): dict(body)}


@kopf.index("batch", "v1", "jobs", labels=CHILD)
def job_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return _owned(body, "batch/v1", "Job")


@kopf.index("apps", "v1", "deployments", labels=CHILD)
def deployment_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return _owned(body, "apps/v1", "Deployment")


@kopf.index("", "v1", "services", labels=CHILD)
def service_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return _owned(body, "v1", "Service")


@kopf.index("networking.k8s.io", "v1", "networkpolicies", labels=CHILD)
def network_policy_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    return _owned(body, "networking.k8s.io/v1", "NetworkPolicy")


@kopf.index("", "v1", "pods", labels=CHILD)
def pod_index(body: kopf.Body, **_: Any) -> dict[str, Any]:
    labels = body.metadata.get("labels") or {}
    metadata = {key: body.metadata.get(key) for key in METADATA}
    spec = {key: body.spec[key] for key in POD_SPEC if key in body.spec}
    return {str(labels[RUN_UID_LABEL]): {"metadata": metadata, "spec": spec,
                                         "status": dict(body.status)}}


CHILD_INDEXES = ("job_index", "deployment_index", "service_index", "network_policy_index")


@dataclass(frozen=True)
class Indexes:
    """The indexes as a handler receives them (keyword arguments named after the functions
    above); each maps a run's uid to the objects indexed for it."""

    runs: Mapping[str, Iterable[Object]]
    children: tuple[Mapping[str, Iterable[Object]], ...]
    pods: Mapping[str, Iterable[Object]]

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Indexes:
        return cls(runs=kwargs["run_index"],
                   children=tuple(kwargs[name] for name in CHILD_INDEXES),
                   pods=kwargs["pod_index"])

    def run(self, uid: str) -> dict[str, Any] | None:
        return next((dict(run) for run in self.runs.get(uid, ())), None)

    def children_of(self, uid: str) -> list[Object]:
        return [child for index in self.children for child in index.get(uid, ())]

    def pods_of(self, uid: str) -> list[Object]:
        return list(self.pods.get(uid, ()))
