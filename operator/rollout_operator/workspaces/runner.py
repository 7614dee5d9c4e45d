"""`eval run` in local mode: resolve the run, then drive every pending work item through the
user's rollout server, with each rollout reaching the model only through the gateway.

Stages: lock and manifest (resume or refuse), secrets, model preflight, `uv sync`, the gateway,
the rollout server, a pool of workers (one rollout per work item: `POST /rollout`, long-poll
the result, journal it, copy its trajectory), then `index.jsonl`, `progress.json` and
`metrics.json`. A rollout server that dies is restarted; its in-flight items are recorded as
failed (`error_type` `rollout_server_died`) and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets as token_source
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rollout_operator.gateway.server import Gateway
from rollout_operator.gateway.upstream import Upstream, UpstreamUnreachable, make_upstream
from rollout_operator.runtime.models.naming import PROVIDER_KEY_ENV
from rollout_operator.runtime.scrub import secret_env_names
from rollout_operator.workspaces import atif
from rollout_operator.workspaces.dataset import EvalRow, file_sha256, format_selection, load_rows
from rollout_operator.workspaces.errors import WorkspaceError
from rollout_operator.workspaces.eval_config import EvalConfig, check_rollout_paths
from rollout_operator.workspaces.protocol import (
    AtCapacity,
    RolloutClient,
    RolloutServerError,
    capacity,
)
from rollout_operator.workspaces.rollout_server import RolloutServer, child_env, uv_sync
from rollout_operator.workspaces.source_digest import source_digest
from rollout_operator.workspaces.state import (
    STATE_VERSIONS,
    ItemKey,
    Journal,
    archive,
    changed_inputs,
    index_line,
    refuse_changed,
    run_lock,
    utc_stamp,
    write_index,
    write_json,
)
from rollout_operator.workspaces.summary import ItemOutcome, summarize

MAX_SERVER_RESTARTS = 3
PREFLIGHT_FATAL = frozenset({400, 401, 403, 404, 422})


@dataclass(frozen=True, slots=True)
class RunOptions:
    workspace: Path
    config: EvalConfig
    config_path: Path
    name: str
    output_root: Path
    dataset_file: Path
    rows: list[int] | None
    fresh: bool
    retry_failed: bool
    max_in_flight: int | None
    rollout_port: int | None
    listener_port: int | None
    secrets: dict[str, str]
    environ: Mapping[str, str]
    verbose: bool = False


@dataclass(slots=True)
class RunResult:
    """What the envelope and the console report."""

    status: str  # success | partial
    message: str
    resource: dict[str, Any]
    log: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    row: EvalRow
    run_index: int

    @property
    def key(self) -> ItemKey:
        return (self.row.row_index, self.run_index)


def resolve_inputs(options: RunOptions, rows: list[EvalRow], rollout_dir: Path
                   ) -> dict[str, Any]:
    """What a resume must match (manifest `inputs`)."""
    config = options.config
    exclude = options.output_root if options.output_root.is_relative_to(rollout_dir) else None
    timeouts: dict[str, float] = {}
    if config.agent_timeout_s is not None:
        timeouts["agent_timeout_sec"] = float(config.agent_timeout_s)
    if config.grader_timeout_s is not None:
        timeouts["grader_timeout_sec"] = float(config.grader_timeout_s)
    return {
        "model_path": config.model_path,
        "dataset": {"sha256": file_sha256(options.dataset_file),
                    "selected_source_rows": format_selection(
                        [row.source_row_index for row in rows])},
        "n": config.n,
        "rollout": {"name": config.rollout, "entrypoint": config.entrypoint,
                    "source_digest": source_digest(rollout_dir, exclude=exclude)},
        "env": dict(config.env),
        "secret_names": list(config.secret_names),
        "timeouts": timeouts,
        "versions": dict(STATE_VERSIONS),
    }


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=workspace, capture_output=True, text=True,
                              check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _sdk_version(rollout_dir: Path) -> str | None:
    """The osmosis-ai version installed in the rollout's own environment."""
    for found in sorted((rollout_dir / ".venv").glob("lib/python*/site-packages/"
                                                     "osmosis_ai-*.dist-info")):
        return found.name.removeprefix("osmosis_ai-").removesuffix(".dist-info")
    return None


def _upstream(config: EvalConfig, secrets: Mapping[str, str], environ: Mapping[str, str]
              ) -> tuple[Upstream, str | None]:
    """The gateway's upstream for the config's model, and the provider key it holds."""
    provider = config.model_path.split("/", 1)[0] if "/" in config.model_path else "openai"
    key_name = PROVIDER_KEY_ENV.get(provider)
    key = (secrets.get(key_name) or environ.get(key_name)) if key_name else None
    key = key or environ.get("LITELLM_API_KEY") or None
    base_url = None
    if provider == "openai":
        base_url = environ.get("OPENAI_BASE_URL") or environ.get("OPENAI_API_BASE") or None
    return make_upstream(config.model_path, base_url, key), key


async def preflight(upstream: Upstream, model_path: str) -> str | None:
    """One short completion before any rollout: a fatal answer raises, others warn."""
    body = {"model": upstream.wire_model, "max_tokens": 256,
            "messages": [{"role": "user", "content": "hi"}]}
    try:
        status, _ = await upstream.complete(body)
    except UpstreamUnreachable as exc:
        raise WorkspaceError(f"model preflight for {model_path} failed: the endpoint did not "
                             f"answer ({exc})", code="MODEL_PREFLIGHT_FAILED") from None
    if status in PREFLIGHT_FATAL:
        raise WorkspaceError(f"model preflight for {model_path} failed: HTTP {status}",
                             code="MODEL_PREFLIGHT_FAILED")
    if status != 200:
        return f"model preflight for {model_path} answered HTTP {status}; continuing"
    return None


class EvalRun:
    """One invocation of `eval run` for one named run."""

    def __init__(self, options: RunOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.run_dir = options.output_root / options.name
        self.rollout_dir, self.entrypoint = check_rollout_paths(options.config,
                                                                options.workspace)

    def execute(self) -> RunResult:
        started = time.monotonic()
        options = self.options
        rows, total_rows = load_rows(options.dataset_file, limit=options.config.limit,
                                     rows=options.rows)
        if not rows:
            raise WorkspaceError("the dataset selection is empty: nothing to evaluate")
        options.output_root.mkdir(parents=True, exist_ok=True)
        with run_lock(options.output_root, options.name):
            inputs = resolve_inputs(options, rows, self.rollout_dir)
            manifest = self._manifest(inputs)
            items = [_Item(row, run_index) for row in rows
                     for run_index in range(options.config.n)]
            journal = Journal(self.run_dir / "events.jsonl")
            recorded = journal.replay()
            keep = ("success",) if options.retry_failed else ("success", "failed", "skipped")
            done = {key: record for key, record in recorded.items() if record["status"] in keep}
            pending = [item for item in items if item.key not in done]
            write_json(self.run_dir / "progress.json",
                       {"total_runs": len(items), "sampled_rows": len(rows),
                        "total_dataset_rows": total_rows})
            interrupted = False
            failure: WorkspaceError | None = None
            if pending:
                self.say(f"{options.name}: {len(pending)} of {len(items)} work items pending")
                try:
                    asyncio.run(self._drive(pending, journal))
                except KeyboardInterrupt:
                    interrupted = True
                except WorkspaceError as exc:
                    failure = exc
            # What this invocation recorded, from the journal itself (also after a failure).
            fresh_records = {key: record for key, record in journal.replay().items()
                             if recorded.get(key) != record}
            result = self._finish(manifest, items, done, fresh_records, started,
                                  interrupted=interrupted)
            if failure is not None:
                raise failure
            return result

    def _manifest(self, inputs: dict[str, Any]) -> dict[str, Any]:
        options = self.options
        path = self.run_dir / "manifest.json"
        if self.run_dir.exists() and options.fresh:
            archived = archive(self.run_dir)
            self.say(f"archived the previous run to {archived}")
        if path.exists():
            manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            changed = changed_inputs(manifest.get("inputs", {}), inputs)
            if changed:
                raise refuse_changed(options.name, changed)
            return manifest
        self.run_dir.mkdir(parents=True, exist_ok=True)
        workspace = options.workspace
        provenance: dict[str, Any] = {
            "sdk_version": _sdk_version(self.rollout_dir),
            "config_path": options.config_path.relative_to(workspace).as_posix(),
            "git_head": _git(workspace, "rev-parse", "HEAD"),
            "git_branch": _git(workspace, "rev-parse", "--abbrev-ref", "HEAD"),
            "git_dirty": bool(_git(workspace, "status", "--porcelain", "--", ".",
                                   ":(exclude).osmosis")),
        }
        if options.config.branch:
            provenance["config_branch"] = options.config.branch
        if options.config.commit_sha:
            provenance["config_commit_sha"] = options.config.commit_sha
        if options.config.advanced is not None:
            provenance["advanced"] = options.config.advanced
        manifest = {"schema_version": 1, "local_run_id": uuid.uuid4().hex,
                    "run_name": options.name, "created_at": utc_stamp(), "inputs": inputs,
                    "provenance": provenance}
        write_json(path, manifest)
        return manifest

    def _record_sdk_version(self) -> None:
        """Put the rollout environment's osmosis-ai version into the manifest's provenance
        (known only after `uv sync`; provenance is not part of what a resume must match)."""
        version = _sdk_version(self.rollout_dir)
        if version is None:
            self.say("warning: osmosis-ai is not installed in the rollout environment")
            return
        path = self.run_dir / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest["provenance"].get("sdk_version") != version:
            manifest["provenance"]["sdk_version"] = version
            write_json(path, manifest)

    async def _drive(self, pending: list[_Item], journal: Journal) -> None:
        options = self.options
        config = options.config
        log = self.run_dir / "logs.txt"
        upstream, provider_key = _upstream(config, options.secrets, options.environ)
        warning = await preflight(upstream, config.model_path)
        if warning:
            self.say(warning)
        base_env = {key: value for key, value in options.environ.items()
                    if key not in set(secret_env_names(options.environ))}
        env = child_env(base_env, {**config.env, **options.secrets})
        self.say(f"syncing the rollout environment (uv sync --project rollouts/"
                 f"{config.rollout})")
        await asyncio.to_thread(uv_sync, self.rollout_dir, env, log)
        self._record_sdk_version()
        token = token_source.token_urlsafe(24)
        gateway = Gateway(upstream, token, provider_key=provider_key)
        await gateway.start("127.0.0.1", options.listener_port or 0)
        artifact_root = self.run_dir / "rollout_trials"
        server = RolloutServer(self.rollout_dir, self.entrypoint, env, artifact_root, log,
                               port=options.rollout_port)
        client: RolloutClient | None = None
        try:
            server.start()
            health = await server.wait_ready()
            client = RolloutClient(server.url)
            limit = capacity(health)
            wanted = options.max_in_flight or config.batch_size
            in_flight = min(wanted, limit) if wanted and limit else (wanted or limit or 1)
            self.say(f"rollout server ready on {server.url}; {in_flight} in flight")
            await _Driver(self, gateway, token, server, client, journal, in_flight).run(pending)
        finally:
            if client is not None:
                await client.close()
            await asyncio.to_thread(server.stop)
            await gateway.close()

    def _finish(self, manifest: dict[str, Any], items: list[_Item],
                done: dict[ItemKey, dict[str, Any]], fresh: dict[ItemKey, dict[str, Any]],
                started: float, *, interrupted: bool) -> RunResult:
        options = self.options
        index_rows: list[dict[str, Any]] = []
        outcomes: list[ItemOutcome] = []
        for item in items:
            record = fresh.get(item.key) or done.get(item.key)
            if record is None:
                continue
            resumed = item.key not in fresh
            trajectory = (self.run_dir / "trajectories" /
                          f"row_{item.key[0]}_run_{item.key[1]}.json").is_file()
            index_rows.append(index_line(record, trajectory=trajectory, resumed=resumed))
            outcomes.append(ItemOutcome(item.key[0], item.key[1], record["status"],
                                        record.get("reward"), record.get("tokens")))
        write_index(self.run_dir, index_rows)
        summary = summarize(outcomes, pass_threshold=options.config.pass_threshold,
                            n=options.config.n)
        complete = len(index_rows) == len(items)
        duration_ms = (time.monotonic() - started) * 1000
        metrics_path = self.run_dir / "metrics.json"
        write_json(metrics_path, {
            "eval_run": {"id": manifest["local_run_id"],
                         "status": "finished" if complete else "running",
                         "name": options.name, "dataset_name": options.config.dataset,
                         "model_name": options.config.model_path,
                         "rollout_name": options.config.rollout, "duration_ms": duration_ms,
                         "started_at": manifest["created_at"], "completed_at": utc_stamp()},
            "summary": summary,
        })
        by_status = {status: sum(1 for outcome in outcomes if outcome.status == status)
                     for status in ("success", "failed", "skipped")}
        failed_rows = [
            {"row_index": item.row.row_index, "source_row_index": item.row.source_row_index,
             "run_index": item.run_index, "rollout_id": record["rollout_id"],
             "error_type": record.get("error_type"),
             "rollout_dir": str(self.run_dir / "rollout_trials" / record["rollout_id"])}
            for item in items
            if (record := fresh.get(item.key) or done.get(item.key)) is not None
            and record["status"] in ("failed", "skipped")
        ]
        shown = os.path.relpath(self.run_dir, options.workspace) \
            if self.run_dir.is_relative_to(options.workspace) else str(self.run_dir)
        if not fresh and complete:
            message = f"Run '{options.name}' was already complete; nothing ran: {shown}"
        elif complete:
            message = f"Evaluation run finished: {shown}"
        elif interrupted:
            message = ("Interrupted. Resume the pending work items: rolloutctl eval run "
                       f"{options.config_path.relative_to(options.workspace)} --name "
                       f"{options.name}")
        else:
            message = (f"Resume: rolloutctl eval run "
                       f"{options.config_path.relative_to(options.workspace)} --name "
                       f"{options.name}")
        resource = {
            "run_name": options.name, "local_run_id": manifest["local_run_id"],
            "output_path": str(self.run_dir), "dataset_source": "explicit",
            "total_work_items": len(items), "dispatched": len(fresh),
            "succeeded": by_status["success"], "failed": by_status["failed"],
            "skipped": by_status["skipped"], "resumed": len(index_rows) - len(fresh),
            "cancelled": interrupted, "duration_ms": duration_ms, "metrics": summary,
            "failed_rows": failed_rows, "workspace_directory": str(options.workspace),
        }
        return RunResult("success" if complete else "partial", message, resource)


class _Driver:
    """The worker pool of one invocation."""

    def __init__(self, run: EvalRun, gateway: Gateway, token: str, server: RolloutServer,
                 client: RolloutClient, journal: Journal, in_flight: int) -> None:
        self.run_ = run
        self.gateway = gateway
        self.token = token
        self.server = server
        self.client = client
        self.journal = journal
        self.in_flight = in_flight
        self.restarts = 0
        self._restart_lock = asyncio.Lock()
        self._generation = 0
        config = run.options.config
        self.deadline_s = (config.agent_timeout_s + config.grader_timeout_s + 60
                           if config.agent_timeout_s is not None
                           and config.grader_timeout_s is not None else 3600.0)

    async def run(self, pending: list[_Item]) -> None:
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        for item in pending:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                record = await self._one(item)
                if record is None:
                    continue
                self.journal.append(record)
                if self.run_.options.verbose:
                    self.run_.say(f"row {item.row.row_index} run {item.run_index}: "
                                  f"{record['status']}"
                                  + (f" reward={record['reward']}" if "reward" in record
                                     and record["reward"] is not None else "")
                                  + (f" ({record['error_type']})" if record.get("error_type")
                                     else ""))

        await asyncio.gather(*(worker() for _ in range(self.in_flight)))

    def _request(self, item: _Item, rollout_id: str) -> dict[str, Any]:
        config = self.run_.options.config
        request: dict[str, Any] = {
            "rollout_id": rollout_id, "initial_messages": item.row.messages,
            "chat_completions_url": self.gateway.rollout_url(rollout_id),
            "llm_api_key": self.token, "grade": True,
            "extra_fields": {"row_index": item.row.row_index, "run_index": item.run_index},
        }
        if item.row.label is not None:
            request["label"] = item.row.label
        if item.row.metadata is not None:
            request["metadata"] = item.row.metadata
        if config.agent_timeout_s is not None:
            request["agent_timeout_sec"] = config.agent_timeout_s
        if config.grader_timeout_s is not None:
            request["grader_timeout_sec"] = config.grader_timeout_s
        return request

    async def _one(self, item: _Item) -> dict[str, Any] | None:
        rollout_id = uuid.uuid4().hex
        self.gateway.ledger.open(rollout_id)
        started = time.monotonic()
        generation = self._generation
        error_type: str | None = None
        status = "failed"
        reward: float | None = None
        try:
            async with asyncio.timeout(self.deadline_s):
                while True:
                    try:
                        lease = await self.client.start(self._request(item, rollout_id))
                        break
                    except AtCapacity as busy:
                        await asyncio.sleep(busy.retry_after_s)
                result = await self.client.result(rollout_id, lease)
            if result.status == "cancelled":
                return None
            sample = result.sample or {}
            if result.status == "success" and sample.get("remove_sample"):
                status = "skipped"
            elif result.status == "success":
                status = "success"
                reward = sample.get("reward")
            else:
                error_type = result.err_category or result.err_message or "rollout_failed"
        except TimeoutError:
            error_type = "timeout"
            with contextlib.suppress(Exception):
                await self.client.cancel([rollout_id])
        except (RolloutServerError, aiohttp.ClientError, ConnectionError) as exc:
            if generation != self._generation or await asyncio.to_thread(
                    self.server.exited_within, 5.0):  # restarted meanwhile, or dying now
                error_type = "rollout_server_died"
                await self._restart(generation)
            else:
                error_type = f"rollout_server_error: {exc}"[:200]
        account = self.gateway.ledger.close(rollout_id)
        tokens = account.total_tokens if account is not None else 0
        self._copy_trajectory(item, rollout_id)
        return {"row_index": item.row.row_index, "run_index": item.run_index,
                "rollout_id": rollout_id, "status": status,
                "source_row_index": item.row.source_row_index,
                "reward": reward if status == "success" else None,
                "tokens": tokens or None,
                "duration_ms": (time.monotonic() - started) * 1000,
                "error_type": error_type}

    async def _restart(self, generation: int) -> None:
        async with self._restart_lock:
            if generation != self._generation:
                return  # another worker restarted it already
            if self.restarts >= MAX_SERVER_RESTARTS:
                raise WorkspaceError(f"the rollout server died {self.restarts + 1} times; "
                                     f"see {self.server.log}", code="ROLLOUT_SERVER_FAILED")
            self.restarts += 1
            self.run_.say("the rollout server died; restarting it")
            await asyncio.to_thread(self.server.stop)
            self.server.start()
            await self.server.wait_ready()
            self._generation += 1

    def _copy_trajectory(self, item: _Item, rollout_id: str) -> None:
        trial = self.run_.run_dir / "rollout_trials" / rollout_id
        document = atif.load_valid(trial / "trajectory.json", rollout_id)
        name = f"row_{item.row.row_index}_run_{item.run_index}"
        target = self.run_.run_dir / "trajectories"
        target.mkdir(exist_ok=True)
        if document is None:
            (target / f"{name}.json").unlink(missing_ok=True)  # an earlier attempt's
            return
        shutil.copyfile(trial / "trajectory.json", target / f"{name}.json")
        artifacts = trial / "artifacts"
        if artifacts.is_dir() and not artifacts.is_symlink():
            _copy_tree(artifacts, self.run_.run_dir / "artifacts" / name)


def _copy_tree(source: Path, target: Path) -> None:
    """Copy regular files under `source`; symlinks and anything else are skipped."""
    for directory, dirnames, filenames in os.walk(source):
        here = Path(directory)
        dirnames[:] = [name for name in dirnames if not (here / name).is_symlink()]
        for name in filenames:
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
