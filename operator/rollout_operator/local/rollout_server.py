"""A local rollout server for `rolloutctl run` of a RolloutRun with `spec.rollout`.

Two sandboxed steps, both user code:

- **build**: `uv sync --project rollouts/<name>` (the project's own pins; its build backends run
  here), with the host network (the package index) and only the rollout folder and a uv cache
  writable;
- **serve**: `rollout_relay` running the entrypoint with no network but the sandbox's own
  loopback. Workers reach it through a listening socket of the host's loopback handed in; it
  reaches the workers' gateways (shard i on `gateway_port + i`) through Unix sockets that this
  process relays to the host's loopback. It holds no model key and no storage credential: only
  locale and paths, `spec.rollout.env` and the variables `spec.rollout.secrets` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_operator.api.spec import RolloutSpec
from rollout_operator.local.processes import (
    Child,
    ChildFailed,
    loopback_listener,
    start_child,
    tail,
    tool_server_env,
    wait_healthy,
)
from rollout_operator.local.rollout_relay import gateway_socket, join
from rollout_operator.local.sandbox import Limits, SandboxPolicy, runtime_paths

INNER_PORT = 9100
"""The rollout server's port on the sandbox's own loopback."""
HEALTH_TIMEOUT_S = 300.0


@dataclass
class LocalRolloutServer:
    url: str
    artifact_dir: Path
    gateway_port: int
    child: Child
    relays: list[asyncio.base_events.Server] = field(default_factory=list)
    sockets: Path | None = None
    """The folder of the gateway sockets, removed at stop."""

    async def ready(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        await wait_healthy(self.url + "/health", self.child, timeout_s=timeout_s)

    def worker_env(self) -> dict[str, str]:
        """What the workers need to drive this server and serve it their gateways."""
        from rollout_operator.workspaces.shard_runner import (
            ARTIFACT_URL_ENV,
            GATEWAY_BIND_ENV,
            GATEWAY_HOST_ENV,
            GATEWAY_PORT_ENV,
            ROLLOUT_SERVER_URL_ENV,
        )

        return {ROLLOUT_SERVER_URL_ENV: self.url, ARTIFACT_URL_ENV: str(self.artifact_dir),
                GATEWAY_HOST_ENV: "127.0.0.1", GATEWAY_BIND_ENV: "127.0.0.1",
                GATEWAY_PORT_ENV: str(self.gateway_port)}

    async def stop(self) -> None:
        for relay in self.relays:
            relay.close()
        await self.child.stop(grace_s=10)
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)


def interpreter_dirs(rollout_dir: Path, environ: Mapping[str, str]) -> list[Path]:
    """The base interpreter a rollout's venv points at (it may live under a hidden home)."""
    found: list[Path] = []
    config = rollout_dir / ".venv" / "pyvenv.cfg"
    with contextlib.suppress(OSError):
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                found.append(Path(value.strip()).resolve().parent)
    python = environ.get("UV_PYTHON")
    if python and os.path.isabs(python):
        found.append(Path(os.path.realpath(python)).parent.parent)
    return found


def rollout_env(rollout: RolloutSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """Locale and paths, `spec.rollout.env`, and the `spec.rollout.secrets` values found in
    `environ` by env name (a missing one is an error)."""
    missing = [item.env for item in rollout.secrets if not environ.get(item.env)]
    if missing:
        raise ChildFailed(f"spec.rollout.secrets names {', '.join(missing)}, which is not set "
                          "in this environment: export it before rolloutctl run")
    env = tool_server_env(environ)
    env.update(rollout.env)
    env.update({item.env: environ[item.env] for item in rollout.secrets})
    return env


async def build_environment(rollout_dir: Path, *, environ: Mapping[str, str], workdir: Path,
                            log_path: Path, sandboxed: bool, memory: int | None) -> None:
    """`uv sync` of the rollout project, sandboxed with the host network."""
    cache = workdir / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    uv, uv_dir = _uv(environ)
    env = tool_server_env(environ)
    env.update({key: value for key, value in environ.items()
                if key.startswith("UV_") and key not in ("UV_CACHE_DIR",)})
    env["UV_CACHE_DIR"] = str(cache)
    policy = SandboxPolicy(
        network="host",
        readable=(*runtime_paths(), uv_dir, rollout_dir.parent.parent,
                  *interpreter_dirs(rollout_dir, environ)),
        writable=(rollout_dir, cache),
        limits=Limits(memory, None, None),
    ) if sandboxed else None
    child = await start_child("rollout environment build", [uv, "sync", "--project",
                                                            str(rollout_dir)],
                              env=env, log_path=log_path, sandbox=policy, cwd=log_path.parent)
    code = await child.process.wait()
    if code != 0:
        raise ChildFailed(f"uv sync of rollouts/{rollout_dir.name} failed (exit {code}):\n"
                          f"{tail(log_path)}")


async def start_rollout_server(repo_dir: Path, rollout: RolloutSpec, *,
                               environ: Mapping[str, str], workdir: Path, log_path: Path,
                               shards: int, sandboxed: bool, memory: int | None,
                               gateway_port: int | None = None) -> LocalRolloutServer:
    """Start the rollout server; shard i's gateway is `gateway_port + i` (free ports of the
    host's loopback when None)."""
    rollout_dir = repo_dir / "rollouts" / rollout.name
    artifact_dir = workdir / "rollout-artifacts"
    artifact_dir.mkdir(parents=True, exist_ok=True)
    # A Unix socket's path is limited to 107 bytes: the sockets live in a short temporary
    # folder, not under the run's (possibly deep) working folder.
    sockets = Path(tempfile.mkdtemp(prefix="rollout-gw-"))
    base = gateway_port or free_port_range(shards)
    ports = [base + i for i in range(shards)]
    relays = [await asyncio.start_unix_server(_to_gateway(port), str(gateway_socket(sockets,
                                                                                    port)))
              for port in ports]
    env = rollout_env(rollout, environ)
    env.update({"_OSMOSIS_ROLLOUT_PORT": str(INNER_PORT),
                "_OSMOSIS_ROLLOUT_ARTIFACT_ROOT": str(artifact_dir),
                "_OSMOSIS_ROLLOUT_INSTANCE_ID": "local"})
    listener = loopback_listener()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    command = [sys.executable, "-m", "rollout_operator.local.rollout_relay",
               "--listen-fd", str(listener.fileno()), "--port", str(INNER_PORT),
               "--gateway-dir", str(sockets), "--cwd", str(rollout_dir),
               *[arg for port in ports for arg in ("--gateway-port", str(port))],
               "--", str(rollout_dir / ".venv" / "bin" / "python"), rollout.entrypoint]
    policy = SandboxPolicy(
        network="none",
        readable=(*runtime_paths(), repo_dir, *interpreter_dirs(rollout_dir, environ)),
        writable=(artifact_dir, sockets),
        limits=Limits(memory, None, None),
    ) if sandboxed else None
    try:
        child = await start_child("rollout server", command, env=env, log_path=log_path,
                                  sandbox=policy, pass_fds=[listener.fileno()],
                                  cwd=log_path.parent)
    except BaseException:
        for relay in relays:
            relay.close()
        shutil.rmtree(sockets, ignore_errors=True)
        raise
    finally:
        listener.close()
    return LocalRolloutServer(url, artifact_dir, base, child, list(relays), sockets)


def _to_gateway(port: int) -> Any:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            gateway = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await join((reader, writer), gateway)

    return relay


def free_port_range(count: int) -> int:
    """The first of `count` consecutive free ports of the host's loopback."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        base = int(probe.getsockname()[1])
        probe.close()
        if base + count > 65535:
            continue
        if all(_free(base + i) for i in range(count)):
            return base
    raise ChildFailed(f"no {count} consecutive free ports on 127.0.0.1 for the gateways")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _uv(environ: Mapping[str, str]) -> tuple[str, Path]:
    import shutil

    found = shutil.which("uv", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                     environ.get("PATH", "")]))
    if found is None:
        raise ChildFailed("uv is required to build the rollout's environment: install it "
                          "(https://docs.astral.sh/uv/) and put it on PATH")
    return found, Path(os.path.realpath(found)).parent
