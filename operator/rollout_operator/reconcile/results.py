"""Copy what the pods report in their termination messages into the run's status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rollout_operator.api.status import (
    Artifacts,
    OutageSeconds,
    Progress,
    RolloutRunStatus,
    ScorerSummary,
    ServerRestarts,
    TrajectorySample,
)
from rollout_operator.reconcile.observed import DeploymentState, JobState
from rollout_operator.runtime.inspection import InspectionReport
from rollout_operator.runtime.outage import OUTAGE_SECONDS_KEY


def apply_sync(status: RolloutRunStatus, message: Mapping[str, Any]) -> None:
    """The sync Job's report: commit, bundle, dataset size (its signed bundle URL is not
    status: it is read from the Job's pod when a user-code pod is built)."""
    status.commit = message.get("commit")
    status.bundle = message.get("bundle")
    rows = message.get("workItems", message.get("datasetRows"))
    if isinstance(rows, int):
        status.progress = Progress.from_counts(total=rows, completed=0)


def apply_inspection(status: RolloutRunStatus, report: InspectionReport) -> None:
    """The inspection Job's report: the bundle's tools, scorers and FastMCP version."""
    status.fastmcp_version = report.fastmcp_version
    status.tools = list(report.tools)
    status.scorers = list(report.scorers)


def shard_progress(previous: Progress | None, job: JobState) -> Progress:
    """Rollouts done so far, from the finished shards' reports.

    A report's `done` counts every rollout the attempt ran, failed, masked and invalid ones
    included; `skipped` ones were committed by an earlier attempt and count as completed until
    the aggregate step reads their records.
    """
    done = failed = masked = invalid = 0
    for message in job.messages.values():
        done += int(message.get("done") or 0) + int(message.get("skipped") or 0)
        failed += int(message.get("failed") or 0)
        masked += int(message.get("masked") or 0)
        invalid += int(message.get("invalid") or 0)
    total = previous.total if previous else 0
    return Progress.from_counts(total=max(total, done),
                                completed=done - failed - masked - invalid,
                                failed=failed, masked=masked, invalid=invalid)


def server_restarts(previous: ServerRestarts | None, tools: DeploymentState | None,
                    scorers: DeploymentState | None, workers: JobState | None
                    ) -> ServerRestarts | None:
    """Restarts of the user-code servers: the tool pods' container restarts, and for scorers
    the most restarts of the scorer process any shard saw (its supervisor restarts it in the
    container) plus the scorer pods' container restarts. Never lower than before (pods that
    were replaced take their counts with them). None while there were none."""
    seen_by_workers = max((int(m.get("scorerRestarts") or 0)
                           for m in (workers.messages.values() if workers else ())), default=0)
    tools_now = tools.restarts if tools else 0
    scorers_now = seen_by_workers + (scorers.restarts if scorers else 0)
    if previous is not None:
        tools_now = max(tools_now, previous.tools)
        scorers_now = max(scorers_now, previous.scorers)
    if not (tools_now or scorers_now):
        return previous
    return ServerRestarts(tools=tools_now, scorers=scorers_now)


def outage_seconds(previous: OutageSeconds | None, messages: Iterable[Mapping[str, Any]]
                   ) -> OutageSeconds | None:
    """Seconds of outage the pods waited out, by dependency: the sum over the termination
    messages at hand, never lower than before (a retried pod's message replaces the last one's).
    None while there were none."""
    totals = {"model": 0.0, "tools": 0.0, "storage": 0.0}
    for message in messages:
        waited = message.get(OUTAGE_SECONDS_KEY)
        for dependency, seconds in (waited if isinstance(waited, Mapping) else {}).items():
            if dependency in totals and isinstance(seconds, int | float) and seconds > 0:
                totals[dependency] += float(seconds)
    if previous is not None:
        totals = {name: max(seconds, getattr(previous, name))
                  for name, seconds in totals.items()}
    if not any(totals.values()):
        return previous
    return OutageSeconds(**{name: round(seconds, 1) for name, seconds in totals.items()})


def apply_aggregate(status: RolloutRunStatus, message: Mapping[str, Any]) -> None:
    """The aggregate Job's compact summary: counts, statistics by scorer, samples, artifacts.

    The planned total (rows x samples, from sync) is kept when it is known: aggregate only
    counts the records it found.
    """
    counts = message.get("progress") or {}
    planned = status.progress.total if status.progress else 0
    status.progress = Progress.from_counts(
        total=max(planned, int(counts.get("total") or 0)),
        completed=int(counts.get("completed") or 0),
        failed=int(counts.get("failed") or 0),
        masked=int(counts.get("masked") or 0),
        invalid=int(counts.get("invalid") or 0),
    )
    summary = message.get("summary") or {}
    status.summary = {name: ScorerSummary.model_validate(stats)
                      for name, stats in summary.items()} or None
    if status.summary:
        first = next(iter(status.summary.values()))
        status.score = f"{first.mean:.3f}" if first.mean is not None else None
    status.samples = [TrajectorySample.model_validate(s) for s in message.get("samples") or []]
    if message.get("artifacts"):
        status.artifacts = Artifacts.model_validate(message["artifacts"])
