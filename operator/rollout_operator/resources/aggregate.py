"""The aggregate Job: read every committed part, write results.json, summarise.

Its termination message (JSON summary per scorer, counts, artifact URLs) becomes the run's
status summary.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import AGGREGATE, RunContext
from rollout_operator.resources.pod_template import (
    run_once_job,
    sandbox_container,
    sandbox_resources,
    storage_env,
)

AGGREGATE_CONTAINER = "aggregate"
AGGREGATE_BACKOFF_LIMIT = 6
"""The aggregate only reads parts and rewrites its own files, so running it again is harmless:
with Kubernetes' pod back-off (10 s, doubling, at most 6 min) six retries wait out about ten
minutes of storage trouble instead of failing a run whose records are all stored. A
configuration error (exit 2) still fails it at once (podFailurePolicy)."""


def aggregate_container(ctx: RunContext) -> dict[str, Any]:
    """Reads and writes object storage only; it runs no user code."""
    return sandbox_container(
        ctx,
        name=AGGREGATE_CONTAINER,
        command=["rolloutctl", "aggregate"],
        env=storage_env(ctx),
        resources=sandbox_resources(ctx, ctx.spec.workers.resources),
        workspace_read_only=None,
    )


def build_aggregate_job(ctx: RunContext) -> dict[str, Any]:
    return run_once_job(
        ctx,
        AGGREGATE,
        aggregate_container(ctx),
        deadline_seconds=ctx.settings.aggregate_deadline_seconds,
        backoff_limit=AGGREGATE_BACKOFF_LIMIT,
        workspace=False,
    )
