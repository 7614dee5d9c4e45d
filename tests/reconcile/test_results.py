"""Progress from the worker shards' reports while a run's workers are running."""

from __future__ import annotations

from rollout_operator.api.status import Progress
from rollout_operator.reconcile.observed import JobState
from rollout_operator.reconcile.results import shard_progress


def _job(*messages: dict[str, int]) -> JobState:
    return JobState(name="w", completions=len(messages),
                    messages={index: message for index, message in enumerate(messages)})


def test_failed_and_masked_rollouts_are_not_counted_as_completed() -> None:
    job = _job({"done": 10, "failed": 2, "masked": 1}, {"done": 6, "skipped": 4, "masked": 3})
    progress = shard_progress(Progress.from_counts(total=40, completed=0), job)
    assert (progress.completed, progress.failed, progress.masked) == (14, 2, 4)
    assert progress.total == 40
    assert progress.percent == "50%"


def test_finished_shards_never_read_past_100_percent() -> None:
    job = _job({"done": 5, "failed": 5}, {"done": 5, "masked": 5})
    progress = shard_progress(Progress.from_counts(total=10, completed=0), job)
    assert (progress.completed, progress.failed, progress.masked) == (0, 5, 5)
    assert progress.percent == "100%"


def test_invalid_rollouts_are_counted_apart() -> None:
    job = _job({"done": 10, "failed": 1, "invalid": 4}, {"done": 10, "masked": 2, "invalid": 2})
    progress = shard_progress(Progress.from_counts(total=20, completed=0), job)
    assert (progress.completed, progress.failed, progress.masked, progress.invalid) == (
        11, 1, 2, 6)
    assert progress.percent == "100%"


def test_the_aggregate_counts_invalid_rollouts() -> None:
    from rollout_operator.api.status import RolloutRunStatus
    from rollout_operator.reconcile.results import apply_aggregate

    status = RolloutRunStatus(progress=Progress.from_counts(total=12, completed=0))
    apply_aggregate(status, {"progress": {"total": 12, "completed": 8, "failed": 1,
                                          "masked": 1, "invalid": 2}})
    assert status.progress is not None
    assert (status.progress.completed, status.progress.invalid, status.progress.percent) == (
        8, 2, "100%")


def _deployment(name: str, *restart_counts: int) -> tuple[object, list[dict[str, object]]]:
    from rollout_operator.reconcile.observed import deployment_state

    pods = [{"status": {"containerStatuses": [{"restartCount": n}]}} for n in restart_counts]
    return deployment_state({"metadata": {"name": name}, "spec": {"replicas": 1}}, pods), pods


def test_server_restarts_from_pods_and_shard_reports_never_fall() -> None:
    from rollout_operator.reconcile.results import server_restarts

    tools, _ = _deployment("t", 2, 1)
    scorers, _ = _deployment("s", 1)
    workers = _job({"done": 4, "scorerRestarts": 3}, {"done": 4, "scorerRestarts": 5})
    restarts = server_restarts(None, tools, scorers, workers)  # type: ignore[arg-type]
    assert restarts is not None
    # Every shard sees the same scorer process: the most any saw, plus container restarts.
    assert (restarts.tools, restarts.scorers) == (3, 6)
    replaced, _ = _deployment("t")  # the pods were replaced: their counts went with them
    again = server_restarts(restarts, replaced, None, None)  # type: ignore[arg-type]
    assert again is not None and (again.tools, again.scorers) == (3, 6)
    quiet, _ = _deployment("t", 0)
    assert server_restarts(None, quiet, None, _job({"done": 1})) is None  # type: ignore[arg-type]
