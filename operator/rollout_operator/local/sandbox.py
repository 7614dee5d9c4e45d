"""Bubblewrap sandboxes and resource limits for the user code `rolloutctl run` starts.

On a cluster, user code (tools, scorers) runs only in hardened pods. On one machine the same
code runs under bubblewrap (`bwrap`), with `prlimit` resource limits:

- the whole filesystem read-only (`--ro-bind / /`), the repo bundle included;
- a private, empty, writable `/tmp` (also `$TMPDIR`), the only place user code can write
  unless a policy names a folder (the output folder of a `file://` run, for workers);
- the user's home, `/home`, `/root` and `/run` (sockets such as docker.sock or an SSH agent)
  hidden behind empty read-only tmpfs mounts; the Python installation and the folders the
  runtime imports from are mounted back read-only when they live there;
- new user, IPC, PID, UTS and cgroup namespaces, no capabilities, a new session (no terminal
  injection), and `--die-with-parent` so nothing outlives `rolloutctl run`;
- `network="none"`: a network namespace of its own with only loopback. A tool server still
  serves its port on the host's loopback because it is handed an already listening socket
  (created outside, in the host's namespace); every socket it opens itself lives in the empty
  namespace, so no outside address can be reached. `network="host"` keeps the host network
  (workers need the model endpoint, judges and object storage);
- `prlimit`: address space (memory), CPU seconds and open files.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rollout_operator.api.quantity import parse_quantity as exact_quantity

NetworkMode = Literal["none", "host"]

SANDBOX_TMP = "/tmp"
_HIDDEN_ROOTS = ("/home", "/root", "/run")

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf "
    "install bubblewrap; Arch: sudo pacman -S bubblewrap), or pass --no-sandbox to run the "
    "repo's tools and scorers without isolation"
)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be used here; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-process resource limits (None: unlimited)."""

    memory_bytes: int | None = None
    cpu_seconds: int | None = None
    open_files: int | None = None

    def prlimit_args(self) -> list[str]:
        args: list[str] = []
        if self.memory_bytes is not None:
            args.append(f"--as={self.memory_bytes}")
        if self.cpu_seconds is not None:
            args.append(f"--cpu={self.cpu_seconds}")
        if self.open_files is not None:
            args.append(f"--nofile={self.open_files}")
        return args

    def describe(self) -> str:
        parts = []
        if self.memory_bytes is not None:
            parts.append(f"memory {self.memory_bytes / 2**20:.0f} MiB")
        if self.cpu_seconds is not None:
            parts.append(f"CPU {self.cpu_seconds} s")
        if self.open_files is not None:
            parts.append(f"{self.open_files} open files")
        return ", ".join(parts) or "no limits"


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """What one sandboxed process may see and do."""

    network: NetworkMode = "none"
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    limits: Limits = field(default_factory=Limits)
    as_pid_1: bool = True
    """The command is the namespace's PID 1, so a signal sent to it (SIGTERM to stop a worker
    gracefully) reaches the command rather than bubblewrap, which does not forward signals."""


def parse_quantity(value: int | str) -> int:
    """A Kubernetes quantity (`512Mi`, `2Gi`, `1G`, `1500000000`) in whole bytes."""
    amount = exact_quantity(value.strip() if isinstance(value, str) else value)
    if amount < 0:
        raise ValueError(f"{value!r} is negative; give an amount such as 512Mi or 2Gi")
    return int(amount)


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot be used on this machine, or None when it works.

    Bubblewrap is not only looked up but tried: user namespaces may be disabled, or refused
    to unprivileged users by the distribution's security policy.
    """
    if not sys.platform.startswith("linux"):
        return f"sandboxing needs Linux and bubblewrap (this is {sys.platform}); {_no_sandbox()}"
    bwrap = find_bwrap()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}"
    if shutil.which("prlimit") is None:
        return ("prlimit (util-linux) is not installed, so resource limits cannot be set: "
                f"install util-linux, or {_no_sandbox()}")
    probe = sandbox_argv(["true"], SandboxPolicy(), home=None, bwrap=bwrap)
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not start ({exc}); {_no_sandbox()}"
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        return (f"bubblewrap is installed but cannot create a sandbox here ({detail}): user "
                f"namespaces may be disabled for unprivileged users; {_no_sandbox()}")
    return None


def _no_sandbox() -> str:
    return "pass --no-sandbox to run the repo's tools and scorers without isolation"


def runtime_paths() -> list[Path]:
    """Folders the Python runtime needs to import anything: the interpreter's installation,
    the virtual environment and every `sys.path` entry (real paths)."""
    found: list[Path] = []
    candidates: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                             os.path.dirname(sys.executable)]
    candidates += [entry for entry in sys.path if entry]
    candidates += [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    for entry in candidates:
        path = Path(entry).absolute()
        for variant in (path, path.resolve()):
            if variant.exists() and variant not in found:
                found.append(variant)
    return found


def _hidden_roots(home: str | None) -> list[Path]:
    roots = [Path(p) for p in _HIDDEN_ROOTS if Path(p).is_dir() and not Path(p).is_symlink()]
    if home:
        home_path = Path(home).resolve()
        if home_path != Path("/") and home_path.is_dir() and not any(
            home_path == root or home_path.is_relative_to(root) for root in roots
        ):
            roots.append(home_path)
    return roots


def _needs_bind(path: Path, hidden: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in hidden) or (
        path == Path(SANDBOX_TMP) or path.is_relative_to(SANDBOX_TMP)
    )


def sandbox_argv(
    command: Sequence[str],
    policy: SandboxPolicy,
    *,
    home: str | None,
    bwrap: str | None = None,
    info_fd: int | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """`prlimit ... bwrap ... -- command` for `policy`.

    `home` is the user's home folder (hidden); `env` values are set inside with `--setenv`
    (the process environment passes through otherwise); `info_fd` receives bubblewrap's JSON
    with the command's `child-pid`.
    """
    executable = bwrap or find_bwrap() or "bwrap"
    hidden = _hidden_roots(home)
    argv = [executable, "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--unshare-all"]
    if policy.network == "host":
        argv.append("--share-net")
    if policy.as_pid_1:
        argv.append("--as-pid-1")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", SANDBOX_TMP]
    for root in hidden:
        argv += ["--tmpfs", str(root)]
    if policy.network == "host":
        # /etc/resolv.conf often points into /run, which is hidden.
        resolv = Path("/etc/resolv.conf").resolve()
        if resolv.is_file() and _needs_bind(resolv, hidden):
            argv += ["--ro-bind", str(resolv), str(resolv)]
    seen: set[Path] = set()
    for path in policy.readable:
        path = path.absolute()
        if path not in seen and path.exists() and _needs_bind(path, hidden):
            argv += ["--ro-bind", str(path), str(path)]
            seen.add(path)
    for path in policy.writable:
        path = path.absolute()
        if path.exists():
            argv += ["--bind", str(path), str(path)]
    for root in hidden:
        argv += ["--remount-ro", str(root)]
    argv += ["--chdir", SANDBOX_TMP, "--setenv", "TMPDIR", SANDBOX_TMP]
    for key, value in (env or {}).items():
        argv += ["--setenv", key, value]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += ["--", *command]
    limits = policy.limits.prlimit_args()
    if limits:
        return ["prlimit", *limits, "--", *argv]
    return argv
