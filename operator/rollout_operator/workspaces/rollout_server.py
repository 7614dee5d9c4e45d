"""The user's rollout server as a local process: `uv sync` of the rollout project (its own
pins, so the SDK version is the repo's), then the entrypoint run as `__main__` with `uv run`,
in its own session, until `/health` answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from rollout_operator.workspaces.errors import WorkspaceError
from rollout_operator.workspaces.protocol import RolloutClient

RESERVED_ENV = ("_OSMOSIS_ROLLOUT_PORT", "_OSMOSIS_ROLLOUT_ARTIFACT_ROOT",
                "_OSMOSIS_ROLLOUT_INSTANCE_ID")
READY_TIMEOUT_S = 90.0


def find_uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise WorkspaceError("uv is required to build the rollout's environment: install it "
                             "(https://docs.astral.sh/uv/) and put it on PATH.",
                             code="DEPENDENCY_MISSING")
    return uv


def child_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The inherited environment without `VIRTUAL_ENV`, plus `extra`."""
    env = {key: value for key, value in base.items() if key != "VIRTUAL_ENV"}
    env.update(extra)
    return env


def uv_sync(rollout_dir: Path, env: Mapping[str, str], log: Path) -> None:
    """Create or update `rollouts/<name>/.venv` from the project's own pins."""
    with log.open("ab") as out:
        done = subprocess.run([find_uv(), "sync", "--project", str(rollout_dir)],
                              cwd=rollout_dir, env=dict(env), stdout=out,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise WorkspaceError(f"uv sync of {rollout_dir.name} failed (exit {done.returncode}); "
                             f"see {log}", code="DEPENDENCY_SYNC_FAILED")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RolloutServer:
    """One running rollout server; `stop` ends its whole process group."""

    def __init__(self, rollout_dir: Path, entrypoint: Path, env: Mapping[str, str],
                 artifact_root: Path, log: Path, port: int | None = None) -> None:
        self.rollout_dir = rollout_dir
        self.entrypoint = entrypoint
        self.env = dict(env)
        self.artifact_root = artifact_root
        self.log = log
        self.port = port or free_port()
        self.instance_id = os.urandom(8).hex()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        env = child_env(self.env, {"_OSMOSIS_ROLLOUT_PORT": str(self.port),
                                   "_OSMOSIS_ROLLOUT_ARTIFACT_ROOT": str(self.artifact_root),
                                   "_OSMOSIS_ROLLOUT_INSTANCE_ID": self.instance_id})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [find_uv(), "run", "--no-sync", "--project", str(self.rollout_dir), "python",
                 str(self.entrypoint)],
                cwd=self.rollout_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, object]:
        """`/health`'s answer once the server answers; a `WorkspaceError` if it exits first."""
        client = RolloutClient(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise WorkspaceError(
                        f"the rollout server exited with code {self.process.returncode} before "
                        f"it answered /health; its output is in {self.log}",
                        code="ROLLOUT_SERVER_FAILED")
                with contextlib.suppress(Exception):
                    return await client.health(timeout_s=2.0)
                if time.monotonic() > deadline:
                    raise WorkspaceError(f"the rollout server did not answer /health within "
                                         f"{timeout_s:.0f}s; its output is in {self.log}",
                                         code="ROLLOUT_SERVER_FAILED")
                await asyncio.sleep(0.2)
        finally:
            await client.close()

    def exited_within(self, timeout_s: float) -> bool:
        """Whether the process has ended, or ends within `timeout_s` (a connection that broke
        because the server died comes a moment before its exit)."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue
