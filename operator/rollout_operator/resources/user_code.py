"""What the pods that run a repo's code share: the server container with its probes, the
Deployment and Service of a user-code server, and NetworkPolicies that let only the run's
workers in and, out, only DNS and the destinations given.

User-code pods hold no credential (scorer pods: the judge keys only); their init container
fetches the bundle through its signed URL (`fetch_bundle_container`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rollout_operator.resources.context import WORKERS, RunContext
from rollout_operator.resources.pod_template import (
    fetch_bundle_container,
    object_meta,
    pod_spec,
    pod_template,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
)

HEALTH_PATH = "/health"
DNS_PORT = 53
UNENFORCED_HOSTS_ANNOTATION = "rollouts.dev/egress-hosts-not-enforced"


def http_probe(port_name: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": HEALTH_PATH, "port": port_name},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def server_container(ctx: RunContext, *, name: str, command: Sequence[str], port: int,
                     port_name: str, env: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A server of the repo's code on `port`, probed at `/health`, the repo read-only."""
    return sandbox_container(
        ctx,
        name=name,
        command=command,
        env=env,
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=True,
        extra={
            "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
            # Importing a repo's code may take a while; give it two minutes before liveness.
            "startupProbe": http_probe(port_name, period=2, failures=60),
            "readinessProbe": http_probe(port_name, period=5, failures=2),
            "livenessProbe": http_probe(port_name, period=10, failures=6),
        },
    )


def server_deployment(ctx: RunContext, component: str,
                      container: Mapping[str, Any]) -> dict[str, Any]:
    spec = pod_spec(
        ctx,
        containers=[container],
        init_containers=[fetch_bundle_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Always",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(ctx, component),
        "spec": {
            "replicas": ctx.spec.sandbox.replicas,
            "selector": {"matchLabels": ctx.selector_labels(component)},
            "template": pod_template(ctx, component, spec),
        },
    }


def server_service(ctx: RunContext, component: str, port: int, port_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(ctx, component),
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels(component),
            "ports": [
                {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
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


def server_network_policy(ctx: RunContext, component: str, *, port: int | None,
                          egress: list[dict[str, Any]], hosts: Sequence[str] = ()
                          ) -> dict[str, Any]:
    """The policy of a component's pods: ingress only from the run's workers on `port` (none
    when None), egress only `egress`. Host names, which a NetworkPolicy cannot allow, are
    listed in an annotation."""
    metadata = object_meta(ctx, component)
    if hosts:
        metadata["annotations"] = {UNENFORCED_HOSTS_ANNOTATION: ",".join(hosts)}
    ingress = [] if port is None else [{
        "from": [{"podSelector": {"matchLabels": ctx.selector_labels(WORKERS)}}],
        "ports": [{"protocol": "TCP", "port": port}],
    }]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": ctx.selector_labels(component)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }
