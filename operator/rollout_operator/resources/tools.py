"""The tool servers: a Deployment serving the repo's `mcp/main.py`, its Service, and a
NetworkPolicy that lets only this run's workers in and almost nothing out.

User code: the pods hold no credential at all. The init container fetches the bundle through
its signed URL; the server container runs the repo's tools on a read-only copy.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import TOOL_PORT, TOOLS, RunContext
from rollout_operator.resources.pod_template import REPO_DIR
from rollout_operator.resources.user_code import (
    UNENFORCED_HOSTS_ANNOTATION,
    cidr_egress,
    dns_egress,
    server_container,
    server_deployment,
    server_network_policy,
    server_service,
)

TOOL_CONTAINER = "tool-server"
PORT_NAME = "mcp"
__all__ = ["UNENFORCED_HOSTS_ANNOTATION", "build_tools_deployment", "build_tools_network_policy",
           "build_tools_service", "tool_server_container", "tools_egress_rules"]


def tool_server_container(ctx: RunContext) -> dict[str, Any]:
    return server_container(
        ctx, name=TOOL_CONTAINER,
        command=["rolloutctl", "serve-tools", "--repo", REPO_DIR, "--port", str(TOOL_PORT)],
        port=TOOL_PORT, port_name=PORT_NAME,
    )


def build_tools_deployment(ctx: RunContext) -> dict[str, Any]:
    return server_deployment(ctx, TOOLS, tool_server_container(ctx))


def build_tools_service(ctx: RunContext) -> dict[str, Any]:
    return server_service(ctx, TOOLS, TOOL_PORT, PORT_NAME)


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
    return server_network_policy(ctx, TOOLS, port=TOOL_PORT, egress=tools_egress_rules(ctx),
                                 hosts=unenforced_egress_hosts(ctx))
