"""How fast `rolloutctl operator` starts runs, and how much memory it takes, at 1 and N runs.

The operator is a real process (as in tests/operator) against the emulated Kubernetes API of
tests/k8s, which runs in this process on its own thread and shares the machine. The Job
controller's runner starts no processes, so the figures are the operator's and not the repo
work's: a sync container writes a successful sync report to its termination message and exits
0; a worker container waits until it is killed, so the run stays Running. Tool pods become
Ready at once (the fake Deployment controller).

The stand-in's fake controllers, as tests/k8s has them, run a pass over every object of their
kinds after every change (reading the stored objects, not copies); under a burst of changes at
hundreds of runs that keeps the stand-in's event loop busy, and the operator waits on its
answers. By default the benchmark uses lean variants with the same decisions (passes batched,
a Job found by name rather than by a pass over all of them); `--compare-stock` also measures the
stock ones.

For each run we record, on this process's monotonic clock, from the moment we created the
RolloutRun (with the emulator's Python API, so no client process is the bottleneck):

- the sync Job created;
- `Synced=True` in the run's status (the operator read the sync report);
- the tool NetworkPolicy, Service and Deployment all created;
- the worker Job created ("started").

The operator's peak RSS is `VmHWM` and its CPU time is utime + stime, both from /proc.

Run: `.venv/bin/python bench/operator_scale.py [--runs N]`; results go to
bench/results/operator_scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model, process_cpu_s  # noqa: E402
from tests.k8s.controllers import (  # noqa: E402
    DeploymentController,
    JobController,
    PodController,
    _Controller,
)
from tests.k8s.emulator import Change, ClusterEmulator  # noqa: E402
from tests.k8s.job_runner import ContainerRun  # noqa: E402
from tests.k8s.server import EmulatedCluster, wait_for  # noqa: E402

from rollout_operator.resources.context import (  # noqa: E402
    COMPONENT_LABEL,
    INSPECT,
    RUN_UID_LABEL,
    SYNC,
    TOOLS,
    WORKERS,
)

CRD = ROOT / "crds" / "rollouts.dev_rolloutruns.yaml"
RESULTS = ROOT / "bench" / "results" / "operator_scale.md"
NAMESPACE = "bench"
RUNS_PLURAL = "rollouts.dev/v1alpha1/rolloutruns"
CHILD_RESOURCES = {
    "batch/v1/jobs": "Job",
    "apps/v1/deployments": "Deployment",
    "v1/services": "Service",
    "networking.k8s.io/v1/networkpolicies": "NetworkPolicy",
}
TOOL_KINDS = ("NetworkPolicy", "Service", "Deployment")
SYNC_REPORT = {
    "ok": True,
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "bundle": "s3://bench-runs/bundles/0123456789abcdef-00000000.tar.gz",
    "bundleFetchURL": "https://s3.example.com/bench-runs/bundles/0123456789abcdef-00000000.tar.gz"
                      "?X-Amz-Signature=bench",
    "reused": True,
    "depsHash": "00000000",
    "tools": ["add", "multiply"],
    "scorers": ["reward_fn.compute_reward:numbers_match_reward"],
    "fastmcpVersion": "4.2.3",
    "datasetRows": 100,
    "workItems": 400,
    "problems": [],
}
INSPECTION_REPORT = {
    "version": 1,
    "tools": ["add", "multiply"],
    "scorers": ["reward_fn.compute_reward:numbers_match_reward"],
    "fastmcpVersion": "2.12.4",
    "problems": [],
}


class NoProcessRunner:
    """A Job runner that starts no process: sync and inspection report success, workers run
    until killed."""

    async def run(self, run: ContainerRun) -> int:
        labels = (run.job.get("metadata") or {}).get("labels") or {}
        component = labels.get(COMPONENT_LABEL)
        init_names = {c.get("name") for c in (run.pod.get("spec") or {}).get("initContainers")
                      or []}
        if run.container.get("name") in init_names:
            return 0
        if component in (SYNC, INSPECT):
            report = SYNC_REPORT if component == SYNC else INSPECTION_REPORT
            run.termination_message_path.write_text(json.dumps(report))
            return 0
        await asyncio.Event().wait()  # a worker: busy until the pod is killed
        return 0


class _Debounced(_Controller):
    """A controller that reconciles once per `debounce` seconds at most, after changes.

    The stock controllers run a pass over every object of their kinds after each single change;
    under a burst of changes that keeps the stand-in's event loop busy copying objects. Changes
    within the window are handled by one pass, as a real controller's work queue would batch
    them.
    """

    debounce = 0.2
    _pending = False

    def wake(self) -> None:
        if self._pending:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(self.debounce, self._wake_now)

    def _wake_now(self) -> None:
        self._pending = False
        super().wake()


class LeanPodController(_Debounced, PodController):
    """tests/k8s's Pod controller, with passes batched (see `_Debounced`)."""


class LeanDeploymentController(_Debounced, DeploymentController):
    """tests/k8s's Deployment controller, with passes batched (see `_Debounced`)."""


class LeanJobController(_Debounced, JobController):
    """tests/k8s's Job controller, with passes batched, finding a Job by name, not by listing.

    The stock one lists (and copies) every Job of the cluster to find the one whose pod just
    started.
    """

    def __init__(self, emulator: ClusterEmulator, workdir: Path) -> None:
        super().__init__(emulator, workdir)
        self._names: dict[str, tuple[str, str]] = {}

    def _reconcile(self, job: dict[str, Any]) -> None:
        metadata = job["metadata"]
        self._names[metadata["uid"]] = (metadata["namespace"], metadata["name"])
        super()._reconcile(job)

    def _write_status_of(self, job_uid: str) -> None:
        where = self._names.get(job_uid)
        job = self.emulator.get_object("batch/v1/jobs", where[1], where[0]) if where else None
        state = self._jobs.get(job_uid)
        if job is not None and job["metadata"]["uid"] == job_uid and state is not None:
            self._write_status(job, state)


def run_manifest(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "repo": {"url": "https://git.example.com/team/calculator.git", "revision": "main"},
        "dataset": {"path": "test_data.jsonl", "samplesPerPrompt": 4},
        "model": {"name": "openai/bench-model", "baseURL": "https://llm.example.com/v1",
                  "apiKeySecret": {"name": "llm-api-key", "key": "api-key"}},
        "scoring": {"functions": ["reward_fn.compute_reward:numbers_match_reward"]},
        "workers": {"shards": 2, "concurrency": 64},
        "output": {"url": "s3://bench-runs/out", "endpoint": "https://s3.example.com",
                   "credentialsSecret": "rollout-storage"},
    }
    return {"apiVersion": "rollouts.dev/v1alpha1", "kind": "RolloutRun",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": data}


@dataclass
class RunTimes:
    """Seconds since the run was created, on this process's monotonic clock."""

    name: str
    created: float
    uid: str = ""
    sync_job: float | None = None
    synced: float | None = None
    tools: dict[str, float] = field(default_factory=dict)
    workers: float | None = None

    @property
    def tools_created(self) -> float | None:
        if len(self.tools) < len(TOOL_KINDS):
            return None
        return max(self.tools.values())


class Recorder:
    """Watches the emulator from its own loop and notes when each run's children appear."""

    def __init__(self) -> None:
        self.runs: dict[str, RunTimes] = {}
        self.by_uid: dict[str, RunTimes] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, cluster: EmulatedCluster) -> None:
        emulator = cluster.emulator
        for resource in [*CHILD_RESOURCES, RUNS_PLURAL]:
            queue = emulator.subscribe(resource, NAMESPACE)
            self._tasks.append(asyncio.create_task(self._follow(queue)))

    async def _follow(self, queue: asyncio.Queue[Change | None]) -> None:
        while (change := await queue.get()) is not None:
            self._note(change, time.monotonic())

    def _note(self, change: Change, now: float) -> None:
        if change.type == "DELETED":
            return
        metadata = change.obj.get("metadata") or {}
        kind = change.obj.get("kind")
        if kind == "RolloutRun":
            times = self.by_uid.get(str(metadata.get("uid")))
            if times is not None and times.synced is None and _synced(change.obj):
                times.synced = now - times.created
            return
        labels = metadata.get("labels") or {}
        times = self.by_uid.get(str(labels.get(RUN_UID_LABEL)))
        if times is None or change.type != "ADDED":
            return
        component = labels.get(COMPONENT_LABEL)
        if kind == "Job" and component == SYNC and times.sync_job is None:
            times.sync_job = now - times.created
        elif kind == "Job" and component == WORKERS and times.workers is None:
            times.workers = now - times.created
        elif kind in TOOL_KINDS and component == TOOLS:
            times.tools.setdefault(str(kind), now - times.created)

    async def create_runs(self, cluster: EmulatedCluster, names: list[str]) -> None:
        """Create the runs back to back, noting each one's creation time."""
        for name in names:
            times = RunTimes(name=name, created=time.monotonic())
            created = cluster.emulator.create_object(RUNS_PLURAL, run_manifest(name), NAMESPACE)
            times.uid = str(created["metadata"]["uid"])
            self.runs[name] = times
            self.by_uid[times.uid] = times
            await asyncio.sleep(0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def started(self) -> int:
        return sum(1 for times in self.runs.values() if times.workers is not None)


def _synced(run: dict[str, Any]) -> bool:
    for condition in (run.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Synced" and condition.get("status") == "True":
            return True
    return False


def proc_status(pid: int) -> dict[str, int]:
    """Memory figures of /proc/<pid>/status in kB (VmHWM, VmRSS, ...); empty once it is gone."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


@dataclass
class Scenario:
    runs: int
    stand_in: str
    repetition: int
    timeout: float
    times: list[RunTimes]
    wall_s: float | None
    create_s: float
    operator_hwm_mb: float
    operator_rss_mb: float
    operator_cpu_s: float
    operator_threads: int
    here_cpu_s: float
    api_calls: Counter[str]
    events: Counter[str]
    load_before: float
    timed_out: bool
    log_tail: str
    create_conflicts: int = 0
    """Creates the API server refused with 409 (the object existed)."""
    duplicate_events: int = 0
    """Events whose (run, reason) was posted before."""

    @property
    def started(self) -> int:
        return sum(1 for t in self.times if t.workers is not None)

    def summary(self) -> dict[str, Any]:
        requests = sum(self.api_calls.values())
        return {
            "runs": self.runs, "started": self.started,
            "all_started_s": round(self.wall_s, 2) if self.wall_s is not None else None,
            "api_requests": requests,
            "api_requests_per_started_run": round(requests / max(1, self.started), 2),
            "create_conflicts": self.create_conflicts,
            "duplicate_events": self.duplicate_events,
            "operator_peak_rss_mb": round(self.operator_hwm_mb, 1),
            "operator_cpu_s": round(self.operator_cpu_s, 2),
            "stand_in_cpu_s": round(self.here_cpu_s, 2),
            "load_before": round(self.load_before, 2),
        }


class Operator:
    """`rolloutctl operator` as the Helm chart's Deployment runs it, in its own session."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig),
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, verbose: bool) -> int:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rollout_operator.cli.main", "operator",
                 "-n", NAMESPACE, *(["--verbose"] if verbose else [])],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def _watching_runs(cluster: EmulatedCluster) -> bool:
    return any(call.verb == "watch" and call.resource == "rolloutruns"
               for call in list(cluster.emulator.calls))


def _prepare(cluster: EmulatedCluster) -> None:
    crd = yaml.safe_load(CRD.read_text())

    async def setup() -> None:
        emulator = cluster.emulator
        emulator.create_object("apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        emulator.ensure_namespace(NAMESPACE)
        emulator.create_object("v1/secrets", _secret("llm-api-key", {"api-key": "sk-bench"}),
                               NAMESPACE)
        emulator.create_object("v1/secrets", _secret("rollout-storage", {
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1"}), NAMESPACE)

    cluster.call(setup())

    def served() -> bool:
        try:
            cluster.emulator.resource_type(RUNS_PLURAL)
        except KeyError:
            return False
        return True

    wait_for(served, 10, message="the RolloutRun CRD to be served")


def run_scenario(runs: int, *, lean: bool, repetition: int, timeout: float,
                 operator_env: dict[str, str], verbose: bool, keep: Path | None) -> Scenario:
    workdir = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    recorder = Recorder()
    here_cpu_before = process_cpu_s(os.getpid())
    load_before = os.getloadavg()[0]
    cluster = EmulatedCluster(workdir / "cluster")
    if lean:
        controllers = cluster.controllers
        controllers.pods = LeanPodController(cluster.emulator)
        controllers.deployments = LeanDeploymentController(cluster.emulator)
        controllers.jobs = LeanJobController(cluster.emulator, controllers.jobs.workdir)
    cluster.controllers.jobs.runner = NoProcessRunner()
    try:
        with cluster:
            _prepare(cluster)
            operator = Operator(cluster.kubeconfig, workdir / "operator.log", operator_env)
            pid = operator.start(verbose)
            try:
                wait_for(lambda: _watching_runs(cluster) or not operator.alive(), 60,
                         interval=0.05, message="the operator to watch RolloutRuns")
                if not operator.alive():
                    raise RuntimeError("the operator exited:\n" +
                                       operator.log_path.read_text(errors="replace")[-5000:])
                time.sleep(1.0)  # let the start-up settle, so it is not counted in the first run
                cpu_before = process_cpu_s(pid)
                calls_before = len(cluster.emulator.calls)
                cluster.call(recorder.start(cluster))
                names = [f"run-{i:03d}" for i in range(runs)]
                begin = time.monotonic()
                cluster.call(recorder.create_runs(cluster, names), timeout=60)
                create_s = time.monotonic() - begin
                deadline = begin + timeout
                hwm = 0
                while recorder.started() < runs and time.monotonic() < deadline:
                    if not operator.alive():
                        raise RuntimeError("the operator exited:\n" + operator.log_path.read_text(
                            errors="replace")[-5000:])
                    hwm = max(hwm, proc_status(pid).get("VmHWM", 0))
                    time.sleep(0.1)
                timed_out = recorder.started() < runs
                status = proc_status(pid)
                cpu = process_cpu_s(pid) - cpu_before
                threads = len(os.listdir(f"/proc/{pid}/task"))
                calls = cluster.emulator.calls[calls_before:]
                posted = cluster.emulator.list_objects("v1/events", NAMESPACE)
                events = Counter(str(event.get("reason")) for event in posted)
                per_run = Counter((str((event.get("involvedObject") or {}).get("uid")),
                                   str(event.get("reason"))) for event in posted)
            finally:
                operator.stop()
            cluster.call(recorder.stop())
            here_cpu = process_cpu_s(os.getpid()) - here_cpu_before
        times = sorted(recorder.runs.values(), key=lambda t: t.name)
        ends = [t.created + t.workers for t in times if t.workers is not None]
        wall = (max(ends) - begin) if ends and not timed_out else None
        log = (workdir / "operator.log").read_text(errors="replace")
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(workdir / "operator.log", keep)
        return Scenario(
            runs=runs, stand_in="lean" if lean else "stock", repetition=repetition,
            timeout=timeout, times=times, wall_s=wall, create_s=create_s,
            operator_hwm_mb=max(hwm, status.get("VmHWM", 0)) / 1024,
            operator_rss_mb=status.get("VmRSS", 0) / 1024, operator_cpu_s=cpu,
            operator_threads=threads, here_cpu_s=here_cpu,
            api_calls=Counter(f"{c.verb} {c.resource}" + (f"/{c.subresource}" if c.subresource
                                                          else "") for c in calls),
            events=events, load_before=load_before, timed_out=timed_out,
            create_conflicts=sum(1 for c in calls if c.verb == "create" and c.status == 409),
            duplicate_events=sum(count - 1 for count in per_run.values()),
            log_tail=log[-3000:])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def _stats(values: list[float | None]) -> str:
    done = [v for v in values if v is not None]
    if not done:
        return "- | - | - | -"
    missing = len(values) - len(done)
    return (f"{percentile(done, 50):.2f} | {percentile(done, 95):.2f} | {max(done):.2f} | "
            f"{len(done)}{f' ({missing} missing)' if missing else ''}")


def _wall(s: Scenario) -> str:
    if s.wall_s is not None:
        return f"{s.wall_s:.1f}"
    started = sum(t.workers is not None for t in s.times)
    return f"not all ({started} of {s.runs} in {s.timeout:.0f} s)"


def report(scenarios: list[Scenario], interval: str, command: str, note: str) -> str:
    lines = [
        "# Operator scale (`rolloutctl operator`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `{command}`",
        f"- machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"kopf {_dist_version('kopf')}, kubernetes client {_dist_version('kubernetes')}",
        f"- operator: `rolloutctl operator -n {NAMESPACE}` as a process, reconcile interval "
        f"{interval} s; the API stand-in (tests/k8s) and its fake controllers run in the "
        "benchmark process and share the machine, which other work shares too (see the load "
        "average column)",
        "- Job runner: no processes; the sync and inspection containers write successful reports, "
        "a worker container waits until it is killed; tool and scorer pods are Ready at once",
        "- stand-in: *stock* is tests/k8s as it is; *lean* is the same emulator with the fake "
        f"controllers' passes batched ({_Debounced.debounce * 1000:.0f} ms) and the Job "
        "controller finding a Job by name "
        "(`LeanPodController`, `LeanDeploymentController`, `LeanJobController` in the script)",
        "",
        "Seconds from the creation of each RolloutRun:",
        "",
        "| runs | stand-in | # | milestone | p50 | p95 | max | runs reaching it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        head = f"| {s.runs} | {s.stand_in} | {s.repetition} |"
        lines += [
            f"{head} sync Job created | {_stats([t.sync_job for t in s.times])} |",
            f"{head} Synced (report read) | {_stats([t.synced for t in s.times])} |",
            f"{head} tool NetworkPolicy, Service, Deployment created | "
            f"{_stats([t.tools_created for t in s.times])} |",
            f"{head} worker Job created (started) | {_stats([t.workers for t in s.times])} |",
        ]
    lines += [
        "",
        "| runs | stand-in | # | all started after (s) | creating them took (s) | "
        "operator peak RSS (VmHWM) | RSS at the end | operator CPU (s) | threads | "
        "stand-in + benchmark CPU (s) | API requests (per started run) | create conflicts | "
        "duplicate Events | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.runs} | {s.stand_in} | {s.repetition} | **{_wall(s)}** | {s.create_s:.2f} | "
            f"**{s.operator_hwm_mb:.0f} MB** | {s.operator_rss_mb:.0f} MB | "
            f"{s.operator_cpu_s:.1f} | {s.operator_threads} | {s.here_cpu_s:.1f} | "
            f"{sum(s.api_calls.values())} ({s.summary()['api_requests_per_started_run']}) | "
            f"{s.create_conflicts} | {s.duplicate_events} | {s.load_before:.2f} |")
    lines += ["", "Targets: 100 runs all started within 30 s, 1,000 within 120 s; at most 25 API "
              "requests per started run; no create conflicts; no duplicate Events; operator "
              "peak RSS under 300 MB.", ""]
    big = max(scenarios, key=lambda s: (s.runs, s.stand_in == "lean", -s.repetition))
    lines += [f"API requests of the operator while {big.runs} runs started ({big.stand_in} "
              f"stand-in, #{big.repetition}), by verb and resource: " +
              ", ".join(f"{key} {count}" for key, count in big.api_calls.most_common()) + ".",
              "",
              "Events in the namespace by reason: " +
              ", ".join(f"{key} {count}" for key, count in big.events.most_common()) + "."]
    if note:
        lines += ["", note.strip()]
    return "\n".join(lines) + "\n"


def results_json(scenarios: list[Scenario], runs: int) -> str:
    """Per-run times of every scenario, and a `summary` of the large one (over repetitions,
    the worst of each figure)."""
    large = [s.summary() for s in scenarios if s.runs == runs and s.stand_in == "lean"]
    summary = dict(large[-1]) if large else {}
    for figure in ("all_started_s", "api_requests", "api_requests_per_started_run",
                   "create_conflicts", "duplicate_events", "operator_peak_rss_mb"):
        values = [one[figure] for one in large]
        summary[figure] = None if None in values else max(values, default=None)
    summary["started"] = min((one["started"] for one in large), default=0)
    return json.dumps({"summary": summary, "scenarios": [{
        "runs": s.runs, "standIn": s.stand_in, "repetition": s.repetition,
        "summary": s.summary(),
        "times": [{"name": t.name, "syncJob": t.sync_job, "synced": t.synced,
                   "tools": t.tools_created, "workers": t.workers} for t in s.times],
    } for s in scenarios]}, indent=1)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs of the large scenario")
    parser.add_argument("--repeat", type=int, default=3,
                        help="how many times to measure the large scenario (lean stand-in)")
    parser.add_argument("--timeout", type=float, default=180,
                        help="seconds each scenario may take before it is cut short")
    parser.add_argument("--interval", type=float, default=None,
                        help="ROLLOUT_OPERATOR_RECONCILE_INTERVAL_SECONDS (default: the "
                        "operator's own)")
    parser.add_argument("--compare-stock", action="store_true",
                        help="also measure 1 and --runs runs once with tests/k8s's controllers "
                        "as they are")
    parser.add_argument("--verbose", action="store_true", help="run the operator with --verbose")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy the operator log of the last large lean scenario here")
    parser.add_argument("--json", type=Path, default=None, help="write per-run times here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", type=Path, default=None,
                        help="a file whose text is appended to the report (the analysis)")
    args = parser.parse_args()
    if args.runs < 1 or args.repeat < 1:
        parser.error("--runs and --repeat must be at least 1")
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if args.interval is not None:
        env["ROLLOUT_OPERATOR_RECONCILE_INTERVAL_SECONDS"] = str(args.interval)
    from rollout_operator.settings import OperatorSettings

    interval = str(args.interval if args.interval is not None else
                   OperatorSettings().reconcile_interval_seconds)
    plan = [(1, True, 1)] if args.runs > 1 else []
    plan += [(args.runs, True, i + 1) for i in range(args.repeat)]
    if args.compare_stock:
        plan += [(count, False, 1) for count in sorted({1, args.runs})]
    scenarios = []
    for count, lean, repetition in plan:
        print(f"== {count} run(s), {'lean' if lean else 'stock'} stand-in, #{repetition}",
              flush=True)
        keep = args.keep_log if count == args.runs and lean else None
        scenario = run_scenario(count, lean=lean, repetition=repetition, timeout=args.timeout,
                                operator_env=env, verbose=args.verbose, keep=keep)
        scenarios.append(scenario)
        print(f"   all started after (s): {_wall(scenario)}; peak RSS "
              f"{scenario.operator_hwm_mb:.0f} MB, operator CPU {scenario.operator_cpu_s:.1f} s",
              flush=True)
        if scenario.timed_out:
            print(scenario.log_tail, flush=True)
    if args.json:
        args.json.write_text(results_json(scenarios, args.runs))
    note = args.note.read_text() if args.note else ""
    command = " ".join([".venv/bin/python bench/operator_scale.py", *sys.argv[1:]])
    text = report(scenarios, interval, command, note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
