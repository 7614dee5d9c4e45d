"""Local processes of a run: sync, the tool server, the shard workers, a managed model server.

Each is the pod's own entrypoint (`rolloutctl sync`, `serve-tools`, `work`) started as a
child process, in a sandbox when one is given, in a session of its own (Ctrl-C in the terminal
reaches `rolloutctl run` only, which then stops its children in order), with its output in a
log file. Children get only the environment they need: tool servers nothing secret, workers the
model, judge and storage variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rollout_operator.local.sandbox import SandboxPolicy, sandbox_argv

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0

_BASE_ENV = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "HOME", "USER", "LOGNAME", "VIRTUAL_ENV",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE",
    "LITELLM_LOCAL_MODEL_COST_MAP", "ROLLOUT_LOG_LEVEL", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy",
})
_WORKER_PREFIXES = ("ROLLOUT_", "LITELLM_", "OPENAI_", "ANTHROPIC_", "AZURE_", "AWS_",
                    "GOOGLE_", "GEMINI_", "VERTEX", "MISTRAL_", "GROQ_", "TOGETHER",
                    "DEEPSEEK_", "XAI_", "COHERE_", "OPENROUTER_", "FIREWORKS_", "HF_",
                    "HUGGINGFACE_", "OLLAMA_", "VLLM_")
_WORKER_SUFFIXES = ("_API_KEY", "_API_BASE", "_BASE_URL", "_API_VERSION")
_NEVER_FOR_USER_CODE = ("ROLLOUT_GIT_",)


def tool_server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What a tool server sees: locale, paths and the runtime's switches; no credentials."""
    env = {k: v for k, v in environ.items() if k in _BASE_ENV or k.startswith("LC_")}
    return _with_absolute_pythonpath(env)


def worker_env(environ: Mapping[str, str], extra_names: Sequence[str] = ()) -> dict[str, str]:
    """What a worker sees: the tool server's variables plus the model provider, judge
    (`extra_names`, from spec.scoring.secrets) and storage variables."""
    env = tool_server_env(environ)
    for key, value in environ.items():
        if key.startswith(_NEVER_FOR_USER_CODE):
            continue
        if key.startswith(_WORKER_PREFIXES) or key.endswith(_WORKER_SUFFIXES) \
                or key in extra_names:
            env[key] = value
    return env


def _with_absolute_pythonpath(env: dict[str, str]) -> dict[str, str]:
    """Children start in other folders: relative PYTHONPATH entries are made absolute."""
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(entry).absolute()) for entry in env["PYTHONPATH"].split(os.pathsep) if entry
        )
    return env


def rolloutctl_argv(*args: str) -> list[str]:
    """`rolloutctl ARGS` with this interpreter (whatever the PATH holds)."""
    return [sys.executable, "-m", "rollout_operator.cli.main", *args]


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Child:
    """A started child process; `pid` is the one to signal (inside a sandbox: the command,
    not bubblewrap, which does not forward signals)."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    pid: int

    async def stop(self, grace_s: float = STOP_GRACE_S) -> int:
        """SIGTERM, then SIGKILL after `grace_s`; returns the exit code.

        A sandboxed command is its namespace's PID 1, to which the kernel delivers no signal
        it has no handler for: one that does not handle SIGTERM yet (still starting, nothing
        to save) is killed at once instead of waiting out the grace period.
        """
        if self.process.returncode is None:
            if self.pid != self.process.pid and not _handles(self.pid, signal.SIGTERM):
                self.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                log.warning("%s did not stop within %.0f s; killing it", self.name, grace_s)
                self.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        for pid in {self.pid, self.process.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _handles(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return True  # cannot tell: send the signal and wait
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return True


async def start_child(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    sandbox: SandboxPolicy | None,
    pass_fds: Sequence[int] = (),
    cwd: Path | None = None,
) -> Child:
    """Start `command` (in `sandbox` when given) with its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file: IO[bytes] = log_path.open("ab")
    info_read: int | None = None
    fds = list(pass_fds)
    argv = list(command)
    try:
        if sandbox is not None:
            info_read, info_write = os.pipe()
            fds.append(info_write)
            argv = sandbox_argv(command, sandbox, home=env.get("HOME"), info_fd=info_write)
            if sandbox.limits.memory_bytes is not None:
                # glibc reserves 64 MiB of address space per thread arena; under an address
                # space limit a few arenas are plenty.
                env = {"MALLOC_ARENA_MAX": "4", **env}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                stderr=log_file, start_new_session=True, pass_fds=fds,
                cwd=str(cwd) if cwd else None,
            )
        finally:
            if sandbox is not None:
                os.close(fds[-1])
    finally:
        log_file.close()
    pid = process.pid
    if info_read is not None:
        info = await asyncio.to_thread(_read_info, info_read)
        pid = int(info.get("child-pid") or process.pid)
    return Child(name, process, log_path, pid)


def _read_info(fd: int) -> dict[str, Any]:
    """Bubblewrap's `--info-fd` JSON (empty when it failed before writing it)."""
    data = b""
    with os.fdopen(fd, "rb") as stream:
        while chunk := stream.read(4096):
            data += chunk
            with contextlib.suppress(ValueError):
                parsed = json.loads(data)
                if isinstance(parsed, dict):
                    return parsed
    return {}


def loopback_listener() -> socket.socket:
    """A listening socket on a free port of the host's loopback, to hand to a child."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class ToolServer:
    url: str
    child: Child

    async def ready(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        """Return once `/health` answers (`ChildFailed` if the server exits or never does)."""
        await wait_healthy(self.url.removesuffix("/mcp") + "/health", self.child,
                           timeout_s=timeout_s)


async def start_tool_server(
    repo_dir: Path,
    *,
    environ: Mapping[str, str],
    log_path: Path,
    sandbox: SandboxPolicy | None,
) -> ToolServer:
    """Start `rolloutctl serve-tools` for the unpacked bundle behind a supervisor that owns a
    loopback port of the host (see `tool_relay`). The URL is known at once; `ready()` waits for
    the server to answer (workers, which take as long to start, also wait for it)."""
    listener = loopback_listener()
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "rollout_operator.local.tool_relay",
               "--listen-fd", str(listener.fileno()), "--",
               *rolloutctl_argv("serve-tools", "--repo", str(repo_dir), "--host", "127.0.0.1")]
    env = tool_server_env(environ)
    env["ROLLOUT_TERMINATION_MESSAGE_PATH"] = os.devnull
    try:
        child = await start_child("tool server", command, env=env, log_path=log_path,
                                  sandbox=sandbox, pass_fds=[listener.fileno()],
                                  cwd=log_path.parent)
    finally:
        listener.close()
    return ToolServer(f"http://127.0.0.1:{port}/mcp", child)


@dataclass
class ScorerServer:
    url: str
    child: Child

    async def ready(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        """Return once `/health` answers (`ChildFailed` if the server exits or never does)."""
        await wait_healthy(self.url + "/health", self.child, timeout_s=timeout_s)


def scorer_server_env(environ: Mapping[str, str], judge_names: Sequence[str]) -> dict[str, str]:
    """What a scorer server sees: the tool server's variables and the judge keys the spec
    declares (spec.scoring.secrets); no model key, no storage or git credentials."""
    env = tool_server_env(environ)
    env.update({name: environ[name] for name in judge_names if name in environ})
    return env


async def start_scorer_server(
    repo_dir: Path,
    *,
    refs: Sequence[str],
    timeout_s: float | None,
    environ: Mapping[str, str],
    judge_names: Sequence[str],
    log_path: Path,
    sandbox: SandboxPolicy | None,
) -> ScorerServer:
    """Start `rolloutctl serve-scorers` (a supervisor that restarts the scorer server when a
    scorer kills it) on a loopback port of the host handed over as a listening socket: the
    sandbox itself needs no network."""
    listener = loopback_listener()
    port = listener.getsockname()[1]
    args = ["serve-scorers", "--listen-fd", str(listener.fileno()), "--repo", str(repo_dir)]
    for ref in refs:
        args += ["--scorer", ref]
    if timeout_s is not None:
        args += ["--timeout", str(timeout_s)]
    env = scorer_server_env(environ, judge_names)
    try:
        child = await start_child("scorer server", rolloutctl_argv(*args), env=env,
                                  log_path=log_path, sandbox=sandbox,
                                  pass_fds=[listener.fileno()], cwd=log_path.parent)
    finally:
        listener.close()
    return ScorerServer(f"http://127.0.0.1:{port}", child)


class ChildFailed(RuntimeError):
    """A child process exited or never became ready; the message carries its log's tail."""


async def wait_healthy(url: str, child: Child, *, timeout_s: float) -> None:
    """Poll `url` until it answers 200, the child exits, or `timeout_s` passes."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            if child.process.returncode is not None:
                raise ChildFailed(f"the {child.name} exited with code "
                                  f"{child.process.returncode} before it was ready:\n"
                                  f"{tail(child.log_path)}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ChildFailed(f"the {child.name} did not answer {url} within "
                                  f"{timeout_s:.0f} s:\n{tail(child.log_path)}")
            await asyncio.sleep(0.2)


@dataclass
class ShardOutcome:
    """How one shard ended: `code` 0 done, 143 stopped, 2 configuration error, else failed."""

    index: int
    code: int
    attempts: int
    message: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def error(self) -> str | None:
        value = self.message.get("error")
        return str(value) if value else None


EXIT_STOPPED = 143
EXIT_CONFIG = 2


async def run_shard_process(
    index: int,
    *,
    env: Mapping[str, str],
    state_dir: Path,
    sandbox: SandboxPolicy | None,
    retries: int,
    stop: asyncio.Event,
    grace_s: float = STOP_GRACE_S,
) -> ShardOutcome:
    """`rolloutctl work` for shard `index`, retried (a retry skips what was committed) as the
    worker Job's `backoffLimitPerIndex` would; stops gracefully when `stop` is set."""
    log_path = state_dir / f"worker-{index}.log"
    message_path = state_dir / f"worker-{index}.json"
    attempt = 0
    while True:
        attempt += 1
        message_path.unlink(missing_ok=True)
        child_env = {**env, "JOB_COMPLETION_INDEX": str(index),
                     "ROLLOUT_TERMINATION_MESSAGE_PATH": str(message_path)}
        child = await start_child(f"worker {index}", rolloutctl_argv("work"), env=child_env,
                                  log_path=log_path, sandbox=sandbox, cwd=state_dir)
        waiter = asyncio.ensure_future(child.process.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await child.stop(grace_s)
            raise
        finally:
            stopper.cancel()
        if not waiter.done():
            code = await child.stop(grace_s)
            return ShardOutcome(index, EXIT_STOPPED if code in (-15, 143) else code, attempt,
                                read_message(message_path), log_path)
        code = waiter.result()
        outcome = ShardOutcome(index, code, attempt, read_message(message_path), log_path)
        if code in (0, EXIT_CONFIG) or stop.is_set() or attempt > retries:
            return outcome
        log.warning("Shard %d failed (exit %d, attempt %d of %d): %s; retrying", index, code,
                    attempt, retries + 1, outcome.error or tail(log_path, 3))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(2.0 ** (attempt - 1), 30.0))
        if stop.is_set():
            return outcome


def read_message(path: Path) -> dict[str, Any]:
    """A child's termination message ({} when it wrote none)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
