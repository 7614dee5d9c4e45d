"""A stale reconcile pass against the API stand-in: it cannot write an older status over a
newer one, create a child twice or announce a transition again.

The operator's own reconcile path (handlers/rolloutrun.py) runs in this process, with its real
API client, against the stand-in without controllers; the test plays the Job controller and
hands the pass the indexes Kopf would: fresh ones, or ones that lag behind the API server.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from rollout_operator.api.status import utc_now
from rollout_operator.handlers.indexes import Indexes
from rollout_operator.handlers.kube import KubeApi
from rollout_operator.handlers.memory import Memories
from rollout_operator.handlers.rolloutrun import act, reconcile
from rollout_operator.handlers.secret_names import SecretNames
from rollout_operator.operator_metrics import OperatorMetrics
from rollout_operator.reconcile.decide import Event, RunObject, decide
from rollout_operator.reconcile.observed import observe
from rollout_operator.resources.context import RUN_UID_LABEL
from rollout_operator.settings import OperatorSettings
from tests.k8s.server import EmulatedCluster
from tests.operator.harness import CRD, NAMESPACE, run_manifest

RUNS = "rollouts.dev/v1alpha1/rolloutruns"
KINDS = {"batch/v1/jobs": ("batch/v1", "Job"), "apps/v1/deployments": ("apps/v1", "Deployment"),
         "v1/services": ("v1", "Service"),
         "networking.k8s.io/v1/networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy")}
SYNC_REPORT = {"ok": True, "commit": "0123456789abcdef0123456789abcdef01234567",
               "bundle": "s3://runs/bundles/0123-0000.tar.gz",
               "bundleFetchURL": "https://s3.example.com/runs/bundles/0123-0000.tar.gz?sig=x",
               "datasetRows": 6, "workItems": 12, "problems": []}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(tmp_path / "cluster", controllers=False) as cluster:
        async def setup() -> None:
            emulator = cluster.emulator
            emulator.create_object("apiextensions.k8s.io/v1/customresourcedefinitions",
                                   yaml.safe_load(CRD.read_text()))
            emulator.ensure_namespace(NAMESPACE)
            for name in ("llm-api-key", "rollout-storage"):
                emulator.create_object("v1/secrets", {
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                    "stringData": {"api-key": "k"}}, NAMESPACE)

        cluster.call(setup())
        yield cluster
    assert not cluster.emulator.failures


@pytest.fixture
def memo(cluster: EmulatedCluster) -> Iterator[kopf.Memo]:
    import kubernetes

    config: Any = kubernetes.config
    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api = KubeApi(client)
    memo = kopf.Memo(api=api, settings=OperatorSettings(), secrets=SecretNames(api),
                     memories=Memories(), metrics=OperatorMetrics())
    yield memo
    memo.secrets.close()
    client.close()


def _indexes(cluster: EmulatedCluster, run: dict[str, Any]) -> Indexes:
    """The indexes as Kopf would hold them for `run`, caught up with the stand-in now."""
    uid = run["metadata"]["uid"]
    children = []
    for resource, (api_version, kind) in KINDS.items():
        found = cluster.emulator.list_objects(resource, NAMESPACE, labels=f"{RUN_UID_LABEL}={uid}")
        children.append({uid: [{**o, "apiVersion": api_version, "kind": kind} for o in found]})
    pods = cluster.emulator.list_objects("v1/pods", NAMESPACE, labels=f"{RUN_UID_LABEL}={uid}")
    return Indexes(runs={uid: [run]}, children=tuple(children), pods={uid: pods})


def _lagging(run: dict[str, Any]) -> Indexes:
    """Indexes that still show `run` as it was, and none of its children."""
    uid = run["metadata"]["uid"]
    return Indexes(runs={uid: [run]}, children=({}, {}, {}, {}), pods={})


def _run(cluster: EmulatedCluster) -> dict[str, Any]:
    found = cluster.emulator.get_object(RUNS, "stale", NAMESPACE)
    assert found is not None
    return found


def _finish_sync_job(cluster: EmulatedCluster, uid: str) -> None:
    """What the Job controller and the sync pod would do: a finished pod with its report."""
    (job,) = [j for j in cluster.emulator.list_objects(
        "batch/v1/jobs", NAMESPACE, labels=f"{RUN_UID_LABEL}={uid}")]
    name = job["metadata"]["name"]

    async def finish() -> None:
        emulator = cluster.emulator
        emulator.create_object("v1/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-0-abcde", "labels": {
                RUN_UID_LABEL: uid, "job-name": name,
                "batch.kubernetes.io/job-completion-index": "0"}},
            "spec": {"containers": [{"name": "sync", "image": "x"}]}}, NAMESPACE)
        emulator.patch_object("v1/pods", f"{name}-0-abcde", {"status": {
            "phase": "Succeeded", "containerStatuses": [{"name": "sync", "state": {
                "terminated": {"exitCode": 0, "message": json.dumps(SYNC_REPORT)}}}]}},
            NAMESPACE, subresource="status")
        emulator.patch_object("batch/v1/jobs", name, {"status": {
            "succeeded": 1, "completedIndexes": "0", "conditions": [
                {"type": "Complete", "status": "True"}]}}, NAMESPACE, subresource="status")

    cluster.call(finish())


def _children(cluster: EmulatedCluster, uid: str) -> list[tuple[str, str]]:
    return sorted((kind, o["metadata"]["name"]) for resource, (_, kind) in KINDS.items()
                  for o in cluster.emulator.list_objects(resource, NAMESPACE,
                                                         labels=f"{RUN_UID_LABEL}={uid}"))


def test_a_stale_pass_neither_overwrites_a_newer_status_nor_duplicates_a_child(
        cluster: EmulatedCluster, memo: kopf.Memo) -> None:
    logger = logging.getLogger("test")
    announced: list[str] = []

    def announce(_body: kopf.Body, event: Event) -> None:
        announced.append(event.reason)

    manifest = run_manifest("stale", "https://git.example.com/team/calculator.git",
                            "https://llm.example.com/v1", "s3://runs/out",
                            "https://s3.example.com")
    created = cluster.call(_create(cluster, manifest))
    uid = created["metadata"]["uid"]

    # Two passes on fresh indexes: the sync Job, then, once it reported, the inspection.
    reconcile(uid, memo, logger, "create", _indexes(cluster, _run(cluster)), announce)
    _finish_sync_job(cluster, uid)
    reconcile(uid, memo, logger, "child", _indexes(cluster, _run(cluster)), announce)
    newer = _run(cluster)
    assert newer["status"]["phase"] == "Syncing" and newer["status"]["commit"]
    assert [(c["type"], c["reason"]) for c in newer["status"]["conditions"]
            if c["type"] == "Synced"] == [("Synced", "Inspecting")]
    children = _children(cluster, uid)
    assert [kind for kind, _ in children] == ["Job", "Job", "NetworkPolicy"]
    assert announced == ["Syncing", "Inspecting"]
    calls = len(cluster.emulator.calls)

    # A pass that was decided on the run as it was created, and acts only now: its status
    # patch meets a 409, and it creates and announces nothing.
    stale = RunObject.from_body(created)
    decision = decide(stale, observe([], [], {"llm-api-key", "rollout-storage"}),
                      memo.settings, utc_now())
    assert decision.create and decision.status is not None and decision.events
    assert not act(memo.api, memo.memories.of(uid), stale, created, decision, logger,
                   memo.metrics, announce)
    assert [(c.verb, c.subresource) for c in cluster.emulator.calls[calls:]] == [
        ("patch", "status")]

    # A whole pass on indexes that lag behind (the run as created, no children), in a process
    # that remembers nothing it wrote (another replica, or one restarted): it reads the run
    # again on the 409, decides on what is there, and leaves it as it is.
    fresh_memo = kopf.Memo({**memo, "memories": Memories()})
    reconcile(uid, fresh_memo, logger, "timer", _lagging(created), announce)
    after = _run(cluster)
    assert after["status"] == newer["status"]
    assert _children(cluster, uid) == children
    assert announced == ["Syncing", "Inspecting"]
    verbs = [(c.verb, c.resource) for c in cluster.emulator.calls[calls + 1:]]
    assert verbs == [("patch", "rolloutruns"), ("list", "rolloutruns"), ("list", "jobs"),
                     ("list", "deployments"), ("list", "services"), ("list", "networkpolicies"),
                     ("list", "pods")]  # a 409, then read again: nothing to write or create


async def _create(cluster: EmulatedCluster, manifest: dict[str, Any]) -> dict[str, Any]:
    return cluster.emulator.create_object(RUNS, manifest, NAMESPACE)




def test_a_finished_job_whose_pods_the_index_lacks_is_read_from_the_api(
        cluster: EmulatedCluster, memo: kopf.Memo) -> None:
    """The pod watch runs behind the Job watch: a Job shows Complete before its pod's report
    arrives. The pass reads the pods rather than fail the run for a Job without a report."""
    logger = logging.getLogger("test")
    announced: list[str] = []
    manifest = run_manifest("stale", "https://git.example.com/team/calculator.git",
                            "https://llm.example.com/v1", "s3://runs/out",
                            "https://s3.example.com")
    uid = cluster.call(_create(cluster, manifest))["metadata"]["uid"]
    reconcile(uid, memo, logger, "create", _indexes(cluster, _run(cluster)),
              lambda _body, event: announced.append(event.reason))
    _finish_sync_job(cluster, uid)
    behind = dataclasses.replace(_indexes(cluster, _run(cluster)), pods={})
    reconcile(uid, memo, logger, "child", behind,
              lambda _body, event: announced.append(event.reason))
    status = _run(cluster)["status"]
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Synced", "False", "Inspecting")]
    assert announced == ["Syncing", "Inspecting"]
