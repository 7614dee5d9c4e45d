"""Carrying out a Job's containers as local processes, with the environment a pod would get.

`prepare_container` turns one container of a pod into a `ContainerRun`: `command` + `args` with
`$(VAR)` expanded; the env from literal values, Secrets, ConfigMaps and the downward API
(`JOB_COMPLETION_INDEX` comes that way, as on a cluster); and the pod's volumes (`emptyDir`,
`secret`, `configMap`) and termination message file as directories and files under the pod's
local directory. Container paths in the command, args, env values and working directory are
rewritten to those local paths (whole path tokens, wherever they appear in a string, inline
scripts included), so a worker told `--out /scratch/x` writes under the pod's directory. A
`JobRunner` then executes the run; `SubprocessRunner` is the default.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tests.k8s.emulator import ClusterEmulator

Obj = dict[str, Any]
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot start yet (a Secret or key is missing): the pod stays Pending."""


@dataclass
class ContainerRun:
    """One container of a Job's pod, ready to execute locally."""

    job: Obj
    pod: Obj
    container: Obj
    index: int | None
    command: list[str]
    env: dict[str, str]
    workdir: Path
    cwd: Path
    termination_message_path: Path
    log_path: Path


class JobRunner(Protocol):
    """Carries out one container; the Job controller turns the exit code into pod status."""

    async def run(self, run: ContainerRun) -> int:
        """Return the exit code. Cancellation means the pod was killed: stop at once."""
        ...


@dataclass
class SubprocessRunner:
    """Runs the container's command as a local process in its own session.

    `extra_env` is added to every process last (tests map in-cluster URLs this way); the
    termination message path is also given in `termination_path_env`, for entrypoints that do
    not take it as an argument. `python` on the PATH is this interpreter.
    """

    extra_env: dict[str, str] = field(default_factory=dict)
    termination_path_env: str | None = "ROLLOUT_TERMINATION_MESSAGE_PATH"

    async def run(self, run: ContainerRun) -> int:
        if not run.command:
            run.log_path.write_text(f"container {run.container.get('name')!r} has no command: "
                                    "the emulator cannot run an image's entrypoint\n")
            return 128
        env = dict(run.env)
        if self.termination_path_env and self.termination_path_env not in env:
            env[self.termination_path_env] = str(run.termination_message_path)
        env.update(self.extra_env)
        with run.log_path.open("ab") as log:
            try:
                process = await asyncio.create_subprocess_exec(
                    *run.command, env=env, cwd=run.cwd, stdin=asyncio.subprocess.DEVNULL,
                    stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                log.write(f"cannot start {run.command[0]!r}: {exc}\n".encode())
                return 127
            try:
                return await process.wait()
            except asyncio.CancelledError:
                _kill_group(process.pid)
                await process.wait()
                raise


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _expand(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(replace, text)


class _PathMap:
    """Container paths to local paths, applied to whole path tokens only."""

    def __init__(self, mapping: Mapping[str, Path]) -> None:
        # One pass with the longest container path first: a local path put in by one mapping
        # (say /workspace -> /tmp/.../volumes/workspace) is never mapped again by another (/tmp).
        self._local = {container.rstrip("/"): str(local) for container, local in mapping.items()}
        alternatives = "|".join(re.escape(c) for c in sorted(self._local, key=len, reverse=True))
        self._pattern = re.compile(r"(?<![\w/.-])(" + alternatives + r")(?=/|$|[\s:;,='\"])")

    def __call__(self, text: str) -> str:
        return self._pattern.sub(lambda match: self._local[match.group(1)], text)


def _secret_data(emulator: ClusterEmulator, namespace: str, name: str,
                 optional: bool) -> dict[str, str] | None:
    secret = emulator.get_object("v1/secrets", name, namespace)
    if secret is None:
        if optional:
            return None
        raise ContainerConfigError(f'secret "{name}" not found')
    data = secret.get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _config_map_data(emulator: ClusterEmulator, namespace: str, name: str,
                     optional: bool) -> dict[str, str] | None:
    config_map = emulator.get_object("v1/configmaps", name, namespace)
    if config_map is None:
        if optional:
            return None
        raise ContainerConfigError(f'configmap "{name}" not found')
    return dict(config_map.get("data") or {})


def _field_value(pod: Obj, path: str) -> str:
    if match := _FIELD_LABEL.match(path):
        return str(((pod.get("metadata") or {}).get(match[1]) or {}).get(match[2], ""))
    value: Any = pod
    for part in path.split("."):
        value = (value or {}).get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _value_from(emulator: ClusterEmulator, pod: Obj, source: Obj) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if ref := source.get("secretKeyRef"):
        data = _secret_data(emulator, namespace, ref["name"], bool(ref.get("optional")))
        if data is None:
            return None
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in Secret "
                                       f"{namespace}/{ref['name']}")
        return data[ref["key"]]
    if ref := source.get("configMapKeyRef"):
        data = _config_map_data(emulator, namespace, ref["name"], bool(ref.get("optional")))
        if data is None or (ref["key"] not in data and ref.get("optional")):
            return None
        if ref["key"] not in data:
            raise ContainerConfigError(f"couldn't find key {ref['key']} in ConfigMap "
                                       f"{namespace}/{ref['name']}")
        return data[ref["key"]]
    if ref := source.get("fieldRef"):
        return _field_value(pod, ref["fieldPath"])
    return ""


def container_env(emulator: ClusterEmulator, pod: Obj, container: Obj) -> dict[str, str]:
    """The variables the container's own spec defines (`envFrom`, then `env`, in order)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        data: dict[str, str] | None = None
        if ref := source.get("secretRef"):
            data = _secret_data(emulator, namespace, ref["name"], bool(ref.get("optional")))
        elif ref := source.get("configMapRef"):
            data = _config_map_data(emulator, namespace, ref["name"], bool(ref.get("optional")))
        env.update({f"{prefix}{key}": value for key, value in (data or {}).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(emulator, pod, var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = _expand(str(var.get("value", "")), env)
    return env


def _prepare_volumes(emulator: ClusterEmulator, pod: Obj, workdir: Path) -> dict[str, Path]:
    namespace = pod["metadata"]["namespace"]
    volumes: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        local = workdir / "volumes" / volume["name"]
        local.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] | None = {}
        if ref := volume.get("secret"):
            files = _secret_data(emulator, namespace, ref["secretName"], bool(ref.get("optional")))
        elif ref := volume.get("configMap"):
            files = _config_map_data(emulator, namespace, ref["name"], bool(ref.get("optional")))
        items = {item["key"]: item["path"] for item in (ref or {}).get("items") or []} \
            if volume.get("secret") or volume.get("configMap") else {}
        for key, content in (files or {}).items():
            if items and key not in items:
                continue
            target = local / items.get(key, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        volumes[volume["name"]] = local
    return volumes


def prepare_container(emulator: ClusterEmulator, job: Obj, pod: Obj, container: Obj,
                      index: int | None, workdir: Path) -> ContainerRun:
    """Everything a runner needs for one container; raises `ContainerConfigError` if it
    cannot start yet."""
    volumes = _prepare_volumes(emulator, pod, workdir)
    own_dir = workdir / "containers" / container["name"]
    own_dir.mkdir(parents=True, exist_ok=True)
    termination = own_dir / "termination-log"
    termination.write_text("")
    mapping: dict[str, Path] = {
        container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH: termination}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] in volumes:
            mapping[mount["mountPath"]] = volumes[mount["name"]] / mount.get("subPath", "")
    to_local = _PathMap(mapping)
    defined = container_env(emulator, pod, container)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOME": str(workdir), "HOSTNAME": pod["metadata"]["name"], "LANG": "C.UTF-8"}
    env.update({key: to_local(value) for key, value in defined.items()})
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    command = [to_local(_expand(str(arg), defined)) for arg in argv]
    working = container.get("workingDir")
    cwd = Path(to_local(working)) if working else own_dir
    if not cwd.is_dir():
        cwd = own_dir
    return ContainerRun(job=job, pod=pod, container=container, index=index, command=command,
                        env=env, workdir=workdir, cwd=cwd, termination_message_path=termination,
                        log_path=own_dir / "log")
