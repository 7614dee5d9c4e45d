"""The sync Job: clone the repo at its revision, validate it, and upload the bundle.

Its termination message (JSON: commit, bundle URL, tools, scorers, problems) is what the
operator reads to mark the run Synced or Failed.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import SYNC, RunContext
from rollout_operator.resources.pod_template import (
    WORKSPACE_DIR,
    git_env,
    job_manifest,
    pod_failure_policy,
    pod_spec,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
    storage_env,
)

SYNC_CONTAINER = "sync"
SYNC_BACKOFF_LIMIT = 2


def sync_container(ctx: RunContext) -> dict[str, Any]:
    """Clones and builds the bundle in /workspace (large, unlike /tmp); gets the clone
    credentials and the storage credentials."""
    return sandbox_container(
        ctx,
        name=SYNC_CONTAINER,
        command=["rolloutctl", "sync", "--workdir", WORKSPACE_DIR],
        env=[*git_env(ctx), *storage_env(ctx)],
        resources=sandbox_resources(ctx, ctx.spec.sandbox.resources),
        workspace_read_only=False,
    )


def build_sync_job(ctx: RunContext) -> dict[str, Any]:
    deadline = ctx.settings.sync_deadline_seconds
    spec = pod_spec(
        ctx,
        containers=[sync_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Never",
        deadline_seconds=deadline,
    )
    return job_manifest(
        ctx,
        SYNC,
        spec,
        job_spec={
            "backoffLimit": SYNC_BACKOFF_LIMIT,
            "activeDeadlineSeconds": deadline,
            "podFailurePolicy": pod_failure_policy(SYNC_CONTAINER, on_config_error="FailJob"),
        },
    )
