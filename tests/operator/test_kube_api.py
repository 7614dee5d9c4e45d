"""The operator's API calls against the stand-in: what it asks for, and what it receives."""

from __future__ import annotations

from typing import Any

from rollout_operator.handlers.kube import METADATA_ONLY, USER_AGENT, KubeApi
from tests.k8s.server import EmulatedCluster
from tests.operator.harness import KUEUE_WORKLOAD_CRD

SECRET_VALUE = "c2VjcmV0LXZhbHVlLTQy"


def test_secret_checks_never_receive_secret_data(k8s_cluster: EmulatedCluster,
                                                 k8s_api: Any) -> None:
    # Created as `kubectl create secret` does: `kubectl apply` would also copy the data into
    # the last-applied annotation, which is metadata (docs/security.md says so).
    from kubernetes import client

    client.CoreV1Api(k8s_api).create_namespaced_secret("default", {
        "metadata": {"name": "present"}, "data": {"api-key": SECRET_VALUE}})
    api = KubeApi(k8s_api)
    assert api.existing_secrets("default", ["present", "absent"]) == {"present"}
    calls = [c for c in k8s_cluster.emulator.calls if c.resource == "secrets"
             and c.user_agent == USER_AGENT]
    assert [(c.verb, c.name) for c in calls] == [("get", "present"), ("get", "absent")]
    assert all("as=PartialObjectMetadata" in c.accept for c in calls)

    answer = api._call("GET", "/api/v1/namespaces/default/secrets/present",
                       accept=METADATA_ONLY)
    assert answer["kind"] == "PartialObjectMetadata" and answer["metadata"]["name"] == "present"
    assert SECRET_VALUE not in repr(answer)
    full = api._call("GET", "/api/v1/namespaces/default/secrets/present")
    assert full["data"] == {"api-key": SECRET_VALUE}  # control: a plain GET would carry it


def test_workloads_are_listed_by_job_uid_and_none_without_kueue(
        k8s_cluster: EmulatedCluster, k8s_api: Any) -> None:
    api = KubeApi(k8s_api)
    assert api.list_workloads("default", "job-uid-1") == []  # no Kueue: the API answers 404
    k8s_cluster.emulator.create_object("apiextensions.k8s.io/v1/customresourcedefinitions",
                                       KUEUE_WORKLOAD_CRD)
    for name, uid in (("mine", "job-uid-1"), ("other", "job-uid-2")):
        k8s_cluster.emulator.create_object("kueue.x-k8s.io/v1beta1/workloads", {
            "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": name, "labels": {"kueue.x-k8s.io/job-uid": uid}}}, "default")
    listed = api.list_workloads("default", "job-uid-1")
    assert [w["metadata"]["name"] for w in listed] == ["mine"]
