"""The local backend: one RolloutRun carried through its phases on this machine.

Each phase is the operator's own phase code, run where a laptop can run it:

- sync: the repo is pinned here (cloned, or a local folder copied: see `source`), then the
  sync Job's `rolloutctl sync` validates it and stores its bundle, sandboxed; the bundle is
  unpacked as the tool pods' init container does;
- inference (`spec.model.serve`): the engine as a local process on a loopback port;
- tools: `rolloutctl serve-tools`, a local process, sandboxed, on a loopback port;
- rollouts: one `rolloutctl work` process per shard (the worker Job's pods), sandboxed;
- aggregate: the aggregate Job's `aggregate_run`, in this process.

Files land in the same layout under the output URL, so a run that stops (Ctrl-C, a crash, a
failed shard) is resumed by running the same manifest again: shards skip what is committed.
Beside them, `local-run.json` (`run_state`) says which phase the run is in and how it ended,
for `rolloutctl runs` and `describe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from rollout_operator.local.processes import (
    EXIT_CONFIG,
    EXIT_STOPPED,
    Child,
    ChildFailed,
    ScorerServer,
    ShardOutcome,
    ToolServer,
    read_message,
    rolloutctl_argv,
    run_shard_process,
    start_child,
    start_scorer_server,
    start_tool_server,
    tail,
    tool_server_env,
    worker_env,
)
from rollout_operator.local.progress import CommitTracker, ProgressState, ProgressView
from rollout_operator.local.run_file import LocalRun
from rollout_operator.local.run_state import StateWriter
from rollout_operator.local.sandbox import Limits, SandboxPolicy, parse_quantity, runtime_paths
from rollout_operator.runtime.run_config import RunConfig

log = logging.getLogger(__name__)

RunState = Literal["Succeeded", "Failed", "Stopped"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

DEFAULT_TOOL_MEMORY = "4Gi"
DEFAULT_WORKER_MEMORY = "8Gi"
"""Address space, not resident memory: Python, litellm and pyarrow map far more than they use."""
MIN_WORKER_MEMORY = "2Gi"
"""A worker maps about 0.85 GiB before its first rollout; a smaller address space cannot run."""
DEFAULT_CPU_SECONDS = 6 * 3600
DEFAULT_OPEN_FILES = 4096
COMMIT_INTERVAL_S = "2"
INSPECT_DEADLINE_S = 900.0
"""As the cluster's sync deadline: importing a repo that takes longer is a repo problem."""
POLL_INTERVAL_S = 1.0


class RunFailed(Exception):
    """A phase cannot go on; `exit_code` 2 when the spec or repo must change, else 1."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED,
                 problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.problems = problems or []


@dataclass
class RunResult:
    """How the run ended; `as_json()` is what `--json` prints."""

    run: LocalRun
    state: RunState
    exit_code: int
    run_prefix: str | None = None
    commit: str | None = None
    source: str | None = None
    sandbox: bool = True
    summary: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    logs: str | None = None
    duration_s: float = 0.0
    restarts: dict[str, int] = field(default_factory=lambda: {"tools": 0, "scorers": 0})
    """Times a user-code server died and was started again (a tool or scorer killed it)."""
    outage_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds the workers and the aggregate waited out outages, by dependency."""

    @property
    def ok(self) -> bool:
        return self.state == "Succeeded"

    def as_json(self) -> dict[str, Any]:
        summary = self.summary or {}
        return {
            "ok": self.ok,
            "state": self.state,
            "exitCode": self.exit_code,
            "name": self.run.name,
            "namespace": self.run.namespace,
            "uid": self.run.uid,
            "policyVersion": self.run.spec.model.policy_version,
            "generation": self.run.generation,
            "runPrefix": self.run_prefix,
            "commit": self.commit,
            "source": self.source,
            "sandbox": self.sandbox,
            "progress": summary.get("progress") or self.progress,
            "summary": summary.get("summary") or {},
            "samples": summary.get("samples") or [],
            "artifacts": summary.get("artifacts") or {},
            "error": self.error,
            "problems": self.problems,
            "logs": self.logs,
            "restarts": dict(self.restarts),
            "outageSeconds": dict(self.outage_seconds),
            "durationSeconds": round(self.duration_s, 3),
        }


@dataclass
class LocalOptions:
    """How to run: sandboxed or not, and with which environment."""

    sandbox: bool = True
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    workdir: Path | None = None


class LocalBackend:
    """Runs one `LocalRun`; `request_stop()` (Ctrl-C) stops it gracefully."""

    def __init__(self, run: LocalRun, view: ProgressView, options: LocalOptions) -> None:
        self.run = run
        self.view = view
        self.options = options
        self.environ = dict(options.environ)
        self.stop = asyncio.Event()
        self.result = RunResult(run, "Failed", EXIT_FAILED, sandbox=options.sandbox)
        self.state = ProgressState()
        self._started = time.monotonic()
        self._children: list[Callable[[], None]] = []
        self._record: StateWriter | None = None

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self.view.note("stopping: committing the finished rollouts (Ctrl-C again to stop "
                           "at once)")
        self.stop.set()

    def kill_children(self) -> None:
        for kill in self._children:
            with contextlib.suppress(Exception):
                kill()

    async def execute(self) -> RunResult:
        workdir = Path(tempfile.mkdtemp(prefix="rollout-run-", dir=self.options.workdir))
        keep = False
        try:
            await self._phases(workdir)
        except RunFailed as exc:
            self.result.state, self.result.exit_code = "Failed", exc.exit_code
            self.result.error = str(exc)
            self.result.problems = exc.problems
            keep = exc.exit_code != EXIT_INVALID
        except asyncio.CancelledError:
            self.result.state, self.result.exit_code = "Stopped", EXIT_INTERRUPTED
            self.result.error = "stopped"
        finally:
            self.result.duration_s = time.monotonic() - self._started
            self.result.progress = self.state.as_dict()
            logs = workdir / "logs"
            if keep and logs.is_dir() and any(logs.iterdir()):
                self.result.logs = str(logs)
                shutil.rmtree(workdir / "sync", ignore_errors=True)
                shutil.rmtree(workdir / "source", ignore_errors=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        await self._ended()
        return self.result

    async def _ended(self) -> None:
        """How the run ended, in its `local-run.json`."""
        if self._record is None:
            return
        from rollout_operator.local.run_state import utc_now

        await self._record.update(
            state=self.result.state, exitCode=self.result.exit_code, error=self.result.error,
            finishedAt=utc_now(), pid=None, logs=self.result.logs,
            durationSeconds=round(self.result.duration_s, 3))

    async def _phase(self, phase: str) -> None:
        if self._record is not None:
            await self._record.update(phase=phase)

    # --- phases ---------------------------------------------------------------------------

    async def _phases(self, workdir: Path) -> None:
        from rollout_operator.runtime.run_layout import run_prefix

        run = self.run
        if run.spec.suspend:
            raise RunFailed("spec.suspend is true: set it to false (or remove it) to run",
                            exit_code=EXIT_INVALID)
        if self.options.sandbox:
            self._check_sandbox()
        else:
            self.view.note("--no-sandbox: the repo's tools and scorers run without isolation")
        if run.spec.model.serve is not None:
            self._check_engine(run.spec.model.serve)
        prefix = run_prefix(run.output_url, run.namespace, run.name, run.uid)
        self.result.run_prefix = prefix
        await self._start_record(prefix)
        config = RunConfig(spec=run.spec, namespace=run.namespace, name=run.name, uid=run.uid,
                           run_prefix=prefix, repo_dir=str(workdir / "repo"))
        config = await self._sync(config, workdir)
        self._raise_if_stopped()
        await self._phase("work")
        total = self.state.total
        committed = await self._committed(config)
        if total and committed >= total:
            self.view.set_phase("work", f"all {total} rollouts are already committed")
        else:
            await self._serve_and_work(config, workdir)
        self._raise_if_stopped()
        await self._phase("aggregate")
        await self._aggregate(config)

    async def _start_record(self, prefix: str) -> None:
        from rollout_operator.runtime.storage import StorageError, open_store

        try:
            store = open_store(prefix, endpoint=self.run.spec.output.endpoint,
                               environ=self.environ)
        except (StorageError, ValueError):
            return  # the sync phase says what is wrong with the output URL
        self._record = StateWriter(store, self.run)
        await self._record.update(phase="sync")

    def _check_sandbox(self) -> None:
        from rollout_operator.local.sandbox import sandbox_problem

        problem = sandbox_problem()
        if problem is not None:
            raise RunFailed(problem, exit_code=EXIT_INVALID)

    def _check_engine(self, serve: Any) -> None:
        """Before any work: is the engine `spec.model.serve` names installed here?"""
        from rollout_operator.local.inference import EngineMissing, engine_command

        try:
            engine_command(serve, 0)
        except EngineMissing as exc:
            raise RunFailed(str(exc), exit_code=EXIT_INVALID) from None

    def _raise_if_stopped(self) -> None:
        if self.stop.is_set():
            raise asyncio.CancelledError

    async def _sync(self, config: RunConfig, workdir: Path) -> RunConfig:
        """Pin the repo, then `rolloutctl sync` (sandboxed: validating the repo imports its
        code, and building the bundle installs its dependencies) on that checkout, then unpack
        the bundle it stored, as a tool pod's init container does."""
        from rollout_operator.cli.pod_serve_tools import unpack_bundle_url
        from rollout_operator.local.source import SourceChanged, prepare_source
        from rollout_operator.runtime.git_sync import GitSyncError

        spec = config.spec
        self.view.set_phase("sync", f"{spec.repo.url}" + (f" ({spec.repo.path})"
                                                           if spec.repo.path else ""))
        pinned = await self._pinned_commit(config)
        exclude = [p for p in (_file_path(self.run.output_url),) if p is not None]
        try:
            source = await asyncio.to_thread(
                prepare_source, spec.repo.url, spec.repo.revision, spec.repo.path,
                workdir / "source", pinned_commit=pinned, exclude=exclude,
                environ=self.environ)
        except GitSyncError as exc:
            retry = exc.kind in ("network", "git_failed")
            hint = "" if retry or not pinned else (
                f"; run the same command with --fresh to start a new run beside this one (its "
                f"results stay in {config.run_prefix})" + (
                    ", or restore the folder's files to resume it"
                    if isinstance(exc, SourceChanged) else ""))
            raise RunFailed(f"{exc}{hint}", exit_code=EXIT_FAILED if retry else EXIT_INVALID)\
                from None
        self.result.source = source.description
        self.result.commit = source.commit
        self.view.set_phase("sync", f"using {source.description}")
        report = await self._sync_process(config, workdir, source.checkout.path, source.commit)
        self.state.total = int(report.get("workItems") or 0)
        repo_dir = workdir / "repo"
        await asyncio.to_thread(unpack_bundle_url, str(report["bundle"]), repo_dir,
                                endpoint=spec.output.endpoint)
        inspection = await self._inspect(config, workdir, repo_dir)
        reuse = "reused" if report.get("reused") else "built"
        self.view.set_phase("sync", f"bundle {reuse}: {report.get('bundle')}; tools "
                            f"{', '.join(inspection.tools)}; scorers "
                            f"{', '.join(inspection.scorers) or 'none'}; "
                            f"{self.state.total} rollouts" + _invalid_rows(report))
        return config.model_copy(update={
            "repo_dir": str(repo_dir), "bundle_url": report["bundle"],
            "commit": report.get("commit"), "fastmcp_version": inspection.fastmcp_version,
            "scorers": list(inspection.scorers), "tools": list(inspection.tools),
        })

    async def _inspect(self, config: RunConfig, workdir: Path, repo_dir: Path) -> Any:
        """`rolloutctl inspect` on the unpacked bundle, on the user-code side: sandboxed with
        no network and no credential, writing nothing but its report."""
        from rollout_operator.runtime.inspection import InspectionReport

        logs = workdir / "logs"
        out = workdir / "inspect"
        for folder in (logs, out):
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        message = out / "inspect.json"
        env = tool_server_env(self.environ)
        env["ROLLOUT_TERMINATION_MESSAGE_PATH"] = str(message)
        args = ["inspect", "--repo", str(repo_dir)]
        if config.spec.rollout is not None:
            args += ["--rollout", config.spec.rollout.name,
                     "--rollout-entrypoint", config.spec.rollout.entrypoint]
        for ref in config.spec.scoring.functions or []:
            args += ["--scorer", ref]
        policy = None
        if self.options.sandbox:
            # The worker's address-space limit, as sync had when it imported the repo: a
            # tool server too big for its own limit still fails where its log says so.
            policy = SandboxPolicy(
                network="none", readable=(*runtime_paths(), repo_dir), writable=(out,),
                limits=Limits(parse_quantity(DEFAULT_WORKER_MEMORY), DEFAULT_CPU_SECONDS,
                              DEFAULT_OPEN_FILES))
        child = await start_child("inspection", rolloutctl_argv(*args), env=env,
                                  log_path=logs / "inspect.log", sandbox=policy, cwd=out)
        self._children.append(child.kill)
        try:
            code = await asyncio.wait_for(self._wait_or_stop(child), INSPECT_DEADLINE_S)
        except TimeoutError:
            child.kill()
            raise RunFailed(
                f"inspecting the repository did not finish within {INSPECT_DEADLINE_S:.0f} s "
                "(importing mcp/main.py or a scorer module hangs?):\n"
                f"{tail(child.log_path)}", exit_code=EXIT_INVALID) from None
        raw = read_message(message)
        try:
            report = InspectionReport.model_validate(raw)
        except ValueError:
            raise _phase_failed("inspecting the repository", code, raw, child,
                                retryable=True) from None
        if report.problems:
            raise _repo_problems([p.model_dump() for p in report.problems])
        if code != 0 or not raw.get("ok"):
            raise _phase_failed("inspecting the repository", code, raw, child)
        return report

    async def _sync_process(self, config: RunConfig, workdir: Path, checkout: Path,
                            commit: str) -> dict[str, Any]:
        """`rolloutctl sync --checkout` as the sync Job's pod; its report."""
        logs = workdir / "logs"
        scratch = workdir / "sync"
        for folder in (logs, scratch):
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        message = logs / "sync.json"
        env = worker_env(self.environ)
        env.update(config.env())
        env["ROLLOUT_TERMINATION_MESSAGE_PATH"] = str(message)
        policy = None
        if self.options.sandbox:
            writable = [scratch, logs]
            output = _file_path(self.run.output_url)
            if output is not None:
                await asyncio.to_thread(output.mkdir, parents=True, exist_ok=True)
                writable.append(output)
            policy = SandboxPolicy(
                network="host", readable=(*runtime_paths(), checkout), writable=tuple(writable),
                limits=Limits(parse_quantity(DEFAULT_WORKER_MEMORY), DEFAULT_CPU_SECONDS,
                              DEFAULT_OPEN_FILES))
        child = await start_child(
            "sync", rolloutctl_argv("sync", "--workdir", str(scratch), "--checkout",
                                    str(checkout), "--commit", commit),
            env=env, log_path=logs / "sync.log", sandbox=policy, cwd=logs)
        self._children.append(child.kill)
        code = await self._wait_or_stop(child)
        report = read_message(message)
        if code == 0 and report.get("ok") and report.get("bundle"):
            return report
        problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
        if problems:
            raise _repo_problems(problems)
        raise _phase_failed("sync", code, report, child)

    async def _wait_or_stop(self, child: Child) -> int:
        """The child's exit code; stops it (and the run) when a stop is requested first."""
        waiter = asyncio.ensure_future(child.process.wait())
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not waiter.done():
            await child.stop(grace_s=10)
            raise asyncio.CancelledError
        return waiter.result()

    async def _pinned_commit(self, config: RunConfig) -> str | None:
        """The commit this run started with, when an earlier invocation synced it."""
        import json

        from rollout_operator.runtime.run_layout import RUN_JSON
        from rollout_operator.runtime.storage import StorageError, open_store

        try:
            store = open_store(config.run_prefix, endpoint=config.spec.output.endpoint,
                               environ=self.environ)
            if not await store.exists(RUN_JSON):
                return None
            document = json.loads(await store.get(RUN_JSON))
        except (StorageError, ValueError) as exc:
            raise RunFailed(f"cannot read the run's earlier state: {exc}") from None
        commit = document.get("commit") if isinstance(document, dict) else None
        if commit:
            self.view.note(f"resuming {config.run_prefix} (started at {commit})", style="cyan")
        return str(commit) if commit else None

    async def _committed(self, config: RunConfig) -> int:
        from rollout_operator.runtime.shards import committed_items
        from rollout_operator.runtime.storage import open_store

        store = open_store(config.run_prefix, endpoint=config.spec.output.endpoint,
                           environ=self.environ)
        count = 0
        for index in range(config.spec.workers.shards):
            count += len(await committed_items(store, "", index))
        return count

    async def _serve_and_work(self, config: RunConfig, workdir: Path) -> None:
        if config.spec.rollout is not None:
            await self._serve_rollout_and_work(config, workdir)
            return
        logs = workdir / "logs"
        model_server = None
        tools: ToolServer | None = None
        scorers: ScorerServer | None = None
        try:
            if config.spec.model.serve is not None:
                model_server = await self._start_model(config, logs)
                config = config.model_copy(update={"model_base_url": model_server.base_url})
            self._raise_if_stopped()
            tools = await self._start_tools(config, logs)
            config = config.model_copy(update={"tool_url": tools.url})
            if config.scorers:
                scorers = await self._start_scorers(config, logs)
                config = config.model_copy(update={"scorer_url": scorers.url})
            # Workers start while the servers load: all take seconds to import.
            work = asyncio.create_task(self._work(config, logs))
            try:
                await self._tools_ready(tools)
                if scorers is not None:
                    await self._scorers_ready(scorers)
            except BaseException:
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                raise
            await work
        finally:
            if scorers is not None:
                await scorers.child.stop(grace_s=5)
                self.result.restarts["scorers"] = _count_lines(
                    scorers.child.log_path, "; starting it again")
            if tools is not None:
                await tools.child.stop(grace_s=5)
                self.result.restarts["tools"] = _count_lines(tools.child.log_path,
                                                             "; restarting (restart")
            for server, count in self.result.restarts.items():
                if count:
                    self.view.note(f"the {server[:-1]} server died and was restarted "
                                   f"{count} time(s) (see its log for what killed it)")
            if model_server is not None:
                await model_server.child.stop(grace_s=30)

    async def _serve_rollout_and_work(self, config: RunConfig, workdir: Path) -> None:
        """An Osmosis 0.3 workspace (`spec.rollout`): build the rollout's environment and
        start its server, both sandboxed (local/rollout_server.py); the workers serve the
        model gateway and drive it."""
        from rollout_operator.local.rollout_server import build_environment, start_rollout_server

        rollout = config.spec.rollout
        assert rollout is not None
        logs = workdir / "logs"
        repo_dir = Path(config.repo_dir)
        sandboxed = self.options.sandbox
        memory = _limit(config.spec.sandbox.resources, DEFAULT_TOOL_MEMORY) if sandboxed \
            else None
        where = "sandboxed" if sandboxed else "not sandboxed"
        self.view.set_phase("tools", f"uv sync --project rollouts/{rollout.name} ({where}, "
                            "host network)")
        model_server = None
        server = None
        try:
            if config.spec.model.serve is not None:
                model_server = await self._start_model(config, logs)
                config = config.model_copy(update={"model_base_url": model_server.base_url})
            await build_environment(repo_dir / "rollouts" / rollout.name,
                                    environ=self.environ, workdir=workdir,
                                    log_path=logs / "rollout-build.log", sandboxed=sandboxed,
                                    memory=None)
            self._raise_if_stopped()
            self.view.set_phase("tools", f"starting the rollout server ({where}, no network "
                                "but the gateway)")
            server = await start_rollout_server(
                repo_dir, rollout, environ=self.environ, workdir=workdir,
                log_path=logs / "rollout-server.log", shards=config.spec.workers.shards,
                sandboxed=sandboxed, memory=memory)
            self._children.append(server.child.kill)
            await server.ready()
            self.view.set_phase("tools", f"rollout server at {server.url}", current=False)
            await self._work(config, logs, extra_env=server.worker_env(),
                             readable=(server.artifact_dir,))
        except ChildFailed as exc:
            raise RunFailed(str(exc)) from None
        finally:
            if server is not None:
                await server.stop()
                self.result.restarts["rollout-servers"] = _count_lines(
                    server.child.log_path, "; restarting (restart")
            if model_server is not None:
                await model_server.child.stop(grace_s=30)

    async def _start_model(self, config: RunConfig, logs: Path) -> Any:
        from rollout_operator.local.inference import EngineMissing, start_model_server

        serve = config.spec.model.serve
        assert serve is not None
        if serve.replicas > 1:
            self.view.note(f"spec.model.serve.replicas is {serve.replicas}; one server runs "
                           "on this machine")
        self.view.set_phase("inference", f"starting {serve.engine} for {serve.model}")
        try:
            server = await start_model_server(serve, environ=self.environ,
                                              log_path=logs / "model-server.log")
        except EngineMissing as exc:
            raise RunFailed(str(exc), exit_code=EXIT_INVALID) from None
        except ChildFailed as exc:
            raise RunFailed(str(exc)) from None
        self._children.append(server.child.kill)
        self.view.set_phase("inference", f"{serve.engine} serves {serve.model} at "
                            f"{server.base_url}")
        return server

    def _tool_policy(self, config: RunConfig) -> SandboxPolicy | None:
        return self._user_code_policy(config, bool(config.spec.sandbox.egress),
                                      "spec.sandbox.egress is set: tool servers")

    def _user_code_policy(self, config: RunConfig, egress: bool,
                          who: str) -> SandboxPolicy | None:
        """A server of the repo's code: no network unless the spec declares destinations (the
        host network then, said once), the repo read-only, nothing of the run's output or
        state visible."""
        if not self.options.sandbox:
            return None
        network: Literal["none", "host"] = "none"
        if egress:
            network = "host"
            self.view.note(f"{who} keep the host network here (the listed destinations "
                           "cannot be enforced locally)")
        memory = _limit(config.spec.sandbox.resources, DEFAULT_TOOL_MEMORY)
        return SandboxPolicy(
            network=network,
            readable=(*runtime_paths(), Path(config.repo_dir)),
            limits=Limits(memory, DEFAULT_CPU_SECONDS, DEFAULT_OPEN_FILES),
        )

    def _worker_policy(self, config: RunConfig, state_dir: Path,
                       extra_readable: tuple[Path, ...] = ()) -> SandboxPolicy | None:
        if not self.options.sandbox:
            return None
        spec = config.spec
        writable = [state_dir]
        readable = [*runtime_paths(), Path(config.repo_dir), *extra_readable]
        output = _file_path(self.run.output_url)
        if output is not None:
            writable.append(output)
        dataset = _file_path(spec.dataset.url) if spec.dataset.url else None
        if dataset is not None:
            readable.append(dataset.parent)
        memory = max(_limit(spec.workers.resources, DEFAULT_WORKER_MEMORY),
                     parse_quantity(MIN_WORKER_MEMORY))
        return SandboxPolicy(network="host", readable=tuple(readable), writable=tuple(writable),
                             limits=Limits(memory, DEFAULT_CPU_SECONDS, DEFAULT_OPEN_FILES))

    async def _start_tools(self, config: RunConfig, logs: Path) -> ToolServer:
        policy = self._tool_policy(config)
        where = (f"sandboxed ({'no network' if policy.network == 'none' else 'host network'}, "
                 f"{policy.limits.describe()})" if policy else "not sandboxed")
        self.view.set_phase("tools", f"starting rolloutctl serve-tools, {where}")
        server = await start_tool_server(Path(config.repo_dir), environ=self.environ,
                                         log_path=logs / "tool-server.log", sandbox=policy)
        self._children.append(server.child.kill)
        return server

    def _scorer_policy(self, config: RunConfig) -> SandboxPolicy | None:
        return self._user_code_policy(config, bool(config.spec.scoring.egress),
                                      "spec.scoring.egress is set: scorers")

    async def _start_scorers(self, config: RunConfig, logs: Path) -> ScorerServer:
        policy = self._scorer_policy(config)
        where = (f"sandboxed ({'no network' if policy.network == 'none' else 'host network'}, "
                 f"{policy.limits.describe()})" if policy else "not sandboxed")
        self.view.set_phase("tools", f"starting rolloutctl serve-scorers, {where}")
        server = await start_scorer_server(
            Path(config.repo_dir), refs=config.scorers,
            timeout_s=config.spec.scoring.timeout_seconds, environ=self.environ,
            judge_names=[secret.env for secret in config.spec.scoring.secrets],
            log_path=logs / "scorer-server.log", sandbox=policy)
        self._children.append(server.child.kill)
        return server

    async def _scorers_ready(self, server: ScorerServer) -> None:
        try:
            await server.ready()
        except ChildFailed as exc:
            raise RunFailed(str(exc)) from None
        self.view.set_phase("tools", f"scorers serving at {server.url}", current=False)

    async def _tools_ready(self, server: ToolServer) -> None:
        try:
            await server.ready()
        except ChildFailed as exc:
            raise RunFailed(str(exc)) from None
        self.view.set_phase("tools", f"serving at {server.url}", current=False)

    async def _work(self, config: RunConfig, logs: Path, *,
                    extra_env: Mapping[str, str] | None = None,
                    readable: tuple[Path, ...] = ()) -> None:
        from rollout_operator.runtime.storage import open_store

        spec = config.spec
        shards = spec.workers.shards
        parallel = min(spec.workers.parallelism or shards, shards)
        # The judge keys too, only so that the worker can scrub them from what it writes.
        env = worker_env(self.environ, [secret.env for secret in spec.scoring.secrets])
        env.update(config.env())
        env.update(extra_env or {})
        env.setdefault("ROLLOUT_COMMIT_INTERVAL_SECONDS", COMMIT_INTERVAL_S)
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = env.get("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
        policy = self._worker_policy(config, logs, readable)
        where = f", sandboxed ({policy.limits.describe()})" if policy else ""
        self.view.set_phase("work", f"{shards} shard(s), {parallel} at a time, "
                            f"{spec.workers.concurrency} rollouts at once each{where}")
        store = open_store(config.run_prefix, endpoint=spec.output.endpoint,
                           environ=self.environ)
        tracker = CommitTracker(store, self.state)
        await tracker.poll()
        self.state.resumed = self.state.done
        self.state.started = time.monotonic()
        gate = asyncio.Semaphore(parallel)

        async def one(index: int) -> ShardOutcome:
            async with gate:
                if self.stop.is_set():
                    return ShardOutcome(index, EXIT_STOPPED, 0)
                return await run_shard_process(
                    index, env=env, state_dir=logs, sandbox=policy,
                    retries=spec.workers.backoff_limit_per_index, stop=self.stop)

        self.view.start_work(self.state)
        poller = asyncio.create_task(self._poll(tracker))
        try:
            outcomes = await asyncio.gather(*(one(i) for i in range(shards)))
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller
            with contextlib.suppress(Exception):
                await tracker.poll()
            self.view.stop_work()
        for outcome in outcomes:
            self._add_outages(outcome.message.get("outageSeconds"))
        self._judge(outcomes)

    def _add_outages(self, waited: Any) -> None:
        """Add a worker's or the aggregate's `outageSeconds` to the run's."""
        for dependency, seconds in (waited if isinstance(waited, dict) else {}).items():
            total = self.result.outage_seconds.get(dependency, 0.0) + float(seconds)
            self.result.outage_seconds[dependency] = round(total, 1)

    async def _poll(self, tracker: CommitTracker) -> None:
        while True:
            try:
                await tracker.poll()
            except Exception as exc:  # a torn listing: the next poll reads it again
                log.debug("progress poll failed: %s", exc)
            self.view.refresh()
            await asyncio.sleep(POLL_INTERVAL_S)

    def _judge(self, outcomes: list[ShardOutcome]) -> None:
        if self.stop.is_set():
            raise asyncio.CancelledError
        bad = [o for o in outcomes if o.code != 0]
        if not bad:
            return
        lines = []
        for outcome in bad:
            detail = outcome.error or (tail(outcome.log_path, 5) if outcome.log_path else "")
            lines.append(f"shard {outcome.index}: exit {outcome.code} after {outcome.attempts} "
                         f"attempt(s): {detail}")
        config_error = any(o.code == EXIT_CONFIG for o in bad)
        raise RunFailed("workers failed (what they committed is kept; run the same command "
                        "again to resume):\n  " + "\n  ".join(lines),
                        exit_code=EXIT_INVALID if config_error else EXIT_FAILED)

    async def _aggregate(self, config: RunConfig) -> None:
        from rollout_operator.cli.pod_aggregate import aggregate_run

        self.view.set_phase("aggregate", "results.json and trajectories.parquet")
        from rollout_operator.runtime.metrics import too_many_masked

        summary = await aggregate_run(config, environ=self.environ)
        self.result.summary = summary
        self._add_outages(summary.get("outageSeconds"))
        progress = summary.get("progress") or {}
        too_many = too_many_masked(int(progress.get("masked") or 0),
                                   max(self.state.total, int(progress.get("total") or 0)),
                                   config.spec.faults.max_masked_fraction)
        self.view.set_phase("done", f"results in {summary['artifacts']['results']}")
        if too_many:  # the results are written, but this is no success
            raise RunFailed(too_many)
        self.result.state, self.result.exit_code = "Succeeded", EXIT_OK


def _repo_problems(problems: list[dict[str, Any]]) -> RunFailed:
    """The repo must change: each problem with the file it is in."""
    lines = [f"{p['file']}: {p['message']}" if p.get("file") else str(p.get("message"))
             for p in problems]
    return RunFailed("the repository has problems:\n  " + "\n  ".join(lines),
                     exit_code=EXIT_INVALID, problems=problems)


def _phase_failed(what: str, code: int, report: Mapping[str, Any], child: Child, *,
                  retryable: bool = False) -> RunFailed:
    """A phase process failed: its report's error, else the end of its log. Exit 2 (a
    configuration error) means the spec or repo must change, unless `retryable`."""
    error = report.get("error") or tail(child.log_path)
    invalid = code == EXIT_CONFIG and not retryable
    return RunFailed(f"{what} failed (exit {code}): {error}",
                     exit_code=EXIT_INVALID if invalid else EXIT_FAILED)


def _count_lines(path: Path, marker: str) -> int:
    """Lines of a log holding `marker` (a supervisor's restart lines)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as log_file:
            return sum(1 for line in log_file if marker in line)
    except OSError:
        return 0


def _limit(resources: Any, default: str) -> int:
    limits = getattr(resources, "limits", None) or {}
    value = limits.get("memory", default)
    try:
        return parse_quantity(value)
    except ValueError:
        return parse_quantity(default)


def _invalid_rows(report: dict[str, Any]) -> str:
    """What the sync report says of dataset rows that cannot be used (run anyway)."""
    invalid = report.get("invalidRows")
    if not isinstance(invalid, int) or invalid <= 0:
        return ""
    return (f"; {invalid} dataset row(s) cannot be used: their rollouts are recorded as "
            "invalid (spec.dataset.strict refuses such a dataset)")


def _file_path(url: str | None) -> Path | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return None
    return Path(unquote(parts.path))
