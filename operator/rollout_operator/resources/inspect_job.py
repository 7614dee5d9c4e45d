"""The inspection Job: import the bundle on the user-code side and report its tools and scorers.

Its pod holds no credential and no token, may reach nothing but DNS and the bundle's storage
(a NetworkPolicy with no ingress), and reports an `InspectionReport` in its termination
message, which the operator reads to mark the run Synced or Failed. The trusted sync Job never
imports the repo.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import INSPECT, RunContext
from rollout_operator.resources.pod_template import (
    REPO_DIR,
    fetch_bundle_container,
    run_once_job,
    sandbox_container,
    sandbox_resources,
)
from rollout_operator.resources.user_code import cidr_egress, dns_egress, server_network_policy

INSPECT_CONTAINER = "inspect"
INSPECT_BACKOFF_LIMIT = 2


def inspect_container(ctx: RunContext) -> dict[str, Any]:
    command = ["rolloutctl", "inspect", "--repo", REPO_DIR]
    for ref in ctx.spec.scoring.functions or []:
        command += ["--scorer", ref]
    return sandbox_container(
        ctx,
        name=INSPECT_CONTAINER,
        command=command,
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=True,
    )


def build_inspect_job(ctx: RunContext) -> dict[str, Any]:
    return run_once_job(
        ctx,
        INSPECT,
        inspect_container(ctx),
        deadline_seconds=ctx.settings.sync_deadline_seconds,
        backoff_limit=INSPECT_BACKOFF_LIMIT,
        workspace=True,
        init_containers=[fetch_bundle_container(ctx)],
    )


def build_inspect_network_policy(ctx: RunContext) -> dict[str, Any]:
    """Nothing in; out only DNS and the storage ranges the bundle is fetched from."""
    egress = [dns_egress(), *(cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress)]
    return server_network_policy(ctx, INSPECT, port=None, egress=egress)
