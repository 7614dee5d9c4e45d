"""The operator's Prometheus metrics: run gauges, the rollouts counter, reconcile timing and
errors, each read back from a fresh registry; and the /metrics endpoint over loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from rollout_operator.api.status import Condition, Progress, RolloutRunStatus
from rollout_operator.cli.metrics_server import (
    MetricsServer,
    parse_address,
    start_metrics_server,
)
from rollout_operator.operator_metrics import OperatorMetrics

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def status(phase: str | None = None, conditions: dict[str, str] | None = None,
           progress: tuple[int, ...] | None = None, total: int = 20) -> RolloutRunStatus:
    return RolloutRunStatus(
        phase=phase,  # type: ignore[arg-type]
        conditions=[Condition(type=t, status=s, reason="Because",  # type: ignore[arg-type]
                              last_transition_time=NOW)
                    for t, s in (conditions or {}).items()],
        progress=None if progress is None else Progress.from_counts(total, *progress),
    )


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, (name, labels)
    return found


def rollouts(metrics: OperatorMetrics) -> dict[str, float]:
    return {outcome: value(metrics, "rollout_operator_rollouts_total", outcome=outcome)
            for outcome in ("completed", "failed", "masked")}


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics(CollectorRegistry())


def test_runs_are_counted_by_their_latest_phase_and_conditions(metrics: OperatorMetrics) -> None:
    metrics.observe_run("a", status("Running", {"Synced": "True", "Complete": "False"}))
    metrics.observe_run("b", status("Running", {"Synced": "True", "Complete": "False"}))
    metrics.observe_run("c", status())
    assert value(metrics, "rollout_operator_runs", phase="Running") == 2
    assert value(metrics, "rollout_operator_runs", phase="Pending") == 1
    assert value(metrics, "rollout_operator_runs", phase="Succeeded") == 0
    assert value(metrics, "rollout_operator_run_conditions", condition="Synced",
                 status="True") == 2

    metrics.observe_run("a", status("Succeeded", {"Synced": "True", "Complete": "True"}))
    assert value(metrics, "rollout_operator_runs", phase="Running") == 1
    assert value(metrics, "rollout_operator_runs", phase="Succeeded") == 1
    assert value(metrics, "rollout_operator_run_conditions", condition="Complete",
                 status="True") == 1
    assert value(metrics, "rollout_operator_run_conditions", condition="Complete",
                 status="False") == 1


def test_a_deleted_run_leaves_the_gauges_and_does_not_come_back(metrics: OperatorMetrics) -> None:
    metrics.observe_run("a", status("Succeeded", {"Complete": "True"}, (5, 0, 0)))
    metrics.observe_run("b", status("Running", {"Complete": "False"}))
    metrics.forget_run("a")
    assert value(metrics, "rollout_operator_runs", phase="Succeeded") == 0
    assert value(metrics, "rollout_operator_run_conditions", condition="Complete",
                 status="True") == 0
    assert value(metrics, "rollout_operator_runs", phase="Running") == 1
    # A reconcile already under way when the run was deleted reports it once more.
    metrics.observe_run("a", status("Succeeded", {"Complete": "True"}, (9, 0, 0)))
    assert value(metrics, "rollout_operator_runs", phase="Succeeded") == 0
    assert set(metrics.runs_seen()) == {"b"}


def test_rollouts_count_the_rise_of_each_outcome_and_never_fall(metrics: OperatorMetrics) -> None:
    assert rollouts(metrics) == {"completed": 0, "failed": 0, "masked": 0}
    metrics.observe_run("a", status("Pending"))
    metrics.observe_run("a", status("Running", progress=(4, 1, 0)))
    assert rollouts(metrics) == {"completed": 4, "failed": 1, "masked": 0}
    metrics.observe_run("a", status("Running", progress=(4, 1, 0)))  # seen again: no change
    metrics.observe_run("a", status("Running", progress=(9, 1, 2)))
    assert rollouts(metrics) == {"completed": 9, "failed": 1, "masked": 2}
    # An older status read after a newer one neither lowers the counter nor counts twice.
    metrics.observe_run("a", status("Running", progress=(4, 1, 0)))
    metrics.observe_run("a", status("Running", progress=(10, 1, 2)))
    assert rollouts(metrics) == {"completed": 10, "failed": 1, "masked": 2}

    metrics.observe_run("b", status("Pending"))
    metrics.observe_run("b", status("Succeeded", progress=(3, 0, 1)))
    assert rollouts(metrics) == {"completed": 13, "failed": 1, "masked": 3}
    # Deleting a run keeps what it counted: the counter is cumulative.
    metrics.forget_run("b")
    assert rollouts(metrics) == {"completed": 13, "failed": 1, "masked": 3}


def test_invalid_rollouts_are_an_outcome_of_their_own(metrics: OperatorMetrics) -> None:
    metrics.observe_run("a", status("Pending"))
    metrics.observe_run("a", status("Running", progress=(4, 1, 0, 2)))
    assert value(metrics, "rollout_operator_rollouts_total", outcome="invalid") == 2
    assert rollouts(metrics) == {"completed": 4, "failed": 1, "masked": 0}


def test_a_run_first_seen_mid_way_counts_only_what_it_does_afterwards(
        metrics: OperatorMetrics) -> None:
    """After an operator restart, rollouts finished before it are not counted a second time."""
    metrics.observe_run("a", status("Running", progress=(7, 2, 1)))
    assert rollouts(metrics) == {"completed": 0, "failed": 0, "masked": 0}
    metrics.observe_run("a", status("Succeeded", progress=(10, 2, 1)))
    assert rollouts(metrics) == {"completed": 3, "failed": 0, "masked": 0}


def test_server_restarts_count_the_rise_from_each_status(metrics: OperatorMetrics) -> None:
    from rollout_operator.api.status import ServerRestarts

    first = status("Running")
    metrics.observe_run("a", first)
    metrics.observe_run("a", first.model_copy(update={"restarts": ServerRestarts(tools=1)}))
    metrics.observe_run("a", first.model_copy(
        update={"restarts": ServerRestarts(tools=1, scorers=4)}))
    metrics.observe_run("a", first)  # an older status read late changes nothing
    assert value(metrics, "rollout_operator_server_restarts_total", server="tools") == 1
    assert value(metrics, "rollout_operator_server_restarts_total", server="scorers") == 4


def test_outage_waits_count_the_rise_from_each_status(metrics: OperatorMetrics) -> None:
    from rollout_operator.api.status import OutageSeconds

    first = status("Running")
    metrics.observe_run("a", first)
    metrics.observe_run("a", first.model_copy(
        update={"outage_seconds": OutageSeconds(storage=12.5)}))
    metrics.observe_run("a", first.model_copy(
        update={"outage_seconds": OutageSeconds(model=30, storage=20)}))
    metrics.observe_run("a", first)  # an older status read late changes nothing
    assert value(metrics, "rollout_operator_outage_wait_seconds_total",
                 dependency="storage") == 20
    assert value(metrics, "rollout_operator_outage_wait_seconds_total", dependency="model") == 30
    assert value(metrics, "rollout_operator_outage_wait_seconds_total", dependency="tools") == 0


def test_reconcile_duration_and_errors_by_trigger(metrics: OperatorMetrics) -> None:
    with metrics.reconcile_timer("timer"):
        pass
    with metrics.reconcile_timer("timer"):
        pass
    with pytest.raises(RuntimeError), metrics.reconcile_timer("child"):
        raise RuntimeError("the API server is away")
    assert value(metrics, "rollout_operator_reconcile_duration_seconds_count",
                 trigger="timer") == 2
    assert value(metrics, "rollout_operator_reconcile_duration_seconds_count",
                 trigger="child") == 1
    assert value(metrics, "rollout_operator_reconcile_duration_seconds_sum", trigger="timer") >= 0
    assert value(metrics, "rollout_operator_reconcile_errors_total", trigger="child") == 1
    assert metrics.registry.get_sample_value("rollout_operator_reconcile_errors_total",
                                             {"trigger": "timer"}) is None


def test_child_create_errors_by_kind(metrics: OperatorMetrics) -> None:
    with metrics.child_create("Job"):
        pass
    for _ in range(2):
        with pytest.raises(ValueError), metrics.child_create("Deployment"):
            raise ValueError("forbidden")
    assert value(metrics, "rollout_operator_child_create_errors_total", kind="Deployment") == 2
    assert metrics.registry.get_sample_value("rollout_operator_child_create_errors_total",
                                             {"kind": "Job"}) is None


def test_each_instance_has_its_own_registry() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    first.observe_run("a", status("Running"))
    assert value(first, "rollout_operator_runs", phase="Running") == 1
    assert value(second, "rollout_operator_runs", phase="Running") == 0


@pytest.mark.parametrize(("address", "expected"), [
    ("0.0.0.0:9090", ("0.0.0.0", 9090)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("localhost:80", ("localhost", 80)),
    ("[::]:9090", ("::", 9090)),
])
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9090", ":9090", "host:", "host:port", "host:70000"])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


@pytest.fixture
def served(metrics: OperatorMetrics) -> Iterator[MetricsServer]:
    server = start_metrics_server(metrics.registry, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.close()


def _get(url: str, **headers: str) -> Any:
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)


def test_metrics_are_served_in_the_prometheus_text_format(metrics: OperatorMetrics,
                                                          served: MetricsServer) -> None:
    metrics.observe_run("a", status("Pending"))
    metrics.observe_run("a", status("Succeeded", {"Complete": "True"}, (6, 0, 0)))
    with _get(served.url) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("rollout_operator_runs", (("phase", "Succeeded"),))] == 1
    assert samples[("rollout_operator_run_conditions",
                    (("condition", "Complete"), ("status", "True")))] == 1
    assert samples[("rollout_operator_rollouts_total", (("outcome", "completed"),))] == 6


def test_only_the_metrics_path_is_served(served: MetricsServer) -> None:
    base = served.url.removesuffix("/metrics")
    with pytest.raises(urllib.error.HTTPError) as error:
        _get(base + "/")
    assert error.value.code == 404
    with _get(served.url, Accept="application/openmetrics-text; version=1.0.0") as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().rstrip().endswith("# EOF")
