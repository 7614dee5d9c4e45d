"""The sync Job: clone the repo at its revision, check it without running it, and upload the
bundle.

Its termination message (JSON: commit, bundle URL, the bundle's signed URL, dataset size,
problems) is what the operator reads before it starts the inspection Job, or to fail the run.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import SYNC, RunContext
from rollout_operator.resources.pod_template import (
    WORKSPACE_DIR,
    git_env,
    run_once_job,
    sandbox_container,
    sandbox_resources,
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
    return run_once_job(
        ctx,
        SYNC,
        sync_container(ctx),
        deadline_seconds=ctx.settings.sync_deadline_seconds,
        backoff_limit=SYNC_BACKOFF_LIMIT,
        workspace=True,
    )
