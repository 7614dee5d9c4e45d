"""What the code expects of the images, read from the code itself.

- the containers the pod builders give the sandbox image (commands, env, mounts, user), from the
  real builders run on a spec that uses every credential;
- the environment variables the pod entrypoints and the runtime read, from their source (module
  constants named `*_ENV` and literal names passed to `environ.get`, `os.getenv`, ...);
- the operator's settings variables, from `OperatorSettings`;
- the `rolloutctl` subcommands, from click's command registry.
"""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import click

from rollout_operator.resources import build_children
from rollout_operator.resources.security import pod_spec_of
from rollout_operator.settings import ENV_PREFIX, OperatorSettings
from tests.resources.cases import SPECS, make_context

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "operator" / "rollout_operator"
SANDBOX_DOCKERFILE = REPO_ROOT / "sandbox-image" / "Dockerfile"
OPERATOR_DOCKERFILE = REPO_ROOT / "sandbox-image" / "operator.Dockerfile"
IMAGES_README = REPO_ROOT / "sandbox-image" / "README.md"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# A spec that makes the builders use every kind of secret env var.
FULL_SPEC = "credentials"

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SandboxContainer:
    """One container of the sandbox image, as a pod builder made it."""

    workload: str  # e.g. "Job/calculator-sync-..."
    name: str
    command: list[str]
    env: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    run_as_user: int | None
    run_as_group: int | None
    pod_run_as_user: int | None
    pod_fs_group: int | None

    @property
    def env_names(self) -> set[str]:
        return {str(item["name"]) for item in self.env}


@cache
def sandbox_containers() -> tuple[SandboxContainer, ...]:
    """Every container of the sandbox image in every child of a run with all credentials."""
    ctx = make_context(SPECS[FULL_SPEC])
    found: list[SandboxContainer] = []
    for manifest in build_children(ctx):
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        pod_context = pod.get("securityContext") or {}
        workload = f"{manifest['kind']}/{manifest['metadata']['name']}"
        for field_name in ("initContainers", "containers"):
            for container in pod.get(field_name) or []:
                if container.get("image") != ctx.sandbox_image:
                    continue
                context = container.get("securityContext") or {}
                found.append(SandboxContainer(
                    workload=workload,
                    name=str(container["name"]),
                    command=[str(word) for word in container.get("command") or []],
                    env=list(container.get("env") or []),
                    mounts=list(container.get("volumeMounts") or []),
                    run_as_user=context.get("runAsUser"),
                    run_as_group=context.get("runAsGroup"),
                    pod_run_as_user=pod_context.get("runAsUser"),
                    pod_fs_group=pod_context.get("fsGroup"),
                ))
    return tuple(found)


def user_chosen_env_names() -> set[str]:
    """Env names the run's author picks (spec.scoring.secrets): documented as a kind only."""
    ctx = make_context(SPECS[FULL_SPEC])
    return {item.env for item in ctx.spec.scoring.secrets}


def writable_paths(container: SandboxContainer) -> list[str]:
    return [str(m["mountPath"]) for m in container.mounts if not m.get("readOnly")]


def writable_in_every_container() -> set[str]:
    """Mount paths that are writable in every sandbox container."""
    sets = [set(writable_paths(c)) for c in sandbox_containers()]
    return set.intersection(*sets) if sets else set()


# Environment variables read by the code ------------------------------------------------------

# Modules whose code runs in the sandbox pods: the pod entrypoints and the whole runtime.
POD_MODULE_GLOBS = ("cli/pod_*.py", "cli/main.py", "runtime/**/*.py")
# Modules the operator runs (its metrics server is left out: its `environ` is WSGI's).
OPERATOR_MODULE_GLOBS = (
    "cli/operator_cmd.py", "cli/main.py", "handlers/**/*.py", "reconcile/**/*.py",
    "resources/**/*.py", "api/**/*.py", "settings.py", "operator_metrics.py",
)


def source_files(globs: tuple[str, ...]) -> list[Path]:
    files: set[Path] = set()
    for pattern in globs:
        files.update(PACKAGE.glob(pattern))
    return sorted(files)


def env_names_read(source: str) -> set[str]:
    """Environment variable names `source` reads: constants named `*_ENV`, and literal names
    given to `<...environ...>.get/setdefault/[]`, `os.getenv` or `getenv`."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if (
                isinstance(value, ast.Constant) and isinstance(value.value, str)
                and any(isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in targets)
                and _ENV_NAME.match(value.value)
            ):
                names.add(value.value)
        elif isinstance(node, ast.Call) and (name := _env_read_by_call(node)):
            names.add(name)
        elif isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
            key = node.slice
            if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                    and _ENV_NAME.match(key.value)):
                names.add(key.value)
    return names


def _env_read_by_call(node: ast.Call) -> str | None:
    """The literal name of `<...environ...>.get/setdefault/pop("X")` or `getenv("X")`."""
    if not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    if not _ENV_NAME.match(first.value):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault", "pop"):
        return first.value if "environ" in ast.unparse(func.value) else None
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return first.value if called == "getenv" else None


def env_names_read_by(globs: tuple[str, ...]) -> dict[str, list[str]]:
    """Name -> the source files (relative to the package) among `globs` that read it."""
    readers: dict[str, list[str]] = {}
    for path in source_files(globs):
        for name in env_names_read(path.read_text(encoding="utf-8")):
            readers.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    return readers


def module_constants(module_name: str, suffix: str) -> dict[str, Any]:
    module = importlib.import_module(module_name)
    return {k: v for k, v in vars(module).items() if k.endswith(suffix) and k.isupper()}


def operator_env_names() -> set[str]:
    """The variables `OperatorSettings` reads (pydantic-settings: prefix + field name)."""
    return {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}


# The CLI ---------------------------------------------------------------------------------------


def cli_group() -> click.Group:
    from rollout_operator.cli.main import cli

    return cli


def registered_subcommands() -> Mapping[str, click.Command]:
    return cli_group().commands


def console_scripts() -> dict[str, str]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = data["project"]["scripts"]
    assert isinstance(scripts, dict)
    return {str(k): str(v) for k, v in scripts.items()}


def subcommand_problems(words: list[str]) -> Iterator[str]:
    """Problems with the arguments `words` given to the `rolloutctl` group: the first word that
    is not an option must be a registered subcommand, and the group's own options must exist."""
    group = cli_group()
    group_options = {opt for param in group.params for opt in getattr(param, "opts", [])}
    group_options |= {"--help", "-h"}
    for word in words:
        if word.startswith("-"):
            if word.split("=", 1)[0] not in group_options:
                yield f"{word!r} is not an option of rolloutctl"
            continue
        if word not in group.commands:
            yield f"{word!r} is not a rolloutctl subcommand"
        return
