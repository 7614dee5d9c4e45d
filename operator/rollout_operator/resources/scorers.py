"""The scorer servers: a Deployment serving the repo's reward functions and rubrics over the
scoring API, its Service, and a NetworkPolicy that lets only this run's workers in and, out,
only DNS, the bundle's storage and the judge endpoints `spec.scoring.egress` declares.

User code: the pods hold the judge keys of `spec.scoring.secrets` and nothing else (no model
key, no storage or git credential, no service-account token). `rolloutctl serve-scorers`
restarts its server process when a scorer kills it, so a crash costs a second, not a
CrashLoopBackOff.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import SCORER_PORT, SCORERS, WORKERS, RunContext
from rollout_operator.resources.pod_template import (
    REPO_DIR,
    fetch_bundle_container,
    judge_env,
    object_meta,
    pod_spec,
    pod_template,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
)
from rollout_operator.resources.tools import (
    UNENFORCED_HOSTS_ANNOTATION,
    cidr_egress,
    dns_egress,
)
from rollout_operator.runtime.scorer_protocol import HEALTH_PATH

SCORER_CONTAINER = "scorer-server"
PORT_NAME = "scoring"


def _http_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def scorer_server_container(ctx: RunContext) -> dict[str, Any]:
    return sandbox_container(
        ctx,
        name=SCORER_CONTAINER,
        command=["rolloutctl", "serve-scorers", "--repo", REPO_DIR, "--port", str(SCORER_PORT)],
        env=judge_env(ctx),
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=True,
        extra={
            "ports": [{"name": PORT_NAME, "containerPort": SCORER_PORT, "protocol": "TCP"}],
            "startupProbe": _http_probe(period=2, failures=60),
            "readinessProbe": _http_probe(period=5, failures=2),
            "livenessProbe": _http_probe(period=10, failures=6),
        },
    )


def build_scorers_deployment(ctx: RunContext) -> dict[str, Any]:
    spec = pod_spec(
        ctx,
        containers=[scorer_server_container(ctx)],
        init_containers=[fetch_bundle_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Always",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(ctx, SCORERS),
        "spec": {
            "replicas": ctx.spec.sandbox.replicas,
            "selector": {"matchLabels": ctx.selector_labels(SCORERS)},
            "template": pod_template(ctx, SCORERS, spec),
        },
    }


def build_scorers_service(ctx: RunContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, SCORERS),
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels(SCORERS),
            "ports": [{"name": PORT_NAME, "port": SCORER_PORT, "targetPort": PORT_NAME,
                       "protocol": "TCP"}],
        },
    }


def scorers_egress_rules(ctx: RunContext) -> list[dict[str, Any]]:
    """DNS, the storage ranges (the init container fetches the bundle), and the judges'."""
    rules = [dns_egress()]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress]
    rules += [cidr_egress(rule.cidr, list(rule.ports))
              for rule in ctx.spec.scoring.egress if rule.cidr is not None]
    return rules


def build_scorers_network_policy(ctx: RunContext) -> dict[str, Any]:
    metadata = object_meta(ctx, SCORERS)
    hosts = [rule.host for rule in ctx.spec.scoring.egress if rule.host is not None]
    if hosts:
        metadata["annotations"] = {UNENFORCED_HOSTS_ANNOTATION: ",".join(hosts)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": ctx.selector_labels(SCORERS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": ctx.selector_labels(WORKERS)}}],
                    "ports": [{"protocol": "TCP", "port": SCORER_PORT}],
                }
            ],
            "egress": scorers_egress_rules(ctx),
        },
    }
