"""Kopf handlers for RolloutRun: observe, decide (pure), act. Nothing else lives here.

Every trigger (create, spec update, operator resume, and a periodic timer) runs the same
level-based reconcile, so a missed event or an operator restart only delays the next step.
Each reconcile also hands the run's status to the operator's metrics (`memo.metrics`).

Reconciles of one run take turns (`memo.run_locks`) and each reads the run afresh: after a
restart, the resume and every child's first event reconcile at once, and on a shared stale
status each would make (and announce) the same transition. Events are posted only once the
status with their transition has been written onto the very version the decision read.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import kopf

from rollout_operator.api.constants import GROUP, KIND, PLURAL, VERSION
from rollout_operator.api.status import bounded_status, status_merge_patch, utc_now
from rollout_operator.handlers.kube import KubeApi, kopf_errors
from rollout_operator.operator_metrics import OperatorMetrics
from rollout_operator.reconcile.decide import Decision, RunObject, decide
from rollout_operator.reconcile.observed import observe
from rollout_operator.reconcile.queueing import jobs_awaiting_admission
from rollout_operator.reconcile.secrets import secret_names_in
from rollout_operator.resources.context import RUN_UID_LABEL
from rollout_operator.settings import OperatorSettings

SETTINGS = OperatorSettings()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = SETTINGS.post_events
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 60
    # A run deleted while its timer is reconciling keeps its finalizer until the timer has
    # ended; Kopf looks again after this long (by default a minute, which held deletions up).
    settings.background.cancellation_polling = 1.0
    memo.settings = SETTINGS
    memo.api = KubeApi()
    memo.run_locks = {}
    if "metrics" not in memo:  # `rolloutctl operator` passes the metrics it serves
        memo.metrics = OperatorMetrics()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_change(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, reason: str,
              **_: Any) -> None:
    reconcile(body, memo, logger, trigger=str(reason))  # create, update or resume


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.reconcile_interval_seconds,
            initial_delay=SETTINGS.reconcile_interval_seconds,
            backoff=max(1.0, 4 * SETTINGS.reconcile_interval_seconds))
def on_timer(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    reconcile(body, memo, logger, trigger="timer")


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(uid: str, memo: kopf.Memo, **_: Any) -> None:
    """The run goes: it leaves the metrics' run gauges (its children go by garbage collection).
    Optional, so that it never holds a deletion up on its own."""
    metrics: OperatorMetrics = memo.metrics
    metrics.forget_run(uid)
    memo.run_locks.pop(uid, None)


@kopf.on.event("batch", "v1", "jobs", labels={RUN_UID_LABEL: kopf.PRESENT})
@kopf.on.event("apps", "v1", "deployments", labels={RUN_UID_LABEL: kopf.PRESENT})
def on_child_event(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """A child changed (a Job finished, tools became ready): move its run on now, not at the
    next timer tick. The timer stays the safety net for missed events."""
    owner = next((ref for ref in body.metadata.get("ownerReferences") or []
                  if ref.get("kind") == KIND and ref.get("controller")), None)
    namespace = body.metadata.get("namespace")
    if owner is None or not namespace:
        return
    api: KubeApi = memo.api
    with kopf_errors(f"reading {namespace}/{owner['name']}"):
        run = api.get_run(namespace, owner["name"])
    if run is None or run["metadata"].get("uid") != owner.get("uid"):
        metrics: OperatorMetrics = memo.metrics
        metrics.forget_run(str(owner.get("uid") or ""))
        return
    reconcile(kopf.Body(cast(kopf.RawBody, run)), memo, logger, trigger="child")


def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, trigger: str) -> None:
    api: KubeApi = memo.api
    metrics: OperatorMetrics = memo.metrics
    uid = str(body.metadata.get("uid") or "")
    namespace, name = body.metadata.get("namespace") or "default", str(body.metadata.get("name"))
    locks: dict[str, threading.Lock] = memo.run_locks
    with locks.setdefault(uid, threading.Lock()):
        with kopf_errors(f"reading {namespace}/{name}"):
            current = api.get_run(namespace, name)
        if current is None or current["metadata"].get("uid") != uid:
            return  # deleted (or replaced) meanwhile
        run = RunObject.from_body(current)
        metrics.observe_run(run.uid, run.status)
        with metrics.reconcile_timer(trigger):
            with kopf_errors(f"observing the children of {run.namespace}/{run.name}"):
                children = api.list_children(run.namespace, run.uid)
                pods = api.list_pods(run.namespace, run.uid)
                secrets = api.existing_secrets(run.namespace, secret_names_in(run.spec))
                workloads = [workload for uid in jobs_awaiting_admission(children)
                             for workload in api.list_workloads(run.namespace, uid)]
            observed = observe(children, pods, secrets, workloads)
            decision = decide(run, observed, memo.settings, utc_now())
            act(api, run, current, body, decision, logger, metrics)
        if decision.status is not None:
            metrics.observe_run(run.uid, decision.status)


def act(api: KubeApi, run: RunObject, current: dict[str, Any], body: kopf.Body,
        decision: Decision, logger: kopf.Logger, metrics: OperatorMetrics) -> None:
    """Carry `decision` out; `current` is the run as the decision read it."""
    for manifest in decision.create:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        with metrics.child_create(kind), kopf_errors(f"creating {kind} {name}"):
            if api.create(run.namespace, manifest):
                logger.info("Created %s %s", kind, name)
    for api_version, kind, name in decision.delete:
        with kopf_errors(f"deleting {kind} {name}"):
            api.delete(run.namespace, api_version, kind, name)
            logger.info("Deleted %s %s", kind, name)
    for name, patch in decision.patch_jobs:
        with kopf_errors(f"updating Job {name}"):
            api.patch_job(run.namespace, name, patch)
    if decision.status is not None:
        # onto the version read: a 409 drops this decision's Events, the next reconcile
        # decides (and announces) again from what was written meanwhile
        with kopf_errors(f"updating the status of {run.name}"):
            api.patch_run_status(run.namespace, run.name, status_merge_patch(
                current.get("status"), bounded_status(decision.status)),
                resource_version=current["metadata"].get("resourceVersion"))
    for event in decision.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if decision.delete_run:
        logger.info("ttlSecondsAfterFinished has passed: deleting the run")
        with kopf_errors(f"deleting {run.name}"):
            api.delete_run(run.namespace, run.name)
