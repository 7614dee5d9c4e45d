"""The worker Indexed Job: one index per shard, each running many agent loops at once.

A failed index is retried alone (`backoffLimitPerIndex`) and resumes after the rollouts it has
already committed. Workers are trusted: they never import the repo (its scorers run in the
scorer servers, reached at the run config's `scorer_url`), but they unpack the bundle with the
storage credentials to read the dataset in it. They get the model key, the storage credentials
and the judge keys (only to scrub them from what they write).

With `spec.scheduling.queueName` the Job carries Kueue's queue label and is created suspended:
Kueue starts it when it admits it, and the operator never unsuspends it itself.
"""

from __future__ import annotations

from typing import Any

from rollout_operator.resources.context import WORKERS, RunContext
from rollout_operator.resources.placement import queue_labels, run_scheduling
from rollout_operator.resources.pod_template import (
    job_manifest,
    judge_env,
    model_env,
    pod_failure_policy,
    pod_spec,
    sandbox_container,
    sandbox_resources,
    scratch_volumes,
    storage_env,
    unpack_bundle_container,
)
from rollout_operator.resources.rollout_server import worker_env as rollout_worker_env
from rollout_operator.resources.rollout_server import worker_ports

WORKER_CONTAINER = "worker"


def worker_container(ctx: RunContext) -> dict[str, Any]:
    return sandbox_container(
        ctx,
        name=WORKER_CONTAINER,
        command=["rolloutctl", "work"],
        env=[*model_env(ctx), *judge_env(ctx), *storage_env(ctx), *rollout_worker_env(ctx)],
        resources=sandbox_resources(ctx, ctx.spec.workers.resources),
        workspace_read_only=True,
        extra=worker_ports(ctx),
    )


def build_worker_job(ctx: RunContext) -> dict[str, Any]:
    workers = ctx.spec.workers
    deadline = ctx.settings.worker_deadline_seconds
    spec = pod_spec(
        ctx,
        containers=[worker_container(ctx)],
        init_containers=[unpack_bundle_container(ctx)],
        volumes=scratch_volumes(ctx, workspace=True),
        restart_policy="Never",
        deadline_seconds=deadline,
    )
    queue = queue_labels(run_scheduling(ctx))
    job = job_manifest(
        ctx,
        WORKERS,
        spec,
        job_spec={
            "completionMode": "Indexed",
            "completions": workers.shards,
            "parallelism": min(workers.parallelism or workers.shards, workers.shards),
            "backoffLimitPerIndex": workers.backoff_limit_per_index,
            "activeDeadlineSeconds": deadline,
            # A queued Job is created suspended; Kueue unsuspends it when it admits it.
            "suspend": ctx.spec.suspend or bool(queue),
            "podFailurePolicy": pod_failure_policy(WORKER_CONTAINER, on_config_error="FailIndex"),
        },
    )
    job["metadata"]["labels"].update(queue)
    return job
