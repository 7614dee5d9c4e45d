"""The tool servers: a Deployment serving the repo's `mcp/main.py`, its Service, and a
NetworkPolicy that lets only this run's workers in and almost nothing out.

User code: the pods hold no credential at all. The init container fetches the bundle through
its signed URL; the server container runs the repo's tools on a read-only copy.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import TOOL_PORT, TOOLS, WORKERS, RunContext
from rollout_operator.resources.pod_template import (
    REPO_DIR,
    fetch_bundle_container,
    object_meta,
    pod_spec,
    pod_template,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
)

TOOL_CONTAINER = "tool-server"
HEALTH_PATH = "/health"
PORT_NAME = "mcp"
DNS_PORT = 53
UNENFORCED_HOSTS_ANNOTATION = "rollouts.dev/egress-hosts-not-enforced"


def _http_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def tool_server_container(ctx: RunContext) -> dict[str, Any]:
    return sandbox_container(
        ctx,
        name=TOOL_CONTAINER,
        command=["rolloutctl", "serve-tools", "--repo", REPO_DIR, "--port", str(TOOL_PORT)],
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=True,
        extra={
            "ports": [{"name": PORT_NAME, "containerPort": TOOL_PORT, "protocol": "TCP"}],
            # Importing a repo's tools may take a while; give it two minutes before liveness.
            "startupProbe": _http_probe(period=2, failures=60),
            "readinessProbe": _http_probe(period=5, failures=2),
            "livenessProbe": _http_probe(period=10, failures=6),
        },
    )


def build_tools_deployment(ctx: RunContext) -> dict[str, Any]:
    spec = pod_spec(
        ctx,
        containers=[tool_server_container(ctx)],
        init_containers=[fetch_bundle_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Always",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(ctx, TOOLS),
        "spec": {
            "replicas": ctx.spec.sandbox.replicas,
            "selector": {"matchLabels": ctx.selector_labels(TOOLS)},
            "template": pod_template(ctx, TOOLS, spec),
        },
    }


def build_tools_service(ctx: RunContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, TOOLS),
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels(TOOLS),
            "ports": [
                {"name": PORT_NAME, "port": TOOL_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def dns_egress() -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [
            {"protocol": "UDP", "port": DNS_PORT},
            {"protocol": "TCP", "port": DNS_PORT},
        ],
    }


def cidr_egress(cidr: str, ports: list[int]) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": cidr}}]}
    if ports:
        rule["ports"] = [{"protocol": "TCP", "port": port} for port in ports]
    return rule


def tools_egress_rules(ctx: RunContext) -> list[dict[str, Any]]:
    """DNS, the operator's default and storage ranges, and the run's own CIDR rules.

    A NetworkPolicy cannot name hosts, so `host` rules are left out here (see the annotation).
    """
    rules = [dns_egress()]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.default_egress]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress]
    rules += [
        cidr_egress(rule.cidr, list(rule.ports))
        for rule in ctx.spec.sandbox.egress
        if rule.cidr is not None
    ]
    return rules


def unenforced_egress_hosts(ctx: RunContext) -> list[str]:
    """Host names in spec.sandbox.egress, which a standard NetworkPolicy cannot allow."""
    return [rule.host for rule in ctx.spec.sandbox.egress if rule.host is not None]


def build_tools_network_policy(ctx: RunContext) -> dict[str, Any]:
    metadata = object_meta(ctx, TOOLS)
    hosts = unenforced_egress_hosts(ctx)
    if hosts:
        metadata["annotations"] = {UNENFORCED_HOSTS_ANNOTATION: ",".join(hosts)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": ctx.selector_labels(TOOLS)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": ctx.selector_labels(WORKERS)}}],
                    "ports": [{"protocol": "TCP", "port": TOOL_PORT}],
                }
            ],
            "egress": tools_egress_rules(ctx),
        },
    }
