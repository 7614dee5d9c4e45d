"""Fake controllers that give the emulated cluster a life of its own.

They run in the emulator's event loop and use its object methods, as in-cluster controllers use
the API (their writes are not in `emulator.calls`):

- `PodController`: pods that no Job owns are scheduled and become Running and Ready after
  `ready_delay` (`ready_gate` can hold chosen pods unready); a pod with `schedulingGates` stays
  Pending (`PodScheduled=False`, `SchedulingGated`) until they are all removed.
- `DeploymentController`: keeps `spec.replicas` pods of the current template and reports
  `replicas`, `readyReplicas`, `availableReplicas` and the `Available` condition.
- `JobController`: carries out Jobs with a pluggable `JobRunner` (default: local processes),
  honouring `completions`, `parallelism`, `completionMode: Indexed`, `backoffLimit`,
  `backoffLimitPerIndex`, `maxFailedIndexes`, `suspend` (no pods while suspended; the deadline
  clock restarts on resume) and `activeDeadlineSeconds`; it creates
  the Pod objects (labelled `job-name` and `batch.kubernetes.io/job-completion-index`, with each
  container's termination message in `status.containerStatuses`) and writes Job status and
  conditions as the real controller does. `kill` ends a running pod's process mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock

from tests.k8s.emulator import Change, ClusterEmulator
from tests.k8s.job_runner import (
    ContainerConfigError,
    JobRunner,
    SubprocessRunner,
    prepare_container,
)

Obj = dict[str, Any]
logger = logging.getLogger(__name__)
_MESSAGE_LIMIT = 4096
_KILLED_EXIT_CODE = 137


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _owner_kind(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("kind"))
    return None


def _owner_reference(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


JOB_POD_IP = "127.0.0.1"


def _pod_ip() -> str:
    return f"10.244.{random.randint(0, 255)}.{random.randint(2, 254)}"


def _ready_pod_status(pod: Obj, now: str) -> Obj:
    containers = (pod.get("spec") or {}).get("containers") or []
    return {
        "phase": "Running", "podIP": pod.get("status", {}).get("podIP") or _pod_ip(),
        "hostIP": "10.0.0.1", "startTime": now, "qosClass": "BestEffort",
        "conditions": [{"type": kind, "status": "True", "lastTransitionTime": now}
                       for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
        "containerStatuses": [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
             "started": True, "restartCount": 0, "containerID": f"emulated://{c['name']}",
             "state": {"running": {"startedAt": now}}} for c in containers],
    }


class _Controller:
    """A loop that reconciles everything of its concern whenever a watched resource changes."""

    watches: tuple[str, ...] = ()
    resync: float = 1.0

    def __init__(self, emulator: ClusterEmulator) -> None:
        self.emulator = emulator
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake: asyncio.Event | None = None

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, Exception):
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A controller bug must fail the test (see the `k8s_cluster` fixture), not stall it."""
        logger.error("the %s failed", type(self).__name__, exc_info=exc)
        self.emulator.failures.append(exc)

    async def run(self) -> None:
        """Reconcile now, then again after every change of a watched resource (or `resync`)."""
        self._wake = asyncio.Event()
        queues = [self.emulator.subscribe(resource) for resource in self.watches]

        async def relay(queue: asyncio.Queue[Change | None]) -> None:
            while (change := await queue.get()) is not None:
                try:
                    self.observe(change)
                except Exception as exc:
                    self._failed(exc)
                self.wake()

        relays = [asyncio.create_task(relay(queue)) for queue in queues]
        try:
            while True:
                self._wake.clear()
                try:
                    self.reconcile()
                except Exception as exc:
                    self._failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.resync)
        finally:
            for relay_task in relays:
                relay_task.cancel()
            for queue in queues:
                self.emulator.unsubscribe(queue)

    def wake(self) -> None:
        """Ask for a reconcile soon."""
        if self._wake is not None:
            self._wake.set()

    def observe(self, change: Change) -> None:
        """React to one change before the next reconcile (e.g. a pod was deleted)."""

    def reconcile(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PodController(_Controller):
    """Pods not owned by a Job become Running and Ready (nothing in them runs)."""

    watches = ("v1/pods",)

    def __init__(self, emulator: ClusterEmulator) -> None:
        super().__init__(emulator)
        self.ready_delay = 0.0
        self.ready_gate: Callable[[Obj], bool] = lambda pod: True
        self._scheduled: set[str] = set()

    def reconcile(self) -> None:
        for pod in self.emulator.peek_objects("v1/pods"):
            uid = pod["metadata"]["uid"]
            if _owner_kind(pod) == "Job" or uid in self._scheduled:
                continue
            if (pod.get("spec") or {}).get("schedulingGates"):
                self._hold(pod)  # until every gate is removed, as the scheduler does
                continue
            if (pod.get("status") or {}).get("phase") == "Pending" and self.ready_gate(pod):
                self._scheduled.add(uid)
                self.spawn(self._start(pod))

    def _hold(self, pod: Obj) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("reason") == "SchedulingGated" for c in conditions):
            return
        meta = pod["metadata"]
        with contextlib.suppress(kmock.KubernetesError):
            self.emulator.patch_object("v1/pods", meta["name"], {"status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False",
                                "reason": "SchedulingGated",
                                "message": "Scheduling is blocked due to non-empty scheduling "
                                           "gates", "lastTransitionTime": _now()}]}},
                meta["namespace"], subresource="status")

    async def _start(self, pod: Obj) -> None:
        await asyncio.sleep(self.ready_delay)
        meta = pod["metadata"]
        with contextlib.suppress(kmock.KubernetesError):
            current = self.emulator.get_object("v1/pods", meta["name"], meta["namespace"])
            if current is not None and current["metadata"]["uid"] == meta["uid"]:
                self.emulator.patch_object("v1/pods", meta["name"],
                                           {"status": _ready_pod_status(current, _now())},
                                           meta["namespace"], subresource="status")


class DeploymentController(_Controller):
    """Deployments own `replicas` pods of their current template and report how many are ready."""

    watches = ("apps/v1/deployments", "v1/pods")

    def __init__(self, emulator: ClusterEmulator) -> None:
        super().__init__(emulator)
        self._hashes: dict[str, tuple[Any, str]] = {}

    def reconcile(self) -> None:
        owned: dict[str, list[Obj]] = {}
        for pod in self.emulator.peek_objects("v1/pods"):
            for ref in pod["metadata"].get("ownerReferences") or []:
                owned.setdefault(ref.get("uid"), []).append(pod)
        live = set()
        for deployment in self.emulator.peek_objects("apps/v1/deployments"):
            live.add(deployment["metadata"]["uid"])
            with contextlib.suppress(kmock.KubernetesError):
                self._reconcile(deployment, owned.get(deployment["metadata"]["uid"], []))
        for uid in [uid for uid in self._hashes if uid not in live]:
            del self._hashes[uid]

    def _template_hash(self, uid: str, generation: Any, template: Obj) -> str:
        """The pod template's hash, computed once per generation of the Deployment (the
        template is in its spec, so it changes only with the generation)."""
        known = self._hashes.get(uid)
        if known is not None and known[0] == generation:
            return known[1]
        encoded = json.dumps(template, sort_keys=True).encode()
        template_hash = hashlib.sha256(encoded).hexdigest()[:10]
        self._hashes[uid] = (generation, template_hash)
        return template_hash

    def _reconcile(self, deployment: Obj, owned: list[Obj]) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        if meta.get("deletionTimestamp") or spec.get("paused"):
            return
        namespace, uid = meta["namespace"], meta["uid"]
        template = spec.get("template") or {}
        template_hash = self._template_hash(uid, meta.get("generation"), template)
        pods = [pod for pod in owned
                if _owned_by(pod, uid) and not pod["metadata"].get("deletionTimestamp")]
        current = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash")
                   == template_hash]
        surplus = [p for p in pods if p not in current] + current[int(spec.get("replicas", 1)):]
        for pod in surplus:
            self.emulator.delete_object("v1/pods", pod["metadata"]["name"], namespace)
        for _ in range(int(spec.get("replicas", 1)) - len(current)):
            labels = {**(template.get("metadata") or {}).get("labels", {}),
                      "pod-template-hash": template_hash}
            self.emulator.create_object("v1/pods", {
                "metadata": {"generateName": f"{meta['name']}-{template_hash}-", "labels": labels,
                             "annotations": (template.get("metadata") or {}).get("annotations", {}),
                             "ownerReferences": [_owner_reference(deployment)]},
                "spec": copy.deepcopy(template.get("spec") or {}),
            }, namespace)
        current = current[:int(spec.get("replicas", 1))]
        ready = sum(1 for p in current if (p.get("status") or {}).get("phase") == "Running"
                    and all(c.get("ready") for c in p["status"].get("containerStatuses") or []))
        replicas = int(spec.get("replicas", 1))
        available = ready >= replicas
        old_status = deployment.get("status") or {}
        old_conditions = {c["type"]: c for c in old_status.get("conditions") or []}

        def condition(kind: str, ok: bool, reason: str, message: str) -> Obj:
            status = "True" if ok else "False"
            previous = old_conditions.get(kind)
            since = previous["lastTransitionTime"] if previous and previous["status"] == status \
                else _now()
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": since, "lastUpdateTime": since}

        status = {
            "observedGeneration": meta.get("generation", 1), "replicas": len(current),
            "updatedReplicas": len(current), "readyReplicas": ready, "availableReplicas": ready,
            "unavailableReplicas": max(replicas - ready, 0),
            "conditions": [
                condition("Available", available,
                          "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                          "Deployment has minimum availability." if available
                          else "Deployment does not have minimum availability."),
                condition("Progressing", True,
                          "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                          f'ReplicaSet "{meta["name"]}-{template_hash}" has successfully '
                          "progressed."),
            ],
        }
        for key in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[key]:
                del status[key]
        if status != old_status:
            self.emulator.replace_object("apps/v1/deployments", meta["name"], {"status": status},
                                         namespace, subresource="status")


@dataclass
class _RunningPod:
    name: str
    namespace: str
    job_uid: str
    index: int | None
    task: asyncio.Task[None] | None = None
    containers: set[asyncio.Task[int]] = field(default_factory=set)
    started: bool = False
    killed: bool = False


@dataclass
class _Outcome:
    container: Obj
    exit_code: int
    message: str
    started: str
    finished: str


@dataclass
class _JobState:
    uid: str
    succeeded_indexes: set[int] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    index_failures: Counter[int | None] = field(default_factory=Counter)
    failed_indexes: set[int] = field(default_factory=set)
    active: dict[str, _RunningPod] = field(default_factory=dict)
    not_before: dict[int | None, float] = field(default_factory=dict)
    start_time: str = ""
    finished: bool = False


def compress_indexes(indexes: set[int]) -> str:
    """`{0, 1, 2, 5}` as the Job status writes it: `"0-2,5"`."""
    ranges: list[list[int]] = []
    for index in sorted(indexes):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class JobController(_Controller):
    """Carries out Jobs with `runner` and keeps their pods and status as a real cluster would."""

    watches = ("batch/v1/jobs", "v1/pods")

    def __init__(self, emulator: ClusterEmulator, workdir: Path) -> None:
        super().__init__(emulator)
        self.workdir = workdir
        self.runner: JobRunner = SubprocessRunner()
        self.retry_delay = 0.0
        self._jobs: dict[str, _JobState] = {}
        self._pods: dict[tuple[str, str], _RunningPod] = {}

    # Hooks for tests.

    def running_pods(self, namespace: str, job: str | None = None,
                     index: int | None = None) -> list[str]:
        """Names of the pods whose containers are running now (of `job`, at `index`)."""
        names = []
        for running in list(self._pods.values()):
            if running.namespace != namespace or not running.containers:
                continue
            pod = self.emulator.get_object("v1/pods", running.name, namespace)
            labels = (pod or {}).get("metadata", {}).get("labels", {})
            if (job is None or labels.get("job-name") == job) and \
                    (index is None or running.index == index):
                names.append(running.name)
        return sorted(names)

    async def kill(self, namespace: str, pod_name: str) -> bool:
        """End the pod's running containers as killed ones (exit 137, the pod fails, the Job
        retries as its backoff limits allow); False if nothing of that pod is running."""
        running = self._pods.get((namespace, pod_name))
        if running is None or not running.containers:
            return False
        self._kill(running)
        if running.task is not None:
            await asyncio.wait([running.task])
        return True

    def _kill(self, running: _RunningPod) -> None:
        running.killed = True
        for task in running.containers:
            task.cancel()

    # Reconciling.

    def observe(self, change: Change) -> None:
        if change.type == "DELETED" and change.obj.get("kind") == "Pod":
            meta = change.obj["metadata"]
            running = self._pods.get((meta["namespace"], meta["name"]))
            if running is not None:
                self._kill(running)

    def reconcile(self) -> None:
        live = set()
        for job in self.emulator.peek_objects("batch/v1/jobs"):
            live.add(job["metadata"]["uid"])
            with contextlib.suppress(kmock.KubernetesError):
                self._reconcile(job)
        for uid in [uid for uid in self._jobs if uid not in live]:
            del self._jobs[uid]

    def _reconcile(self, job: Obj) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        state = self._jobs.setdefault(meta["uid"], _JobState(uid=meta["uid"]))
        if state.finished or meta.get("deletionTimestamp"):
            return
        if spec.get("suspend"):
            # As the real controller: suspension deletes the active pods and stops the
            # activeDeadlineSeconds clock; resuming starts it again from the resume time.
            self._stop_active(state)
            state.start_time = None
            self._write_status(job, state)
            return
        state.start_time = state.start_time or _now()
        deadline = spec.get("activeDeadlineSeconds")
        per_index = spec.get("backoffLimitPerIndex")
        max_failed = spec.get("maxFailedIndexes")
        completions = spec.get("completions")
        count = int(completions) if completions is not None else 1
        if deadline is not None and _age(state.start_time) > float(deadline):
            self._finish(job, state, "DeadlineExceeded",
                         "Job was active longer than specified deadline")
            return
        if per_index is None and state.failed > int(spec.get("backoffLimit", 6)):
            self._finish(job, state, "BackoffLimitExceeded",
                         "Job has reached the specified backoff limit")
            return
        if max_failed is not None and len(state.failed_indexes) > int(max_failed):
            self._finish(job, state, "MaxFailedIndexesExceeded",
                         "Job has exceeded the specified maximal number of failed indexes")
            return
        todo: list[int | None]
        if spec.get("completionMode") == "Indexed":
            done = state.succeeded_indexes | state.failed_indexes
            if len(done) >= count and not state.active:
                if state.failed_indexes:
                    self._finish(job, state, "FailedIndexes", "Job has failed indexes")
                    return
                self._finish(job, state, None, "Reached expected number of succeeded pods")
                return
            busy = {running.index for running in state.active.values()}
            todo = [i for i in range(count) if i not in done and i not in busy]
        else:
            if state.succeeded >= count and not state.active:
                self._finish(job, state, None, "Reached expected number of succeeded pods")
                return
            todo = [None] * max(count - state.succeeded - len(state.active), 0)
        loop = asyncio.get_running_loop()
        free = max(int(spec.get("parallelism", 1)) - len(state.active), 0)
        for index in todo[:free]:
            ready_at = state.not_before.get(index, 0.0)
            if ready_at > loop.time():
                loop.call_at(ready_at, self.wake)
            else:
                self._start_pod(job, state, index)
        self._write_status(job, state)

    def _stop_active(self, state: _JobState) -> None:
        """Delete the active pods; they are not counted as failed (suspension, a finished Job)."""
        for running in list(state.active.values()):
            del state.active[running.name]
            with contextlib.suppress(kmock.KubernetesError):
                self.emulator.delete_object("v1/pods", running.name, running.namespace,
                                            propagation="Background")

    def _start_pod(self, job: Obj, state: _JobState, index: int | None) -> None:
        meta = job["metadata"]
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        pod_spec = template.get("spec") or {}
        prefix = f"{meta['name']}-{index}-" if index is not None else f"{meta['name']}-"
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            pod_spec.setdefault("hostname", f"{meta['name']}-{index}")
            for container in [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]:
                index_field = "metadata.labels['batch.kubernetes.io/job-completion-index']"
                container.setdefault("env", []).insert(0, {
                    "name": "JOB_COMPLETION_INDEX",
                    "valueFrom": {"fieldRef": {"fieldPath": index_field}}})
        pod = self.emulator.create_object("v1/pods", {
            "metadata": {"generateName": prefix, "labels": labels, "annotations": annotations,
                         "ownerReferences": [_owner_reference(job)]},
            "spec": pod_spec,
        }, meta["namespace"])
        running = _RunningPod(name=pod["metadata"]["name"], namespace=meta["namespace"],
                              job_uid=meta["uid"], index=index)
        state.active[running.name] = running
        self._pods[(running.namespace, running.name)] = running
        running.task = self.spawn(self._run_pod(job, pod, running))

    async def _run_pod(self, job: Obj, pod: Obj, running: _RunningPod) -> None:
        workdir = self.workdir / running.namespace / running.name
        outcomes: list[_Outcome] = []
        complete = False
        try:
            pod = await self._until_configured(job, pod, running, workdir)
            if not running.killed:
                # Its containers run as processes of this host: its IP is the loopback.
                status = {**_ready_pod_status(pod, _now()), "podIP": JOB_POD_IP}
                pod = self._set_pod_status(pod, status)
                running.started = True
                self._write_status_of(running.job_uid)
            spec = pod.get("spec") or {}
            for container in spec.get("initContainers") or []:
                if running.killed:
                    break
                outcomes.append(await self._run_container(job, pod, container, running, workdir))
                if outcomes[-1].exit_code != 0:
                    break
            else:
                if not running.killed:
                    outcomes += await asyncio.gather(*(
                        self._run_container(job, pod, container, running, workdir)
                        for container in spec.get("containers") or []))
                    complete = True
        finally:
            self._pods.pop((running.namespace, running.name), None)
        succeeded = complete and all(outcome.exit_code == 0 for outcome in outcomes)
        self._record(job, pod, running, outcomes, succeeded)

    async def _until_configured(self, job: Obj, pod: Obj, running: _RunningPod,
                                workdir: Path) -> Obj:
        containers = (pod.get("spec") or {}).get("containers") or []
        while not running.killed:
            try:
                for container in containers:
                    prepare_container(self.emulator, job, pod, container, running.index, workdir)
                return pod
            except ContainerConfigError as exc:
                waiting = [{"name": c["name"], "ready": False, "restartCount": 0,
                            "image": c.get("image", ""),
                            "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                  "message": str(exc)}}} for c in containers]
                if (pod.get("status") or {}).get("containerStatuses") != waiting:
                    pod = self._set_pod_status(pod, {"phase": "Pending",
                                                     "containerStatuses": waiting})
                await asyncio.sleep(0.1)
        return pod

    async def _run_container(self, job: Obj, pod: Obj, container: Obj, running: _RunningPod,
                             workdir: Path) -> _Outcome:
        run = prepare_container(self.emulator, job, pod, container, running.index, workdir)
        started = _now()
        task = asyncio.get_running_loop().create_task(self.runner.run(run))
        running.containers.add(task)
        try:
            exit_code = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled() or _stopping():
                task.cancel()
                await asyncio.wait([task])
                raise
            exit_code = _KILLED_EXIT_CODE
        finally:
            running.containers.discard(task)
        log = run.log_path.read_text(errors="replace") if run.log_path.exists() else ""
        key = (running.namespace, running.name)
        self.emulator.pod_logs[key] = self.emulator.pod_logs.get(key, "") + log
        message = run.termination_message_path.read_text(errors="replace")[:_MESSAGE_LIMIT]
        if not message and exit_code != 0 and \
                container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "".join(log.splitlines(keepends=True)[-80:])[-2048:]
        return _Outcome(container=container, exit_code=exit_code, message=message,
                        started=started, finished=_now())

    def _record(self, job: Obj, pod: Obj, running: _RunningPod, outcomes: list[_Outcome],
                succeeded: bool) -> None:
        state = self._jobs.get(running.job_uid)
        if state is not None and state.active.pop(running.name, None) is not None:
            if succeeded:
                state.succeeded += 1
                if running.index is not None:
                    state.succeeded_indexes.add(running.index)
            else:
                state.failed += 1
                state.index_failures[running.index] += 1
                per_index = (job.get("spec") or {}).get("backoffLimitPerIndex")
                if running.index is not None and per_index is not None and \
                        state.index_failures[running.index] > int(per_index):
                    state.failed_indexes.add(running.index)
                state.not_before[running.index] = \
                    asyncio.get_running_loop().time() + self.retry_delay
        with contextlib.suppress(kmock.KubernetesError):
            self._set_pod_status(pod, _finished_pod_status(pod, outcomes, succeeded))
        self.wake()

    def _set_pod_status(self, pod: Obj, status: Obj) -> Obj:
        meta = pod["metadata"]
        return self.emulator.replace_object("v1/pods", meta["name"], {"status": status},
                                            meta["namespace"], subresource="status")

    def _finish(self, job: Obj, state: _JobState, reason: str | None, message: str) -> None:
        self._stop_active(state)
        state.finished = True
        now = _now()
        if reason is None:
            conditions = [{"type": kind, "status": "True", "reason": "CompletionsReached",
                           "message": message, "lastProbeTime": now, "lastTransitionTime": now}
                          for kind in ("SuccessCriteriaMet", "Complete")]
        else:
            conditions = [{"type": kind, "status": "True", "reason": reason, "message": message,
                           "lastProbeTime": now, "lastTransitionTime": now}
                          for kind in ("FailureTarget", "Failed")]
        self._write_status(job, state, conditions, completed=reason is None)

    def _write_status_of(self, job_uid: str) -> None:
        for job in self.emulator.peek_objects("batch/v1/jobs"):
            if job["metadata"]["uid"] == job_uid:
                self._write_status(job, self._jobs[job_uid])

    def _write_status(self, job: Obj, state: _JobState, finished: list[Obj] | None = None, *,
                      completed: bool = False) -> None:
        spec, old = job.get("spec") or {}, job.get("status") or {}
        conditions = [c for c in old.get("conditions") or [] if c["type"] != "Suspended"]
        suspended = bool(spec.get("suspend")) and not state.finished
        # Once a Job has been suspended it keeps its Suspended condition (False after a resume).
        was_suspended = any(c["type"] == "Suspended" for c in old.get("conditions") or [])
        if suspended or was_suspended:
            status_word = "True" if suspended else "False"
            previous = next((c for c in old.get("conditions") or [] if c["type"] == "Suspended"),
                            None)
            since = previous["lastTransitionTime"] if previous and \
                previous["status"] == status_word else _now()
            conditions.append({"type": "Suspended", "status": status_word,
                               "reason": "JobSuspended" if suspended else "JobResumed",
                               "message": "Job suspended" if suspended else "Job resumed",
                               "lastProbeTime": since, "lastTransitionTime": since})
        conditions += finished or []
        active = [] if state.finished else list(state.active.values())
        status: Obj = {
            "active": len(active), "ready": sum(1 for running in active if running.started),
            "succeeded": state.succeeded, "failed": state.failed, "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]
        if state.start_time and not suspended:
            status["startTime"] = state.start_time
        if spec.get("completionMode") == "Indexed":
            status["completedIndexes"] = compress_indexes(state.succeeded_indexes)
            if spec.get("backoffLimitPerIndex") is not None:
                status["failedIndexes"] = compress_indexes(state.failed_indexes)
        if conditions:
            status["conditions"] = conditions
        if completed:
            status["completionTime"] = _now()
        elif old.get("completionTime"):
            status["completionTime"] = old["completionTime"]
        if status != old:
            self.emulator.replace_object("batch/v1/jobs", job["metadata"]["name"],
                                         {"status": status}, job["metadata"]["namespace"],
                                         subresource="status")


def _finished_pod_status(pod: Obj, outcomes: list[_Outcome], succeeded: bool) -> Obj:
    status = copy.deepcopy(pod.get("status") or {})
    by_name = {outcome.container["name"]: outcome for outcome in outcomes}

    def container_status(container: Obj) -> Obj:
        outcome = by_name.get(container["name"])
        entry: Obj = {"name": container["name"], "image": container.get("image", ""),
                      "imageID": "", "ready": False, "started": False, "restartCount": 0}
        if outcome is None:
            entry["state"] = {"waiting": {"reason": "PodInitializing"}}
            return entry
        terminated: Obj = {"exitCode": outcome.exit_code,
                           "reason": "Completed" if outcome.exit_code == 0 else "Error",
                           "startedAt": outcome.started, "finishedAt": outcome.finished,
                           "containerID": f"emulated://{container['name']}"}
        if outcome.message:
            terminated["message"] = outcome.message
        entry["state"] = {"terminated": terminated}
        return entry

    spec = pod.get("spec") or {}
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [container_status(c) for c in spec["initContainers"]]
    status["containerStatuses"] = [container_status(c) for c in spec.get("containers") or []]
    status["phase"] = "Succeeded" if succeeded else "Failed"
    now = _now()
    status["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
         "lastTransitionTime": now},
        {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
    ]
    return status


def _stopping() -> bool:
    """Whether the current task itself is being cancelled (the controllers stop)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _age(timestamp: str) -> float:
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


class Controllers:
    """The fake controllers of one emulated cluster, started and stopped together."""

    def __init__(self, emulator: ClusterEmulator, workdir: Path) -> None:
        self.pods = PodController(emulator)
        self.deployments = DeploymentController(emulator)
        self.jobs = JobController(emulator, workdir)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def all(self) -> tuple[_Controller, ...]:
        return (self.pods, self.deployments, self.jobs)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(controller.run()) for controller in self.all]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for controller in self.all:
            await controller.stop()
