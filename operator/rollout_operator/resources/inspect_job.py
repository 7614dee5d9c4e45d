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
    job_manifest,
    pod_failure_policy,
    pod_spec,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
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
    deadline = ctx.settings.sync_deadline_seconds
    spec = pod_spec(
        ctx,
        containers=[inspect_container(ctx)],
        init_containers=[fetch_bundle_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Never",
        deadline_seconds=deadline,
    )
    return job_manifest(
        ctx,
        INSPECT,
        spec,
        job_spec={
            "backoffLimit": INSPECT_BACKOFF_LIMIT,
            "activeDeadlineSeconds": deadline,
            "podFailurePolicy": pod_failure_policy(INSPECT_CONTAINER, on_config_error="FailJob"),
        },
    )


def build_inspect_network_policy(ctx: RunContext) -> dict[str, Any]:
    """Nothing in; out only DNS and the storage ranges the bundle is fetched from."""
    egress = [dns_egress(), *(cidr_egress(cidr, []) for cidr in ctx.settings.storage_egress)]
    return server_network_policy(ctx, INSPECT, port=None, egress=egress)
