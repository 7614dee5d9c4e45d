"""The emulated cluster on a loopback port, served from a background thread.

`EmulatedCluster` runs the emulator, its garbage collector and the fake controllers in one event
loop of their own (so Kopf, `kubectl` and synchronous clients can all talk to it) and writes a
kubeconfig that points at it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.test_utils
import attrs
import kmock

from tests.k8s.controllers import Controllers
from tests.k8s.emulator import ClusterEmulator

T = TypeVar("T")
HOST = "127.0.0.1"
KUBECTL = "/usr/bin/kubectl"
TEST_KUBECONFIG = Path(tempfile.gettempdir()) / f"rollout-operator-tests-{os.getpid()}" / \
    "kubeconfig"


def use_test_kubeconfig() -> Path:
    """Point `$KUBECONFIG` at this process's test kubeconfig, which each cluster rewrites.

    Code that reads the default kubeconfig (the `kubernetes` client, Kopf, `kubectl`,
    subprocesses) then reaches the emulator and never a real cluster. The `kubernetes` client
    reads `$KUBECONFIG` once, when it is imported: call this first (tests/conftest.py does).
    """
    os.environ["KUBECONFIG"] = str(TEST_KUBECONFIG)
    return TEST_KUBECONFIG


@attrs.mutable
class LoopbackServer(kmock.Server):
    """kmock's server without its hostname interception.

    `kmock.Server` also re-routes aiohttp's name resolution process-wide; clients here reach the
    emulator by its URL, and a process-wide patch would tangle when clusters overlap.
    """

    async def __aenter__(self) -> Self:
        self._managed_server = aiohttp.test_utils.RawTestServer(self.handler, host=self._host,
                                                                port=self._port)
        await self._managed_server.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc_value: BaseException | None, traceback: TracebackType | None) -> None:
        self.handler.servers.remove(self)
        if self._managed_server is not None:
            await self._managed_server.__aexit__(exc_type, exc_value, traceback)
        self._managed_server = None


def kubeconfig_text(url: str) -> str:
    """A kubeconfig for the emulator: plain HTTP, a dummy token (there is no authentication)."""
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
        f"clusters:\n- name: emulator\n  cluster:\n    server: {url}\n"
        "users:\n- name: emulator\n  user:\n    token: dummy\n"
        "contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n"
        "    namespace: default\n"
    )


def write_kubeconfig(path: Path, url: str) -> Path:
    """Write atomically, so a process starting meanwhile never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(kubeconfig_text(url))
    temporary.replace(path)
    return path


class EmulatedCluster:
    """The emulator, its garbage collector and the fake controllers, served on loopback.

    Use as a context manager. `kubeconfig` points at it; `also_write` names more paths that
    get the same kubeconfig (e.g. the process-wide `$KUBECONFIG`).
    """

    def __init__(self, workdir: Path | None = None, *, also_write: tuple[Path, ...] = (),
                 controllers: bool = True, emulator: ClusterEmulator | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="k8s-emulator-"))
        self.emulator = emulator if emulator is not None else ClusterEmulator()
        self.controllers = Controllers(self.emulator, self.workdir / "pods")
        self._run_controllers = controllers
        self._also_write = also_write
        self.kubeconfig = self.workdir / "kubeconfig"
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    # Lifecycle.

    def start(self) -> Self:
        started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(started,),
                                        name="k8s-emulator", daemon=True)
        self._thread.start()
        self.url = started.result(timeout=15)
        write_kubeconfig(self.kubeconfig, self.url)
        for path in self._also_write:
            write_kubeconfig(path, self.url)
        return self

    def _serve(self, started: concurrent.futures.Future[str]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise
        finally:
            loop.close()

    async def _main(self, started: concurrent.futures.Future[str]) -> None:
        self._stopping = asyncio.Event()
        async with self.emulator, LoopbackServer(self.emulator, host=HOST) as server:
            gc_task = asyncio.create_task(self.emulator.collect_garbage_forever())
            if self._run_controllers:
                await self.controllers.start()
            started.set_result(f"http://{HOST}:{server.port}")
            await self._stopping.wait()
            await self.controllers.stop()
            gc_task.cancel()
            self.emulator.close_watches()
            await asyncio.sleep(0)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(15)
        if self._own_workdir:
            subprocess.run(["rm", "-rf", str(self.workdir)], check=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Helpers for tests.

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine in the cluster's loop from another thread and return its result."""
        assert self._loop is not None, "the cluster is not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def kill_job_pod(self, namespace: str, job: str, index: int | None = None,
                     timeout: float = 10) -> str:
        """Kill a running pod of the Job (waiting until one runs), as a dead node or the OOM
        killer would; the Job retries it as its backoff limits allow. Returns the pod's name."""
        jobs = self.controllers.jobs
        name = wait_for(lambda: next(iter(jobs.running_pods(namespace, job, index)), None),
                        timeout, message=f"a running pod of job {namespace}/{job}")
        if not self.call(jobs.kill(namespace, name)):
            raise AssertionError(f"pod {namespace}/{name} ended before it could be killed")
        return name

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against the cluster (its own cache dir, no other config)."""
        command = [KUBECTL, f"--kubeconfig={self.kubeconfig}",
                   f"--cache-dir={self.workdir / 'kubectl-cache'}", *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result


def wait_for(condition: Callable[[], T | None], timeout: float = 10, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
