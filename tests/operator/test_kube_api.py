"""The operator's API calls against the stand-in: what it asks for, and what it receives."""

from __future__ import annotations

from typing import Any

import pytest

from rollout_operator.handlers.kube import METADATA_ONLY, USER_AGENT, KubeApi
from rollout_operator.handlers.secret_names import SecretNames
from tests.k8s.server import EmulatedCluster, wait_for
from tests.operator.harness import KUEUE_WORKLOAD_CRD

SECRET_VALUE = "c2VjcmV0LXZhbHVlLTQy"


def test_secret_names_follow_the_namespace_and_never_receive_secret_data(
        k8s_cluster: EmulatedCluster, k8s_api: Any, request: pytest.FixtureRequest) -> None:
    # Created as `kubectl create secret` does: `kubectl apply` would also copy the data into
    # the last-applied annotation, which is metadata (docs/security.md says so).
    from kubernetes import client

    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_secret("default", {
        "metadata": {"name": "present"}, "data": {"api-key": SECRET_VALUE}})
    api = KubeApi(k8s_api)
    sent: list[bytes] = []
    stream = api.stream_lines

    def recorded(*args: Any, **kwargs: Any) -> Any:
        for line in stream(*args, **kwargs):
            sent.append(line)
            yield line

    api.stream_lines = recorded  # type: ignore[method-assign]
    names = SecretNames(api)
    request.addfinalizer(names.close)
    assert names.existing("default", ["present", "absent"]) == {"present"}

    core.create_namespaced_secret("default", {
        "metadata": {"name": "absent"}, "data": {"api-key": SECRET_VALUE}})
    wait_for(lambda: names.existing("default", ["present", "absent"]) == {"present", "absent"},
             message="the new Secret seen")
    core.delete_namespaced_secret("present", "default")
    wait_for(lambda: names.existing("default", ["present", "absent"]) == {"absent"},
             message="the deleted Secret gone")
    assert names.existing("default", []) == set()

    calls = [c for c in k8s_cluster.emulator.calls if c.resource == "secrets"
             and c.user_agent == USER_AGENT and c.verb not in ("create", "delete")]
    assert {c.verb for c in calls} == {"list", "watch"}  # no get per Secret, ever
    assert all("as=PartialObjectMetadata" in c.accept for c in calls)
    assert len(sent) >= 2 and not any(SECRET_VALUE.encode() in line for line in sent)
    names_listed, _ = api.secret_names("default")
    assert names_listed == {"absent"}

    answer = api._call("GET", "/api/v1/namespaces/default/secrets/absent",
                       accept=METADATA_ONLY)
    assert answer["kind"] == "PartialObjectMetadata" and answer["metadata"]["name"] == "absent"
    assert SECRET_VALUE not in repr(answer)
    full = api._call("GET", "/api/v1/namespaces/default/secrets/absent")
    assert full["data"] == {"api-key": SECRET_VALUE}  # control: a plain GET would carry it
    listed = api._call("GET", "/api/v1/namespaces/default/secrets")
    assert SECRET_VALUE in repr(listed)  # control: so would a plain list


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
