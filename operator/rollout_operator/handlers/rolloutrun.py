"""Kopf handlers for RolloutRun: observe, decide (pure), act. Nothing else lives here.

Every trigger (create, spec update, operator resume, a periodic timer, and a change of one of
its children) runs the same level-based reconcile, so a missed event or an operator restart only
delays the next step. Each reconcile also hands the run's status to the operator's metrics
(`memo.metrics`).

Passes of one run never overlap: a trigger during a pass has that pass run once more
(`RunMemory.begin`), rather than wait for it. Passes read the run, its children and pods from
Kopf's indexes (handlers/indexes.py) and its Secrets from a metadata-only watch
(handlers/secret_names.py): a pass that changes nothing makes no API request. What this process
wrote and the watches do not show yet is remembered (handlers/memory.py). The status is patched
onto the very version the decision read; a 409 means the run changed meanwhile, so it is read
again and decided again. Children are created once the status landed (a stale pass creates
nothing) and Events are posted only then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from rollout_operator.api.constants import GROUP, KIND, PLURAL, VERSION
from rollout_operator.api.status import bounded_status, status_merge_patch, utc_now
from rollout_operator.handlers import indexes as _indexes  # noqa: F401  (registers them)
from rollout_operator.handlers.indexes import Indexes
from rollout_operator.handlers.kube import KubeApi, kopf_errors
from rollout_operator.handlers.memory import Memories, RunMemory
from rollout_operator.handlers.secret_names import SecretNames
from rollout_operator.operator_metrics import OperatorMetrics
from rollout_operator.reconcile.decide import Decision, Event, RunObject, decide
from rollout_operator.reconcile.observed import Observed, observe
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
    memo.secrets = SecretNames(memo.api)
    memo.memories = Memories()
    if "metrics" not in memo:  # `rolloutctl operator` passes the metrics it serves
        memo.metrics = OperatorMetrics()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_change(uid: str, memo: kopf.Memo, logger: kopf.Logger, reason: str,
              **kwargs: Any) -> None:
    reconcile(uid, memo, logger, str(reason), Indexes.from_kwargs(kwargs))  # create, update...


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.reconcile_interval_seconds,
            initial_delay=SETTINGS.reconcile_interval_seconds,
            backoff=max(1.0, 4 * SETTINGS.reconcile_interval_seconds))
def on_timer(uid: str, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    reconcile(uid, memo, logger, "timer", Indexes.from_kwargs(kwargs))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(uid: str, memo: kopf.Memo, **_: Any) -> None:
    """The run goes: it leaves the metrics' run gauges (its children go by garbage collection).
    Optional, so that it never holds a deletion up on its own."""
    metrics: OperatorMetrics = memo.metrics
    metrics.forget_run(uid)
    memories: Memories = memo.memories
    memories.forget(uid)


@kopf.on.event("batch", "v1", "jobs", labels={RUN_UID_LABEL: kopf.PRESENT})
@kopf.on.event("apps", "v1", "deployments", labels={RUN_UID_LABEL: kopf.PRESENT})
def on_child_event(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger,
                   **kwargs: Any) -> None:
    """A child changed (a Job finished, tools became ready): move its run on now, not at the
    next timer tick. The timer stays the safety net for missed events."""
    owner = next((ref for ref in body.metadata.get("ownerReferences") or []
                  if ref.get("kind") == KIND and ref.get("controller")), None)
    if owner is None:
        return
    uid = str(owner.get("uid") or "")
    indexes = Indexes.from_kwargs(kwargs)
    if indexes.run(uid) is None:  # the run is gone
        metrics: OperatorMetrics = memo.metrics
        metrics.forget_run(uid)
        return
    reconcile(uid, memo, logger, "child", indexes)


Announce = Callable[[kopf.Body, Event], None]


def post_event(body: kopf.Body, event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)


CONFLICT_RETRIES = 3


def reconcile(uid: str, memo: kopf.Memo, logger: kopf.Logger | logging.Logger, trigger: str,
              indexes: Indexes, announce: Announce = post_event) -> None:
    """Reconcile the run `uid`, one pass at a time: a trigger that comes while a pass is under
    way does not wait for it (holding one of Kopf's threads) but asks it to pass once more when
    done, on what the indexes show then."""
    memory = cast(Memories, memo.memories).of(uid)
    if not memory.begin():
        return  # the pass under way passes again for this trigger
    try:
        while True:
            _pass(uid, memo, memory, logger, trigger, indexes, announce)
            if not memory.again():
                return
    finally:
        memory.end()


def _pass(uid: str, memo: kopf.Memo, memory: RunMemory,
          logger: kopf.Logger | logging.Logger, trigger: str, indexes: Indexes,
          announce: Announce) -> None:
    """One pass over the run `uid` as the indexes show it. A 409 on its status means the
    indexes lag behind: the run and its children are then read from the API server, and the
    pass decides again on what they say."""
    api: KubeApi = memo.api
    metrics: OperatorMetrics = memo.metrics
    current = memory.latest(indexes.run(uid))
    listed = False
    for _ in range(CONFLICT_RETRIES):
        if current is None or current["metadata"].get("uid") != uid:
            return  # deleted (or replaced) meanwhile
        run = RunObject.from_body(current)
        metrics.observe_run(run.uid, run.status)
        with metrics.reconcile_timer(trigger):
            observed = _observe(memo, memory, indexes, run, listed)
            decision = decide(run, observed, memo.settings, utc_now())
            landed = act(api, memory, run, current, decision, logger, metrics, announce)
        if landed:
            if decision.status is not None:
                metrics.observe_run(run.uid, decision.status)
            return
        with kopf_errors(f"reading {run.namespace}/{run.name}"):
            fresh = api.get_run(run.namespace, run.name)
        # Only metadata moved (Kopf's own annotations): the same decision, onto the new
        # version. Else the indexes may lag behind the status too: list the children.
        listed = listed or fresh is None or _decided_on(fresh) != _decided_on(current)
        current = fresh
    raise kopf.TemporaryError(f"the status of {uid} kept changing under the operator",
                              delay=1)


def _decided_on(run: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a run object a decision depends on."""
    metadata = run.get("metadata") or {}
    return (run.get("spec"), run.get("status"), metadata.get("generation"),
            metadata.get("deletionTimestamp"))


def _observe(memo: kopf.Memo, memory: RunMemory, indexes: Indexes, run: RunObject,
             listed: bool) -> Observed:
    """The run's children, pods and Secrets: from the indexes, or `listed` from the API."""
    children: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    if listed:
        api: KubeApi = memo.api
        with kopf_errors(f"listing the children of {run.namespace}/{run.name}"):
            children = api.list_children(run.namespace, run.uid)
            pods = api.list_pods(run.namespace, run.uid)
    else:
        children, pods = indexes.children_of(run.uid), indexes.pods_of(run.uid)
    seen = [(str(child.get("kind")), str(child["metadata"]["name"]),
             child["metadata"].get("resourceVersion")) for child in children]
    secrets: SecretNames = memo.secrets
    with kopf_errors(f"reading the Secrets and Kueue Workloads of {run.namespace}/{run.name}"):
        existing = secrets.existing(run.namespace, secret_names_in(run.spec))
        workloads = [workload for job_uid in jobs_awaiting_admission(children)
                     for workload in memo.api.list_workloads(run.namespace, job_uid)]
    created = memory.not_yet_seen(seen)
    observed = observe(children, pods, existing, workloads, created=created)
    if not listed and any((job.complete or job.failed_terminal) and not job.messages
                          for job in observed.jobs.values()):
        # A finished Job whose pods' reports are not in the index yet (the pod watch runs
        # behind the Job watch): read them, rather than take the Job for one without a report.
        with kopf_errors(f"listing the pods of {run.namespace}/{run.name}"):
            pods = memo.api.list_pods(run.namespace, run.uid)
        observed = observe(children, pods, existing, workloads, created=created)
    return observed


def act(api: KubeApi, memory: RunMemory, run: RunObject, current: dict[str, Any],
        decision: Decision, logger: kopf.Logger | logging.Logger, metrics: OperatorMetrics,
        announce: Announce = post_event) -> bool:
    """Carry `decision` out; `current` is the run as the decision read it. False (and nothing
    done) when the status could not be written because the run changed since."""
    if decision.status is not None:
        onto = current["metadata"].get("resourceVersion")
        patch = status_merge_patch(current.get("status"), bounded_status(decision.status))
        with kopf_errors(f"updating the status of {run.name}"):
            try:
                written = api.patch_run_status(run.namespace, run.name, patch,
                                               resource_version=onto)
            except ApiException as exc:
                if exc.status == 409:
                    return False  # this decision (and its Events) is dropped
                raise
        memory.wrote(onto, written)
    for manifest in decision.create:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        with metrics.child_create(kind), kopf_errors(f"creating {kind} {name}"):
            created = api.create(run.namespace, manifest)
            if created is not None:
                logger.info("Created %s %s", kind, name)
        memory.created_now(kind, name, ((created or {}).get("metadata") or {}).get(
            "resourceVersion"))
    for api_version, kind, name in decision.delete:
        with kopf_errors(f"deleting {kind} {name}"):
            api.delete(run.namespace, api_version, kind, name)
            logger.info("Deleted %s %s", kind, name)
        memory.deleted(kind, name)
    for name, patch in decision.patch_jobs:
        with kopf_errors(f"updating Job {name}"):
            api.patch_job(run.namespace, name, patch)
    body = kopf.Body(cast(kopf.RawBody, current))
    for event in decision.events:
        announce(body, event)
    if decision.delete_run:
        logger.info("ttlSecondsAfterFinished has passed: deleting the run")
        with kopf_errors(f"deleting {run.name}"):
            api.delete_run(run.namespace, run.name)
    return True
