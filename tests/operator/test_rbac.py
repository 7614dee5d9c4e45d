"""The chart's RBAC against the API calls the operator really makes.

A run goes through its whole life (sync, tools, workers, a suspend and a resume, aggregate,
deletion by ttlSecondsAfterFinished) with `rolloutctl operator` as a real process; the API
stand-in records every request with its user agent. Every request of the operator (Kopf's and
its own) must be allowed by the rules the chart renders for that mode, and every permission the
rules grant must have been used by some request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.handlers.kube import USER_AGENT
from tests.chart.rbac import Authorizer, used_by
from tests.chart.render import load_chart, of_kind, one, render
from tests.k8s.http_api import ApiCall
from tests.k8s.server import wait_for
from tests.operator.harness import (
    KUEUE_WORKLOAD_CRD,
    NAMESPACE,
    Harness,
    make_repo,
    run_manifest,
)
from tests.support.loopback import HOST, free_port

pytestmark = pytest.mark.slow

OPERATOR_AGENTS = ("kopf/", USER_AGENT.split("/")[0] + "/")


def _operator_calls(harness: Harness) -> list[ApiCall]:
    calls = [c for c in harness.cluster.emulator.calls if c.user_agent.startswith(OPERATOR_AGENTS)]
    assert any(c.user_agent == USER_AGENT for c in calls), "no request of the operator's own"
    assert any(c.user_agent.startswith("kopf/") for c in calls), "no request of Kopf's"
    return calls


def _run_through_a_whole_life(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    manifest = run_manifest("rbac", repo, harness.model_url, harness.bucket,
                            harness.s3.endpoint, model="scripted:sleep-300", rows=6, samples=2,
                            shards=2)
    manifest["spec"]["workers"]["concurrency"] = 1
    harness.apply(KUEUE_WORKLOAD_CRD)  # a cluster with Kueue: its Workloads are listed
    harness.apply(run_manifest("rbac-queued", repo, harness.model_url, harness.bucket,
                               harness.s3.endpoint, rows=2, samples=1, shards=1,
                               scheduling={"queueName": "team-a"}))
    harness.apply(manifest)
    _suspend_while_queued(harness, "rbac-queued")
    harness.wait_phase("rbac", ("Running",))
    for suspend, phase in ((True, "Suspended"), (False, "Running")):
        harness.cluster.kubectl("-n", NAMESPACE, "patch", "rolloutrun", "rbac", "--type=merge",
                                "-p", json.dumps({"spec": {"suspend": suspend}}))
        harness.wait_phase("rbac", (phase, "Succeeded") if not suspend else (phase,))
    run = harness.wait_phase("rbac", ("Succeeded",))
    uid = run["metadata"]["uid"]
    harness.cluster.kubectl("-n", NAMESPACE, "patch", "rolloutrun", "rbac", "--type=merge",
                            "-p", json.dumps({"spec": {"ttlSecondsAfterFinished": 0}}))

    def gone() -> bool:
        listed = harness.cluster.kubectl("-n", NAMESPACE, "get", "rolloutruns", "-o", "json")
        return not json.loads(listed.stdout)["items"] and not harness.children(uid)

    wait_for(gone, 60, interval=0.3, message="the run deleted by its TTL, with its children")


def _suspend_while_queued(harness: Harness, name: str) -> None:
    """A run suspended while Kueue holds its worker Job: the operator asks Kueue's Workloads
    why it waits, then deletes the Job (Kueue would resume a Job it admitted that someone else
    suspends); then the run goes."""
    def workers() -> list[dict[str, Any]]:
        done = harness.cluster.kubectl("-n", NAMESPACE, "get", "jobs", "-o", "json", "-l",
                                       f"rollouts.dev/run={name},rollouts.dev/component=workers")
        return list(json.loads(done.stdout)["items"])

    def seen_waiting() -> bool:
        # observed suspended, after the reconcile that created it: Kueue's Workloads are asked
        conditions = (harness.get(name).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Queued" and " waits in Kueue LocalQueue " in c["message"]
                   for c in conditions)

    wait_for(seen_waiting, 150, interval=0.3, message=f"the queued worker Job of {name}")
    harness.cluster.kubectl("-n", NAMESPACE, "patch", "rolloutrun", name, "--type=merge",
                            "-p", json.dumps({"spec": {"suspend": True}}))
    harness.wait_phase(name, ("Suspended",))
    wait_for(lambda: not workers(), 30, interval=0.3, message=f"the worker Job of {name} gone")
    harness.cluster.kubectl("-n", NAMESPACE, "delete", "rolloutrun", name)


def _check(authorizer: Authorizer, calls: list[ApiCall]) -> None:
    denied = sorted({(c.verb, c.group, c.rbac_resource, c.namespace or "<cluster>")
                     for c in calls if not authorizer.allows(c)})
    assert denied == [], f"the chart's rules deny requests the operator makes: {denied}"
    unused = sorted((g.verb, g.group, g.resource, g.namespace or "<cluster>")
                    for g in authorizer.grants() if not used_by(g, calls))
    assert unused == [], f"the chart grants what the operator never uses: {unused}"


def test_cluster_wide_rules_are_exactly_what_the_operator_uses(
    harness: Harness, tmp_path: Path
) -> None:
    manifests = render(load_chart(), {})
    _run_through_a_whole_life(harness, tmp_path)
    _check(Authorizer.from_manifests(manifests), _operator_calls(harness))


def _chart_args(manifests: list[dict[str, Any]]) -> list[str]:
    """The operator's arguments as the chart's Deployment sets them, on loopback ports."""
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    args: list[str] = []
    for arg in container["args"][1:]:
        if arg.startswith("--liveness="):
            arg = f"--liveness=http://{HOST}:{free_port()}/healthz"
        elif arg.startswith("--metrics-address="):
            continue  # the harness serves metrics on a free port of its own
        args.append(arg)
    return args


def test_namespaced_rules_with_peering_are_exactly_what_the_operator_uses(
    harness: Harness, tmp_path: Path
) -> None:
    manifests = render(load_chart(), {"replicaCount": 2, "watch": {"namespaces": [NAMESPACE]}})
    for crd in of_kind(manifests, "CustomResourceDefinition"):
        if crd["spec"]["group"] == "kopf.dev":
            harness.cluster.kubectl("apply", "--validate=false", "-f", "-",
                                    input=yaml.safe_dump(crd))
    harness.operator.stop()
    harness.cluster.emulator.calls.clear()
    harness.operator.args = _chart_args(manifests)
    harness.operator.env = {**harness.operator.env, "POD_ID": "rollout-operator-7d9f-abcde"}
    assert "--peering" in harness.operator.args
    harness.operator.start()

    _run_through_a_whole_life(harness, tmp_path)
    calls = _operator_calls(harness)
    assert any(c.resource == "kopfpeerings" and c.namespace == NAMESPACE for c in calls)
    _check(Authorizer.from_manifests(manifests), calls)
    peering = json.loads(harness.cluster.kubectl(
        "-n", NAMESPACE, "get", "kopfpeerings", "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in peering] == ["ro-rollout-operator"]
    assert "rollout-operator-7d9f-abcde" in (peering[0].get("status") or {})
