"""`configs/eval/<name>.toml`: `[experiment]`, `[evaluation]`, `[env]`, `[secrets]`,
`[advanced]`; unknown keys are refused with every problem listed at once."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_operator.workspaces.errors import WorkspaceError

RESERVED_ENV_PREFIX = "_OSMOSIS_"
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
ROLLOUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
SECTIONS = frozenset({"experiment", "evaluation", "env", "secrets", "advanced"})
EXPERIMENT_KEYS = ("rollout", "entrypoint", "model_path", "dataset")
EVALUATION_KEYS = {"limit": "int", "n": "int", "batch_size": "int", "pass_threshold": "number",
                   "agent_workflow_timeout_s": "number", "grader_timeout_s": "number"}


@dataclass(frozen=True, slots=True)
class EvalConfig:
    path: Path
    rollout: str
    entrypoint: str
    model_path: str
    dataset: str
    branch: str | None = None
    commit_sha: str | None = None
    limit: int | None = None
    n: int = 1
    batch_size: int | None = None
    pass_threshold: float = 1.0
    agent_timeout_s: float | None = None
    grader_timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_names: tuple[str, ...] = ()
    advanced: dict[str, Any] | None = None


def load_eval_config(path: Path) -> EvalConfig:
    """Read and check an eval config; a `WorkspaceError` lists what is wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkspaceError(f"Config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError(f"Invalid TOML in {path}: {exc}") from None
    except OSError as exc:
        raise WorkspaceError(f"Cannot read config file {path}: {exc}") from None
    issues = [(name, "Unrecognized section") for name in raw if name not in SECTIONS]
    experiment = _table(raw, "experiment", path, required=True)
    for key in EXPERIMENT_KEYS:
        if key not in experiment:
            raise WorkspaceError(f"Missing '{key}' in [experiment] section of {path}")
    allowed = {*EXPERIMENT_KEYS, "branch", "commit_sha"}
    issues += [(f"experiment.{key}", "Unrecognized key") for key in experiment
               if key not in allowed]
    for key in (*EXPERIMENT_KEYS, "branch", "commit_sha"):
        if key in experiment and not (isinstance(experiment[key], str) and experiment[key]):
            issues.append((f"experiment.{key}", f"must be a string, got {experiment[key]!r}"))
    if "branch" in experiment and "commit_sha" in experiment:
        issues.append(("experiment", "set branch or commit_sha, not both"))
    sha = experiment.get("commit_sha")
    if isinstance(sha, str) and not SHA.match(sha):
        issues.append(("experiment.commit_sha", "must be 7-40 hex characters"))
    evaluation = _table(raw, "evaluation", path, required=False)
    for key, value in evaluation.items():
        kind = EVALUATION_KEYS.get(key)
        if kind is None:
            issues.append((f"evaluation.{key}", "Unrecognized key"))
        elif isinstance(value, bool) or not isinstance(value, int if kind == "int" else
                                                          int | float):
            issues.append((f"evaluation.{key}",
                           f"must be {'an integer' if kind == 'int' else 'a number'}, "
                           f"got {value!r}"))
        elif kind == "number" and not math.isfinite(value):
            issues.append((f"evaluation.{key}", "must be finite"))
    if isinstance(evaluation.get("n"), int) and evaluation["n"] < 1:
        issues.append(("evaluation.n", "must be greater than 0"))
    if issues:
        lines = "\n".join(f"  - {key}: {message}" for key, message in issues)
        raise WorkspaceError(f"Invalid eval config:\n{lines}")
    env = _table(raw, "env", path, required=False)
    for key, value in env.items():
        if not ENV_NAME.match(key):
            raise WorkspaceError(f"Invalid env var name '{key}' in [env] of {path}: "
                                 "must match ^[A-Z_][A-Z0-9_]*$")
        if key.startswith(RESERVED_ENV_PREFIX):
            raise WorkspaceError(f"'{key}' in [env] of {path}: env var names starting with "
                                 f"{RESERVED_ENV_PREFIX} are reserved by the platform; "
                                 "choose a different name.")
        if not isinstance(value, str):
            raise WorkspaceError(f"[env] value of '{key}' in {path} must be a string")
    secrets = _secret_names(raw, path, env)
    advanced = raw.get("advanced")
    return EvalConfig(
        path=path, rollout=experiment["rollout"], entrypoint=experiment["entrypoint"],
        model_path=experiment["model_path"], dataset=experiment["dataset"],
        branch=experiment.get("branch"), commit_sha=experiment.get("commit_sha"),
        limit=evaluation.get("limit"), n=evaluation.get("n", 1),
        batch_size=evaluation.get("batch_size"),
        pass_threshold=float(evaluation.get("pass_threshold", 1.0)),
        agent_timeout_s=_float(evaluation.get("agent_workflow_timeout_s")),
        grader_timeout_s=_float(evaluation.get("grader_timeout_s")),
        env=dict(env), secret_names=secrets,
        advanced=advanced if isinstance(advanced, dict) else None,
    )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _table(raw: dict[str, Any], name: str, path: Path, *, required: bool) -> dict[str, Any]:
    if name not in raw:
        if required:
            raise WorkspaceError(f"Missing [{name}] section in {path}")
        return {}
    if not isinstance(raw[name], dict):
        raise WorkspaceError(f"[{name}] must be a table in {path}")
    return dict(raw[name])


def _secret_names(raw: dict[str, Any], path: Path, env: dict[str, Any]) -> tuple[str, ...]:
    if "secrets" not in raw:
        raise WorkspaceError(f"Missing [secrets] section in {path} (use `required = []` when "
                             "the evaluation needs no secret)")
    secrets = raw["secrets"]
    if not isinstance(secrets, dict):
        raise WorkspaceError(f"[secrets] must be a table in {path}")
    extra = sorted(key for key in secrets if key != "required")
    if extra:
        raise WorkspaceError(f"[secrets] in {path} only supports the 'required' field; "
                             f"unknown key(s): {', '.join(extra)}.")
    if "required" not in secrets:
        raise WorkspaceError(f"Missing 'required' in [secrets] section of {path}")
    names = secrets["required"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise WorkspaceError(f"'required' in [secrets] of {path} must be a list of strings")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise WorkspaceError(f"Duplicate secret name(s) in [secrets].required of {path}: "
                             f"{', '.join(duplicates)}. Each name must appear once.")
    for name in names:
        if not SECRET_NAME.match(name):
            raise WorkspaceError(
                f"Invalid secret name '{name}' in {path}: use uppercase letters, digits, and "
                "underscores, starting with a letter (e.g. MY_SECRET). Must match "
                "^[A-Z][A-Z0-9_]*$.")
        if name.startswith(RESERVED_ENV_PREFIX):
            raise WorkspaceError(f"'{name}' in [secrets] of {path} is reserved")
    both = sorted(set(names) & set(env))
    if both:
        raise WorkspaceError(f"Name(s) appear in both [env] and [secrets] of {path}: "
                             f"{', '.join(both)}. Each env var name must come from exactly "
                             "one place.")
    return tuple(names)


def check_rollout_paths(config: EvalConfig, workspace: Path) -> tuple[Path, Path]:
    """The rollout directory and the entrypoint file, both inside the workspace."""
    if not ROLLOUT_NAME.match(config.rollout) or "/" in config.rollout:
        raise WorkspaceError(f"eval rollout {config.rollout!r} must be a single-segment name "
                             "(no path separators).")
    rollouts = (workspace / "rollouts").resolve()
    rollout_dir = (rollouts / config.rollout).resolve()
    if rollout_dir.parent != rollouts:
        raise WorkspaceError("eval rollout must resolve under the current workspace "
                             "directory's rollouts directory.")
    if not rollout_dir.is_dir():
        raise WorkspaceError(f"Rollout directory not found: rollouts/{config.rollout}/")
    entrypoint = (rollout_dir / config.entrypoint).resolve()
    if not entrypoint.is_relative_to(rollout_dir):
        raise WorkspaceError("eval entrypoint must resolve under rollouts/<rollout>/ within "
                             "the current workspace directory.")
    if not entrypoint.is_file():
        raise WorkspaceError(f"Entrypoint not found: rollouts/{config.rollout}/"
                             f"{config.entrypoint}")
    if not (rollout_dir / "pyproject.toml").is_file():
        raise WorkspaceError(f"rollouts/{config.rollout}/pyproject.toml is missing: a rollout "
                             "is a uv project")
    return rollout_dir, entrypoint
