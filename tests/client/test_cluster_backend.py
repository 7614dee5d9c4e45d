"""The client's cluster backend against the API server stand-in: it creates the RolloutRun,
finds its records where the operator's workers commit them, and follows its status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout_operator.api.constants import GROUP, PLURAL, VERSION
from rollout_operator.api.crd import crd_manifest
from rollout_operator.client import ClusterBackend, submit
from rollout_operator.runtime.run_layout import run_prefix
from tests.client.test_stream import write
from tests.exports.records import record
from tests.k8s.server import EmulatedCluster


def _manifest(output: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"repo": {"url": "https://git.example.com/org/repo.git"},
                            "model": {"name": "openai/policy", "policyVersion": "step-120"}}
    if output:
        spec["output"] = {"url": output}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RolloutRun",
            "metadata": {"name": "train-120"}, "spec": spec}


def test_a_run_is_created_streamed_and_waited_for(k8s_api: Any, k8s_cluster: EmulatedCluster,
                                                  tmp_path: Path) -> None:
    client.ApiextensionsV1Api(k8s_api).create_custom_resource_definition(crd_manifest())
    client.CoreV1Api(k8s_api).create_namespace({"metadata": {"name": "team"}})
    custom = client.CustomObjectsApi(k8s_api)
    backend = ClusterBackend(namespace="team", api_client=k8s_api)
    run = submit(_manifest(tmp_path.as_uri()), backend=backend)

    created = custom.get_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, "train-120")
    assert created["spec"]["model"]["policyVersion"] == "step-120"
    assert run.uid == created["metadata"]["uid"]
    assert run.run_prefix == run_prefix(tmp_path.as_uri(), "team", "train-120", run.uid)
    assert not asyncio.run(run.finished())
    # runs are listed with their policy version
    table = k8s_cluster.kubectl("get", "rolloutruns", "-n", "team").stdout.splitlines()
    header = table[0].split()
    assert header[:1] == ["NAME"] and "POLICY" in header
    assert table[1].split()[0] == "train-120" and "step-120" in table[1].split()
    with pytest.raises(TimeoutError, match="still Pending"):
        run.wait(timeout_s=0)

    folder = Path(run.run_prefix.removeprefix("file://"))
    asyncio.run(write(folder, 0, [record(0, 0, 1.0), record(0, 1, 0.0)], 1))
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "team", PLURAL, "train-120",
                                                 {"status": {"phase": "Succeeded"}})
    streamed = [(r.row_index, r.sample_index) for r in run.stream(poll_s=0.01)]
    assert streamed == [(0, 0), (0, 1)]
    outcome = run.wait(timeout_s=0)
    assert outcome.ok and outcome.details["phase"] == "Succeeded"


def test_a_run_without_an_output_url_is_refused_before_it_is_created(
        k8s_api: Any) -> None:
    client.ApiextensionsV1Api(k8s_api).create_custom_resource_definition(crd_manifest())
    backend = ClusterBackend(api_client=k8s_api)
    with pytest.raises(ValueError, match=r"set spec.output.url \(or ClusterBackend"):
        backend.submit(_manifest(None))
    found = client.CustomObjectsApi(k8s_api).list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL)
    assert found["items"] == []
    # with the operator's default output URL given, the same manifest is created
    run = ClusterBackend(api_client=k8s_api, output_url="s3://bucket/runs").submit(
        _manifest(None))
    assert run.run_prefix.startswith("s3://bucket/runs/default/train-120-")
