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

from rollout_operator.resources.context import SCORER_PORT, SCORERS, RunContext
from rollout_operator.resources.pod_template import REPO_DIR, judge_env
from rollout_operator.resources.user_code import (
    cidr_egress,
    dns_egress,
    server_container,
    server_deployment,
    server_network_policy,
    server_service,
)

SCORER_CONTAINER = "scorer-server"
PORT_NAME = "scoring"


def scorer_server_container(ctx: RunContext) -> dict[str, Any]:
    return server_container(
        ctx, name=SCORER_CONTAINER,
        command=["rolloutctl", "serve-scorers", "--repo", REPO_DIR, "--port", str(SCORER_PORT)],
        port=SCORER_PORT, port_name=PORT_NAME, env=judge_env(ctx),
    )


def build_scorers_deployment(ctx: RunContext) -> dict[str, Any]:
    return server_deployment(ctx, SCORERS, scorer_server_container(ctx))


def build_scorers_service(ctx: RunContext) -> dict[str, Any]:
    return server_service(ctx, SCORERS, SCORER_PORT, PORT_NAME)


def scorers_egress_rules(ctx: RunContext) -> list[dict[str, Any]]:
    """DNS, the storage ranges (the init container fetches the bundle), and the judges'."""
    rules = [dns_egress()]
    rules += [cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress]
    rules += [cidr_egress(rule.cidr, list(rule.ports))
              for rule in ctx.spec.scoring.egress if rule.cidr is not None]
    return rules


def build_scorers_network_policy(ctx: RunContext) -> dict[str, Any]:
    hosts = [rule.host for rule in ctx.spec.scoring.egress if rule.host is not None]
    return server_network_policy(ctx, SCORERS, port=SCORER_PORT,
                                 egress=scorers_egress_rules(ctx), hosts=hosts)
