"""The operator's Prometheus metrics, and how the statuses it sees update them.

No Kubernetes here: the handlers hand in each run's uid and status, time their reconciles with
`reconcile_timer` and their child creations with `child_create`; this module keeps what it needs
per run and exports

- `rollout_operator_runs{phase}` and `rollout_operator_run_conditions{condition,status}`: gauges
  computed at scrape time from the latest status seen of each run the operator knows;
- `rollout_operator_rollouts_total{outcome}`: rollouts finished, fed from each run's
  `status.progress` counts;
- `rollout_operator_server_restarts_total{server}`: user-code servers (tools, scorers) that
  died and were started again, fed from each run's `status.restarts`;
- `rollout_operator_outage_wait_seconds_total{dependency}`: seconds the runs' pods waited out
  an outage of the model endpoint, the tool server or object storage, fed from each run's
  `status.outageSeconds`;
- `rollout_operator_reconcile_duration_seconds{trigger}` and
  `rollout_operator_reconcile_errors_total{trigger}`;
- `rollout_operator_child_create_errors_total{kind}`.

Every instance has its own `CollectorRegistry`, so tests make fresh ones.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollout_operator.api.constants import ConditionStatus, ConditionType, Phase
from rollout_operator.api.status import Progress, RolloutRunStatus

PREFIX = "rollout_operator"
OUTCOMES = ("completed", "failed", "masked", "invalid")
SERVERS = ("tools", "scorers")
DEPENDENCIES = ("model", "tools", "storage")
CONDITION_STATUSES = (ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN)
# Reconciles are a few API calls each; the slow end is a busy API server.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# How many deleted runs are remembered, so that a reconcile already under way when its run was
# deleted cannot bring the run back into the gauges.
FORGOTTEN_KEPT = 4096


@dataclass(frozen=True, slots=True)
class RunSeen:
    """What the metrics keep of one run: its latest phase and conditions, and the highest
    progress count of each outcome seen so far."""

    phase: str
    conditions: tuple[tuple[str, str], ...]
    outcomes: dict[str, int]
    restarts: dict[str, int] | None = None
    outages: dict[str, float] | None = None


def restart_counts(status: RolloutRunStatus) -> dict[str, int]:
    """User-code server restarts by server, as `status.restarts` reports them."""
    restarts = status.restarts
    if restarts is None:
        return dict.fromkeys(SERVERS, 0)
    return {"tools": restarts.tools, "scorers": restarts.scorers}


def outage_seconds(status: RolloutRunStatus) -> dict[str, float]:
    """Seconds of outage waited out by dependency, as `status.outageSeconds` reports them."""
    waited = status.outage_seconds
    if waited is None:
        return dict.fromkeys(DEPENDENCIES, 0.0)
    return {"model": waited.model, "tools": waited.tools, "storage": waited.storage}


def outcome_counts(progress: Progress | None) -> dict[str, int]:
    """Rollouts finished by outcome, as `status.progress` reports them (zeros without it)."""
    if progress is None:
        return dict.fromkeys(OUTCOMES, 0)
    return {"completed": progress.completed, "failed": progress.failed,
            "masked": progress.masked, "invalid": progress.invalid}


class _RunGauges(Collector):
    """Counts runs by phase and by condition at scrape time, from a snapshot of the runs seen."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(self._metrics.runs_seen())

    @staticmethod
    def _families(runs: dict[str, RunSeen]) -> list[Metric]:
        phases = dict.fromkeys(Phase.ALL, 0)
        conditions = {(type_, status): 0
                      for type_ in ConditionType.ALL for status in CONDITION_STATUSES}
        for run in runs.values():
            phases[run.phase] = phases.get(run.phase, 0) + 1
            for key in run.conditions:
                conditions[key] = conditions.get(key, 0) + 1
        by_phase = GaugeMetricFamily(
            f"{PREFIX}_runs", "RolloutRuns by status.phase (a run without one yet is Pending).",
            labels=["phase"])
        for phase, count in phases.items():
            by_phase.add_metric([phase], count)
        by_condition = GaugeMetricFamily(
            f"{PREFIX}_run_conditions", "RolloutRuns by condition type and status.",
            labels=["condition", "status"])
        for (type_, status), count in conditions.items():
            by_condition.add_metric([type_, status], count)
        return [by_phase, by_condition]


class OperatorMetrics:
    """The operator's metrics in one registry; safe to update from Kopf's handler threads."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._runs: dict[str, RunSeen] = {}
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self.rollouts = Counter(
            f"{PREFIX}_rollouts", "Rollouts finished, by outcome, from the runs' status.progress.",
            ["outcome"], registry=self.registry)
        for outcome in OUTCOMES:
            self.rollouts.labels(outcome)
        self.server_restarts = Counter(
            f"{PREFIX}_server_restarts",
            "User-code servers that died and were started again, from the runs' "
            "status.restarts.", ["server"], registry=self.registry)
        for server in SERVERS:
            self.server_restarts.labels(server)
        self.outage_waits = Counter(
            f"{PREFIX}_outage_wait_seconds",
            "Seconds the runs' pods waited out an outage of a dependency (model endpoint, tool "
            "server, object storage), from the runs' status.outageSeconds.",
            ["dependency"], registry=self.registry)
        for dependency in DEPENDENCIES:
            self.outage_waits.labels(dependency)
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time of one reconcile of a run (observe, decide, act), by what triggered it.",
            ["trigger"], buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors", "Reconciles that ended in an error (Kopf retries them).",
            ["trigger"], registry=self.registry)
        self.child_create_errors = Counter(
            f"{PREFIX}_child_create_errors",
            "Failed creations of a run's children (an existing child is not an error).",
            ["kind"], registry=self.registry)
        self.registry.register(_RunGauges(self))

    def observe_run(self, uid: str, status: RolloutRunStatus) -> None:
        """Take `status` as the latest seen of run `uid`.

        The rollouts counter grows by how much each outcome's count rose above the highest
        value seen before for this run; a lower count (an older status read after a newer one)
        changes nothing. A run seen for the first time, e.g. after an operator restart, only sets
        that starting point: what it had done before is not counted (again).
        """
        if not uid:
            return
        counts = outcome_counts(status.progress)
        restarts = restart_counts(status)
        waited = outage_seconds(status)
        phase = status.phase or Phase.PENDING
        conditions = tuple((c.type, c.status) for c in status.conditions)
        with self._lock:
            if uid in self._forgotten:
                return
            previous = self._runs.get(uid)
            highest = dict(counts) if previous is None else {
                outcome: max(previous.outcomes.get(outcome, 0), count)
                for outcome, count in counts.items()}
            before = (previous.restarts or {}) if previous is not None else {}
            most = {server: max(before.get(server, 0), count)
                    for server, count in restarts.items()}
            waited_before = (previous.outages or {}) if previous is not None else {}
            longest = {name: max(waited_before.get(name, 0.0), seconds)
                       for name, seconds in waited.items()}
            if previous is not None:
                for outcome, count in highest.items():
                    increment = count - previous.outcomes.get(outcome, 0)
                    if increment > 0:
                        self.rollouts.labels(outcome).inc(increment)
                for server, count in most.items():
                    increment = count - before.get(server, 0)
                    if increment > 0:
                        self.server_restarts.labels(server).inc(increment)
                for name, seconds in longest.items():
                    more = seconds - waited_before.get(name, 0.0)
                    if more > 0:
                        self.outage_waits.labels(name).inc(more)
            self._runs[uid] = RunSeen(phase, conditions, highest, most, longest)

    def forget_run(self, uid: str) -> None:
        """Run `uid` is gone: it leaves the gauges, and later statuses of it are ignored."""
        if not uid:
            return
        with self._lock:
            self._runs.pop(uid, None)
            self._forgotten[uid] = None
            while len(self._forgotten) > FORGOTTEN_KEPT:
                self._forgotten.popitem(last=False)

    def runs_seen(self) -> dict[str, RunSeen]:
        """A snapshot of the runs known, by uid."""
        with self._lock:
            return dict(self._runs)

    @contextmanager
    def reconcile_timer(self, trigger: str) -> Iterator[None]:
        """Time the reconcile in the block; count it as an error when the block raises."""
        start = time.perf_counter()
        try:
            yield
        except Exception:
            self.reconcile_errors.labels(trigger).inc()
            raise
        finally:
            self.reconcile_duration.labels(trigger).observe(time.perf_counter() - start)

    @contextmanager
    def child_create(self, kind: str) -> Iterator[None]:
        """Count a creation of a `kind` child that raises (the error goes on)."""
        try:
            yield
        except Exception:
            self.child_create_errors.labels(kind).inc()
            raise


__all__ = ["DEPENDENCIES", "OUTCOMES", "SERVERS", "OperatorMetrics", "RunSeen", "outage_seconds",
           "outcome_counts", "restart_counts"]
