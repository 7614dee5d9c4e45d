"""Two operator replicas started with the chart's arguments: only the higher-priority one acts.

Both run as real `rolloutctl operator` processes against the API stand-in, with Kopf's peering
CRDs as the chart renders them for replicaCount > 1. Each derives its priority from its pod name
(`--priority=auto`); the other pauses, and the run is carried through by one replica alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rollout_operator.handlers.peering import auto_priority
from tests.chart.render import load_chart, of_kind, one, render
from tests.k8s.server import wait_for
from tests.operator.harness import Harness, OperatorProcess, make_repo, run_manifest
from tests.support.loopback import HOST, free_port

pytestmark = pytest.mark.slow

PODS = ("rollout-operator-5c8d7-aaaaa", "rollout-operator-5c8d7-bbbbb")


def _replica(harness: Harness, args: list[str], pod: str, log: Path) -> OperatorProcess:
    args = [f"--liveness=http://{HOST}:{free_port()}/healthz" if a.startswith("--liveness=")
            else a for a in args if not a.startswith("--metrics-address=")]
    return OperatorProcess({**harness.operator_env, "POD_ID": pod}, log, serve_metrics=False,
                           args=args)


def _created_children(log: str) -> bool:
    return any(f"Created {kind} " in log for kind in ("Job", "Deployment", "Service",
                                                       "NetworkPolicy"))


def test_only_the_higher_priority_replica_acts(harness: Harness, tmp_path: Path) -> None:
    manifests = render(load_chart(), {"replicaCount": 2})
    for crd in of_kind(manifests, "CustomResourceDefinition"):
        if crd["spec"]["group"] == "kopf.dev":
            harness.cluster.kubectl("apply", "--validate=false", "-f", "-",
                                    input=yaml.safe_dump(crd))
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    harness.operator.stop()
    leader_pod, follower_pod = sorted(PODS, key=auto_priority, reverse=True)
    leader = _replica(harness, container["args"][1:], leader_pod, tmp_path / "leader.log")
    follower = _replica(harness, container["args"][1:], follower_pod, tmp_path / "follower.log")
    follower.start()
    leader.start()
    try:
        def peers() -> dict[str, int]:
            listed = harness.cluster.kubectl("get", "clusterkopfpeerings", "-o", "yaml").stdout
            items = yaml.safe_load(listed)["items"]
            status = (items[0].get("status") or {}) if items else {}
            return {pod: entry["priority"] for pod, entry in status.items()}

        wait_for(lambda: len(peers()) == 2, 30, interval=0.2, message="both replicas to peer")
        assert peers() == {pod: auto_priority(pod) for pod in PODS}

        repo = make_repo(tmp_path / "repo")
        harness.apply(run_manifest("first", repo, harness.model_url, harness.bucket,
                                   harness.s3.endpoint, rows=4, samples=1, shards=1))
        assert harness.wait_phase("first", ("Succeeded", "Failed"))["status"]["phase"] == (
            "Succeeded")
        assert "Created Job" in leader.log
        assert not _created_children(follower.log), "the paused replica created children"
        assert "Pausing operations" not in leader.log

        # The leader goes (a rolling update, a drained node): it leaves the peering at once,
        # and the other replica takes the next run over.
        seen = len(follower.log)
        leader.stop()
        wait_for(lambda: "Resuming operations" in follower.log[seen:], 30, interval=0.2,
                 message="the remaining replica to resume")
        harness.apply(run_manifest("second", repo, harness.model_url, harness.bucket,
                                   harness.s3.endpoint, rows=4, samples=1, shards=1))
        assert harness.wait_phase("second", ("Succeeded", "Failed"))["status"]["phase"] == (
            "Succeeded")
        assert "Created Job second-sync" in follower.log
    finally:
        leader.stop()
        follower.stop()
