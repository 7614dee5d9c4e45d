"""The reconcile decision: (the run, its observed children, settings, now) -> actions and status.

Level-based and idempotent: the decision is computed from what exists, never from what the
operator remembers, so running it twice, or after an operator restart, gives the same actions.
Every phase of DESIGN.md is one small step below; each step either finishes (and the next one
runs) or returns with what it is waiting for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from rollout_operator.api.constants import ConditionStatus, ConditionType, Reason
from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.api.status import (
    AggregateRetries,
    Artifacts,
    RolloutRunStatus,
    find_condition,
    is_true,
    set_condition,
)
from rollout_operator.api.validation import SpecError, parse_spec, spec_hash, spec_problems
from rollout_operator.reconcile.observed import (
    DeploymentState,
    JobState,
    Observed,
    format_indexes,
)
from rollout_operator.reconcile.phase import derive_phase
from rollout_operator.reconcile.queueing import (
    admitted_since,
    inference_queue_state,
    worker_queue_state,
)
from rollout_operator.reconcile.results import (
    apply_aggregate,
    apply_inspection,
    apply_sync,
    outage_seconds,
    server_restarts,
    shard_progress,
)
from rollout_operator.reconcile.secrets import missing_secrets
from rollout_operator.resources import (
    RunContext,
    build_aggregate_job,
    build_sync_job,
    build_worker_job,
    inference_children,
    inspect_children,
    long_running_children,
    user_code_children,
    user_code_servers,
)
from rollout_operator.resources.placement import inference_scheduling
from rollout_operator.resources.policy import policy_problems
from rollout_operator.runtime.inspection import InspectionReport
from rollout_operator.runtime.outage import STORAGE_OUTAGE_KEY
from rollout_operator.settings import OperatorSettings

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

AGGREGATE_RETRIES = 3
"""New aggregate Jobs after one failed because object storage could not be reached."""
AGGREGATE_RETRY_DELAY_S = 60
"""Wait before the first of them; doubled for each next one."""


@dataclass(frozen=True, slots=True)
class RunObject:
    """The parts of a RolloutRun object that decisions read."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: RolloutRunStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunObject:
        metadata = body.get("metadata") or {}
        raw_status = dict(body.get("status") or {})
        known = RolloutRunStatus.model_fields
        aliases = {f.alias or name for name, f in known.items()}
        status = RolloutRunStatus.model_validate(
            {k: v for k, v in raw_status.items() if k in aliases or k in known}
        )
        return cls(
            name=str(metadata.get("name")),
            namespace=str(metadata.get("namespace") or "default"),
            uid=str(metadata.get("uid") or ""),
            generation=int(metadata.get("generation") or 1),
            spec=dict(body.get("spec") or {}),
            status=status,
        )


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(slots=True)
class Decision:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    """(apiVersion, kind, name) of children to delete."""
    patch_jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(Job name, merge patch) pairs, e.g. to suspend or resume the worker Job."""
    status: RolloutRunStatus | None = None
    events: list[Event] = field(default_factory=list)
    delete_run: bool = False


class _Step:
    """Accumulates one decision: conditions set along the way become Events on transitions."""

    def __init__(self, run: RunObject, now: datetime) -> None:
        self.run = run
        self.now = now
        self.status = run.status.model_copy(deep=True)
        self.decision = Decision()

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        before = find_condition(self.status.conditions, type_)
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message, self.run.generation, self.now
        )
        changed = before is None or (before.status, before.reason) != (status, reason)
        if changed and status != UNKNOWN:
            warning = type_ in (ConditionType.FAILED, ConditionType.SPEC_REFUSED) and \
                status == TRUE
            self._announce(Event("Warning" if warning else "Normal", reason, message))

    def _announce(self, event: Event) -> None:
        """Two conditions moving for one cause in one decision (Synced=False and Failed=True,
        both SyncFailed with the same message) are one transition, told once, as a Warning if
        either is one."""
        events = self.decision.events
        for index, posted in enumerate(events):
            if (posted.reason, posted.message) == (event.reason, event.message):
                if event.type == "Warning" and posted.type != "Warning":
                    events[index] = event
                return
        events.append(event)

    def fail(self, reason: str, message: str) -> None:
        self.condition(ConditionType.FAILED, TRUE, reason, message)

    def ensure(self, observed: Observed, manifests: Sequence[dict[str, Any]]) -> None:
        for manifest in manifests:
            if not observed.has(manifest["kind"], manifest["metadata"]["name"]):
                self.decision.create.append(manifest)

    def finish(self, spec: RolloutRunSpec | None) -> Decision:
        if is_true(self.status.conditions, ConditionType.SPEC_REFUSED):
            self.decision.create = []  # nothing is built from a refused spec
        self.status.observed_generation = self.run.generation
        self.status.phase = derive_phase(
            self.status.conditions, suspended=bool(spec and spec.suspend)
        )
        if self.status != self.run.status:
            self.decision.status = self.status
        return self.decision


def decide(
    run: RunObject, observed: Observed, settings: OperatorSettings, now: datetime
) -> Decision:
    """The next actions for `run`, and its new status."""
    step = _Step(run, now)
    try:
        spec = parse_spec(run.spec)
        problems = spec_problems(spec, cluster=True, allow_file_repos=settings.allow_file_repos)
    except SpecError as exc:
        spec, problems = None, list(exc.problems)
    if spec is not None:
        problems += policy_problems(spec, settings)
        problems += missing_secrets(spec, observed.secrets, run.namespace)
    status = step.status
    refusal = _refusal(status, spec, problems)
    if refusal is not None:  # the run goes on as it started; `finish` creates nothing new
        step.condition(ConditionType.SPEC_REFUSED, TRUE, *refusal)
        if spec is None:
            return step.finish(None)
    elif problems:
        step.fail(Reason.INVALID_SPEC, "; ".join(problems))
        return step.finish(None)
    assert spec is not None
    if status.spec_hash is None:  # the first pass with a valid spec starts the run
        status.spec_hash = spec_hash(spec)
        status.policy_version = spec.model.policy_version
        status.start_time = now
        _clear_spec_failure(step)
    elif refusal is None and is_true(status.conditions, ConditionType.SPEC_REFUSED):
        step.condition(ConditionType.SPEC_REFUSED, FALSE, Reason.RESUMED,
                       "The spec is the one the run started with again.")

    if _finished(status):
        _after_finish(step, spec, observed, now)
        return step.finish(spec)

    if not _sync(step, _context(run, spec, status, settings, observed), observed):
        return step.finish(spec)
    ctx = _context(run, spec, status, settings, observed)  # now with commit, bundle, scorers
    step.status.restarts = server_restarts(
        step.status.restarts, observed.deployments.get("tools"),
        observed.deployments.get("scorers"), observed.jobs.get("workers"))
    tools_ready = _tools(step, ctx, observed)
    inference_ready = _inference(step, spec, ctx, observed)
    if not (tools_ready and inference_ready):
        if _finished(status):  # a server that never came up failed the run
            _after_finish(step, spec, observed, now)
        return step.finish(spec)
    if not _workers(step, spec, ctx, observed):
        return step.finish(spec)
    _aggregate(step, ctx, observed, now)
    if _finished(status):  # tear the servers down in the same pass that completes the run
        _after_finish(step, spec, observed, now)
    return step.finish(spec)


def _context(run: RunObject, spec: RolloutRunSpec, status: RolloutRunStatus,
             settings: OperatorSettings, observed: Observed) -> RunContext:
    sync = observed.jobs.get("sync")
    message = sync.messages.get(0) if sync else None
    fetch_url = message.get("bundleFetchURL") if message else None
    return RunContext.from_status(name=run.name, namespace=run.namespace, uid=run.uid,
                                  generation=run.generation, spec=spec, settings=settings,
                                  status=status,
                                  bundle_fetch_url=str(fetch_url) if fetch_url else None)


def _clear_spec_failure(step: _Step) -> None:
    """Before the run has started, an invalid spec (a Secret not there yet) may be fixed."""
    failed = find_condition(step.status.conditions, ConditionType.FAILED)
    if failed and failed.status == TRUE and failed.reason == Reason.INVALID_SPEC:
        step.condition(ConditionType.FAILED, FALSE, Reason.RESUMED, "The spec is valid again.")


def _refusal(status: RolloutRunStatus, spec: RolloutRunSpec | None,
             problems: list[str]) -> tuple[str, str] | None:
    """(reason, message) of the SpecRefused condition for a started run whose spec was edited
    or no longer checks out (a Secret gone); None when there is nothing to refuse."""
    if status.spec_hash is None:
        return None
    detail = f" Problems: {'; '.join(problems)}." if problems else ""
    if spec is None or spec_hash(spec) != status.spec_hash:
        return Reason.SPEC_CHANGED, (
            "Only spec.suspend and spec.ttlSecondsAfterFinished may change once a run has "
            "started; revert the edit, or create a new RolloutRun for the new spec." + detail)
    if problems:
        return Reason.INVALID_SPEC, "The run's spec no longer checks out; the run creates " \
            f"nothing new until it does.{detail}"
    return None


def _finished(status: RolloutRunStatus) -> bool:
    return is_true(status.conditions, ConditionType.COMPLETE) or is_true(
        status.conditions, ConditionType.FAILED
    )


def _after_finish(step: _Step, spec: RolloutRunSpec, observed: Observed, now: datetime) -> None:
    """Tear down servers that only a running run needs; delete the run after its TTL."""
    for kind, name, api_version in long_running_children(step.run.name, step.run.uid):
        if observed.has(kind, name):
            step.decision.delete.append((api_version, kind, name))
    if step.status.completion_time is None:
        step.status.completion_time = now
    ttl = spec.ttl_seconds_after_finished
    if ttl is not None and now >= step.status.completion_time + timedelta(seconds=ttl):
        step.decision.delete_run = True


def _sync(step: _Step, ctx: RunContext, observed: Observed) -> bool:
    if is_true(step.status.conditions, ConditionType.SYNCED):
        return True
    job = observed.jobs.get("sync")
    if job is None:
        step.ensure(observed, [build_sync_job(ctx)])
        step.condition(ConditionType.SYNCED, FALSE, Reason.SYNCING,
                       "Cloning the repository and checking its tools, scorers and dataset.")
        return False
    message = job.messages.get(0)
    if job.complete and message and message.get("ok"):
        apply_sync(step.status, message)
        fetch_url = message.get("bundleFetchURL")
        ctx = dataclasses.replace(ctx, commit=step.status.commit, bundle_url=step.status.bundle,
                                  bundle_fetch_url=str(fetch_url) if fetch_url else None)
        return _inspect(step, ctx, observed)
    if _past_deadline(step, job, "The sync Job", "config.syncDeadlineSeconds"):
        step.condition(ConditionType.SYNCED, FALSE, Reason.DEADLINE_EXCEEDED,
                       "The sync Job ran out of time.")
        return False
    if job.failed_terminal or (message is not None and message.get("ok") is False):
        text = _sync_problems(message, job)
        step.condition(ConditionType.SYNCED, FALSE, Reason.SYNC_FAILED, text)
        step.fail(Reason.SYNC_FAILED, text)
    return False


def _inspect(step: _Step, ctx: RunContext, observed: Observed) -> bool:
    """The inspection Job imports the bundle on the user-code side; its report finishes the
    Synced step (tools, scorers) or fails the run with the repo's problems."""
    job = observed.jobs.get("inspect")
    if job is None:
        try:
            children = inspect_children(ctx)
        except ValueError as exc:  # the sync report has no signed bundle URL
            step.fail(Reason.SYNC_FAILED, f"Cannot inspect the repository: {exc}")
            return False
        step.ensure(observed, children)
        step.condition(ConditionType.SYNCED, FALSE, Reason.INSPECTING,
                       "Inspecting the repository's tools and scorers, without credentials.")
        return False
    message = job.messages.get(0)
    report, unreadable = _inspection(message)
    if job.complete and report is not None and report.ok:
        apply_inspection(step.status, report)
        sync = observed.jobs.get("sync")
        invalid = (sync.messages.get(0) or {}).get("invalidRows") if sync else None
        rows = (f" {invalid} dataset row(s) cannot be used: their rollouts are recorded as "
                "invalid." if isinstance(invalid, int) and invalid > 0 else "")
        step.condition(ConditionType.SYNCED, TRUE, Reason.SYNCED,
                       f"Repository at commit {str(step.status.commit)[:12]}: "
                       f"{len(step.status.tools)} tools, {len(step.status.scorers)} scorers."
                       + rows)
        return True
    if _past_deadline(step, job, "The inspection Job", "config.syncDeadlineSeconds"):
        step.condition(ConditionType.SYNCED, FALSE, Reason.DEADLINE_EXCEEDED,
                       "The inspection Job ran out of time.")
        return False
    if job.complete and report is None:
        text = f"The inspection Job {job.name} finished without a report the operator can " \
               f"read: {unreadable or 'no termination message'}"
        step.condition(ConditionType.SYNCED, FALSE, Reason.SYNC_FAILED, text)
        step.fail(Reason.SYNC_FAILED, text)
        return False
    if job.failed_terminal or (message is not None and message.get("ok") is False):
        text = _sync_problems(message, job, "Inspection")
        step.condition(ConditionType.SYNCED, FALSE, Reason.SYNC_FAILED, text)
        step.fail(Reason.SYNC_FAILED, text)
    return False


def _inspection(message: Mapping[str, Any] | None) -> tuple[InspectionReport | None, str]:
    """The inspection report in a termination message, or why there is none."""
    if not message:
        return None, ""
    if "raw" in message:
        return None, f"not JSON: {str(message['raw'])[-300:]}"
    try:
        return InspectionReport.model_validate(message), ""
    except ValidationError as exc:
        return None, "; ".join(str(error["msg"]) for error in exc.errors())[:300]


def _job_cause(job: JobState, otherwise: str) -> str:
    """Why a Job failed: its condition's message, and what its pods said."""
    said = job.pod_errors
    parts = [part for part in (job.failure_message, f"the pods said: {said}" if said else "")
             if part]
    return "; ".join(parts) or otherwise


def _past_deadline(step: _Step, job: JobState, what: str, value: str, hint: str = "") -> bool:
    """A Job that Kubernetes stopped at its activeDeadlineSeconds fails the run saying which
    chart value gives it more time."""
    if not (job.failed_terminal and job.failure_reason == "DeadlineExceeded"):
        return False
    step.fail(Reason.DEADLINE_EXCEEDED,
              f"{what} {job.name} did not finish within its deadline ({job.failure_message}); "
              f"the chart value {value} sets it{hint}.")
    return True


def _sync_problems(message: Mapping[str, Any] | None, job: JobState,
                   what: str = "Sync") -> str:
    if message and message.get("problems"):
        parts = []
        for problem in message["problems"]:
            where = problem.get("file")
            parts.append(f"{where}: {problem.get('message')}" if where else
                         str(problem.get("message")))
        return "The repository has problems: " + "; ".join(parts)
    if message and message.get("error"):
        return f"{what} failed: {message['error']}"
    if message and message.get("raw"):
        return f"{what} failed: {message['raw'][-500:]}"
    return f"{what} Job {job.name} failed: {job.failure_message or 'no message'}"


def _tools(step: _Step, ctx: RunContext, observed: Observed) -> bool:
    """The user-code servers: tools, and scorers when the run has any (ToolsReady covers
    both)."""
    servers = user_code_servers(ctx)
    present = all(observed.has(kind, ctx.child_name(component)) for component, _ in servers
                  for kind in ("NetworkPolicy", "Service", "Deployment"))
    if not present:
        # Built only when something is missing: the signed bundle URL they need comes from
        # the sync Job's pod, which may be gone by now.
        try:
            step.ensure(observed, user_code_children(ctx))
        except ValueError as exc:
            step.condition(ConditionType.TOOLS_READY, FALSE, Reason.TOOLS_STARTING,
                           f"Cannot build the tool and scorer pods: {exc}")
            return False
    for component, what in servers:
        deployment = observed.deployments.get(component)
        if deployment is None or not deployment.ready:
            _not_ready(step, observed, deployment, ConditionType.TOOLS_READY, what,
                       Reason.TOOLS_STARTING, Reason.TOOLS_FAILED,
                       ctx.settings.tools_start_deadline_seconds)
            return False
    ready = [f"{observed.deployments[component].available} {what[4:-1]}(s)"
             for component, what in servers]
    step.condition(ConditionType.TOOLS_READY, TRUE, Reason.TOOLS_AVAILABLE,
                   " and ".join(ready) + " ready.")
    return True


def _not_ready(step: _Step, observed: Observed, deployment: DeploymentState | None,
               condition: str, what: str, starting: str, failed: str,
               deadline_seconds: int, *, admitted: datetime | None = None) -> None:
    """A server Deployment that is not ready: say why when its pods show it. Before rollouts
    have started, fail the run once the server has had `deadline_seconds` since its creation
    (or since Kueue `admitted` it, if later); once they run, an outage (a rescheduled pod) does
    not fail the run: rollouts that cannot reach the server meanwhile are recorded as masked."""
    problem = f": {deployment.problem}" if deployment and deployment.problem else "."
    created = _parse_time(deployment.created) if deployment else None
    if created is not None and admitted is not None:
        created = max(created, admitted)
    starting_up = "workers" not in observed.jobs
    if (starting_up and created is not None
            and step.now >= created + timedelta(seconds=deadline_seconds)):
        message = f"{what[0].upper()}{what[1:]} did not become ready within " \
                  f"{deadline_seconds} s{problem}"
        step.condition(condition, FALSE, failed, message)
        step.fail(failed, message)
        return
    step.condition(condition, FALSE, starting, f"Waiting for {what} to become ready{problem}")


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _inference(step: _Step, spec: RolloutRunSpec, ctx: RunContext, observed: Observed) -> bool:
    if spec.model.serve is None:
        step.condition(ConditionType.INFERENCE_READY, TRUE, Reason.EXTERNAL_ENDPOINT,
                       f"Using model {spec.model.name}" +
                       (f" at {spec.model.base_url}." if spec.model.base_url else "."))
        return True
    step.ensure(observed, inference_children(ctx))
    deployment = observed.deployments.get("inference")
    scheduling = inference_scheduling(ctx)
    queue = inference_queue_state(scheduling, deployment)
    if queue is not None and "workers" not in observed.jobs:  # then Queued is the workers'
        step.condition(ConditionType.QUEUED, *queue)
    if deployment is not None and deployment.ready:
        step.condition(ConditionType.INFERENCE_READY, TRUE, Reason.INFERENCE_AVAILABLE,
                       f"{spec.model.serve.engine} serving {spec.model.serve.model} is ready.")
        return True
    if queue is not None and queue[0] == TRUE:
        step.condition(ConditionType.INFERENCE_READY, FALSE, Reason.INFERENCE_STARTING,
                       f"Waiting for Kueue to admit the inference server's pods: {queue[2]}")
        return False
    _not_ready(step, observed, deployment, ConditionType.INFERENCE_READY,
               f"{spec.model.serve.engine} serving {spec.model.serve.model}",
               Reason.INFERENCE_STARTING, Reason.INFERENCE_FAILED,
               ctx.settings.inference_start_deadline_seconds,
               admitted=admitted_since(step.status.conditions) if scheduling.queue_name else None)
    return False


def _workers(step: _Step, spec: RolloutRunSpec, ctx: RunContext, observed: Observed) -> bool:
    job = observed.jobs.get("workers")
    if job is None:
        if spec.suspend:
            step.condition(ConditionType.COMPLETE, FALSE, Reason.SUSPENDED,
                           "The run is suspended; set spec.suspend to false to start rollouts.")
            return False
        step.ensure(observed, [build_worker_job(ctx)])
        queue_name = spec.scheduling.queue_name
        if queue_name is not None:
            step.condition(ConditionType.QUEUED, TRUE, Reason.WAITING_FOR_ADMISSION,
                           f"The worker Job is created in Kueue LocalQueue {queue_name}, "
                           "suspended until Kueue admits it.")
        step.condition(ConditionType.COMPLETE, FALSE, Reason.ROLLOUTS_RUNNING,
                       "Rollouts are running." if queue_name is None else
                       "Rollouts start when Kueue admits the worker Job.")
        return False
    if spec.scheduling.queue_name is not None:
        if spec.suspend and not (job.complete or job.failed_terminal):
            _suspend_queued(step, job)
            return False
    elif job.suspended != spec.suspend and not job.complete:
        step.decision.patch_jobs.append((job.name, {"spec": {"suspend": spec.suspend}}))
    step.status.progress = shard_progress(step.status.progress, job)
    step.status.outage_seconds = outage_seconds(step.status.outage_seconds,
                                                job.messages.values())
    if _past_deadline(step, job, "The worker Job", "config.workerDeadlineSeconds",
                      ", or spread the run over more spec.workers.shards and parallelism"):
        return False
    if job.failed_terminal:
        step.condition(ConditionType.COMPLETE, FALSE, Reason.WORKERS_FAILED,
                       f"{_shards_done(job)}.")
        step.fail(Reason.WORKERS_FAILED,
                  f"Worker Job {job.name} failed ({_shards_done(job)}): "
                  f"{_job_cause(job, 'see the worker pods logs')}")
        return False
    queue = worker_queue_state(spec.scheduling, job)
    if queue is not None:
        step.condition(ConditionType.QUEUED, *queue)
    if not job.complete:
        reason, text = (Reason.SUSPENDED, "The run is suspended.") if spec.suspend else (
            Reason.ROLLOUTS_RUNNING, f"{_shards_done(job)}.")
        if queue is not None and queue[0] == TRUE:
            reason, text = Reason.WAITING_FOR_ADMISSION, "Rollouts start when Kueue admits " \
                f"the worker Job ({_shards_done(job)})."
        step.condition(ConditionType.COMPLETE, FALSE, reason, text)
        return False
    return True


def _suspend_queued(step: _Step, job: JobState) -> None:
    """Kueue resumes a Job it admitted that someone else suspends, so a queued run is
    suspended by removing its worker Job, which also gives its quota back. Resuming creates it
    again, queued; its workers skip the rollouts already written."""
    step.decision.delete.append(("batch/v1", "Job", job.name))
    text = "The run is suspended: its worker Job is removed and leaves the Kueue queue; " \
           "set spec.suspend to false to queue it again."
    step.condition(ConditionType.QUEUED, FALSE, Reason.SUSPENDED, text)
    step.condition(ConditionType.COMPLETE, FALSE, Reason.SUSPENDED, text)


def _shards_done(job: JobState) -> str:
    """Like "1 of 3 shards done; shard 2 failed", from the indexes the Job reports."""
    text = f"{job.done} of {job.completions} shards done"
    if job.failed_indexes:
        plural = "s" if len(job.failed_indexes) > 1 else ""
        text += f"; shard{plural} {format_indexes(job.failed_indexes)} failed"
    return text


def _aggregate(step: _Step, ctx: RunContext, observed: Observed, now: datetime) -> None:
    from rollout_operator.runtime.metrics import too_many_masked

    job = observed.jobs.get("aggregate")
    retries = step.status.aggregate_retries
    if job is None:
        if retries is not None and retries.next_time is not None and now < retries.next_time:
            return  # the Complete condition says when the aggregate runs again
        step.ensure(observed, [build_aggregate_job(ctx)])
        step.condition(ConditionType.COMPLETE, FALSE, Reason.AGGREGATING,
                       "Computing the summary and writing results.json.")
        return
    message = job.messages.get(0)
    workers = observed.jobs.get("workers")
    step.status.outage_seconds = outage_seconds(
        step.status.outage_seconds,
        [*(workers.messages.values() if workers else ()), *([message] if message else [])])
    if job.complete and message is not None and "raw" not in message:
        apply_aggregate(step.status, message)
        step.status.completion_time = now
        total = step.status.progress.total if step.status.progress else 0
        step.condition(ConditionType.COMPLETE, TRUE, Reason.COMPLETED,
                       f"{total} rollouts scored; results in "
                       f"{(step.status.artifacts or Artifacts()).results}.")
        progress = step.status.progress
        too_many = progress and too_many_masked(progress.masked, progress.total,
                                                ctx.spec.faults.max_masked_fraction)
        if too_many:  # complete, results written, but not a success
            step.fail(Reason.TOO_MANY_MASKED, too_many)
            return
        step.condition(ConditionType.FAILED, FALSE, Reason.COMPLETED, "The run completed.")
        return
    if _past_deadline(step, job, "The aggregate Job", "config.aggregateDeadlineSeconds"):
        return
    if job.failed_terminal:
        if _retry_aggregate(step, job, now):
            return
        step.fail(Reason.AGGREGATE_FAILED,
                  f"Aggregate Job {job.name} failed: {_job_cause(job, 'see its logs')}")


def _retry_aggregate(step: _Step, job: JobState, now: datetime) -> bool:
    """An aggregate Job that failed because object storage could not be reached (past its own
    outage budget and retries) is deleted and made again later, a few times: every record is
    stored, so the run should not fail for good. True while a retry is under way."""
    complete = find_condition(step.status.conditions, ConditionType.COMPLETE)
    if complete is not None and complete.reason == Reason.AGGREGATE_RETRYING:
        step.decision.delete.append(("batch/v1", "Job", job.name))  # still going away
        return True
    message = job.messages.get(0) or {}
    retries = step.status.aggregate_retries or AggregateRetries()
    if not message.get(STORAGE_OUTAGE_KEY) or retries.count >= AGGREGATE_RETRIES:
        return False
    delay = AGGREGATE_RETRY_DELAY_S * 2 ** retries.count
    step.status.aggregate_retries = AggregateRetries(
        count=retries.count + 1, next_time=now + timedelta(seconds=delay))
    step.decision.delete.append(("batch/v1", "Job", job.name))
    step.condition(ConditionType.COMPLETE, FALSE, Reason.AGGREGATE_RETRYING,
                   f"Aggregate Job {job.name} could not reach object storage "
                   f"({_job_cause(job, 'see its logs')}); the records are kept and the "
                   f"aggregate runs again in {delay} s (retry {retries.count + 1} of "
                   f"{AGGREGATE_RETRIES}).")
    return True


__all__ = ["Decision", "Event", "RunObject", "decide"]
