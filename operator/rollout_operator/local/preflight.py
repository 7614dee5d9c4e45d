"""What is checked before a run starts: by `rolloutctl run` and by `rolloutctl validate`.

`preflight` is the one function both call, so `validate` never says OK to what `run` refuses
at once. It reads files and environment variables only (no network, no clone, no import of
the repo's code), so it answers in well under a second:

- the model key: `spec.model.apiKeySecret` is `ROLLOUT_MODEL_API_KEY` here, else the provider's
  own variable (`OPENAI_API_KEY`, ...) or `LITELLM_API_KEY`; a `baseURL` (an OpenAI-compatible
  server) or `serve` needs none;
- every variable `spec.scoring.secrets` (a judge's key) or `spec.rollout.secrets` names is set;
- `spec.output.credentialsSecret` with an `s3://` output (or dataset URL): `AWS_ACCESS_KEY_ID`
  and `AWS_SECRET_ACCESS_KEY`; with `gs://`: `GOOGLE_APPLICATION_CREDENTIALS`;
- a local repo folder holds `mcp/main.py` (the tool server), or for `spec.rollout` the rollout's
  entrypoint, and the dataset `spec.dataset.path` names.

A git repo's files are checked at sync, after the clone; `validate REPO` checks the folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollout_operator.api.spec import RolloutRunSpec
    from rollout_operator.local.run_file import LocalRun

MODEL_KEY_ENV = "ROLLOUT_MODEL_API_KEY"
"""`runtime.run_config.MODEL_API_KEY_ENV`, the variable a worker reads its key from."""


@dataclass(frozen=True, slots=True)
class Check:
    """One problem: what it concerns (`model`, `secrets`, `tools`, `dataset`), the file it is
    in (relative to the repo folder) when there is one, and what to do."""

    area: str
    file: str | None
    message: str


def preflight(run: LocalRun, environ: Mapping[str, str]) -> list[Check]:
    """Everything `rolloutctl run` refuses before it starts, for the resolved `run`."""
    from rollout_operator.local.source import is_local_path

    problems = secret_problems(run.spec, environ)
    repo = run.spec.repo
    if is_local_path(repo.url):
        root = Path(repo.url) / repo.path.strip("/") if repo.path.strip("/") else Path(repo.url)
        if root.is_dir():
            problems += repo_layout_problems(root, run.spec)
            dataset = run.spec.dataset.path
            if dataset and not (root / dataset).is_file():
                problems.append(Check(
                    "dataset", dataset, "spec.dataset.path: no such file in the repo folder "
                    "(the path is relative to spec.repo.path)"))
        else:
            problems.append(Check("repo", None, f"spec.repo.url: {root} is not a folder"))
    return problems


def repo_layout_problems(root: Path, spec: RolloutRunSpec | None = None) -> list[Check]:
    """What a repo folder must hold for a run, without importing any of it: `mcp/main.py`, or
    for a run of an Osmosis 0.3 workspace (`spec.rollout`) its rollout's entrypoint."""
    from rollout_operator.runtime.inspection import MCP_MAIN

    rollout = spec.rollout if spec is not None else None
    if rollout is not None:
        entrypoint = f"rollouts/{rollout.name}/{rollout.entrypoint}"
        if (root / entrypoint).is_file():
            return []
        return [Check("rollout", entrypoint, "missing: spec.rollout names a rollout whose "
                      "entrypoint is not in the repo folder (check spec.rollout.name, "
                      "spec.rollout.entrypoint and spec.repo.path)")]
    if (root / MCP_MAIN).is_file():
        return []
    return [Check("tools", MCP_MAIN, "missing: the repo folder needs mcp/main.py, the tool "
                  "server that defines the tools (check spec.repo.path and the revision)")]


def secret_problems(spec: RolloutRunSpec, environ: Mapping[str, str]) -> list[Check]:
    """The model key and every variable `spec.scoring.secrets` names, looked up in `environ`."""
    problems = []
    key = model_key_problem(spec, environ)
    if key is not None:
        problems.append(Check("model", None, key))
    named = [("spec.scoring.secrets", "the scorers", spec.scoring.secrets)]
    if spec.rollout is not None:
        named.append(("spec.rollout.secrets", "the rollout server", spec.rollout.secrets))
    for field, who, secrets in named:
        for index, secret in enumerate(secrets):
            if not environ.get(secret.env):
                ref = secret.secret_key_ref
                problems.append(Check(
                    "secrets", None,
                    f"{field}[{index}]: {secret.env} is not set. Locally {who} get"
                    f"{'' if who.endswith('s') else 's'} {secret.env} from your environment "
                    f"(or a .env file) in place of Secret {ref.name}, key {ref.key}: "
                    f"export {secret.env}=..."))
    problems += _storage_problems(spec, environ)
    return problems


STORAGE_KEYS = {"s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                "gs": ("GOOGLE_APPLICATION_CREDENTIALS",)}
"""The variables that stand for `spec.output.credentialsSecret` here, by URL scheme."""


def _storage_problems(spec: RolloutRunSpec, environ: Mapping[str, str]) -> list[Check]:
    secret = spec.output.credentials_secret
    if secret is None:
        return []
    schemes = {url.split("://", 1)[0].lower() for url in (spec.output.url, spec.dataset.url)
               if url and "://" in url}
    problems = []
    for scheme in sorted(schemes & set(STORAGE_KEYS)):
        missing = [name for name in STORAGE_KEYS[scheme] if not environ.get(name)]
        if missing:
            problems.append(Check(
                "secrets", None,
                f"spec.output.credentialsSecret: {' and '.join(missing)} not set. Locally the "
                f"{scheme}:// storage is reached with {', '.join(STORAGE_KEYS[scheme])} from "
                f"your environment (or a .env file) in place of Secret {secret}"))
    return problems


def model_key_problem(spec: RolloutRunSpec, environ: Mapping[str, str]) -> str | None:
    """Why the model cannot be called for want of a key, or None.

    The provider is the prefix of `spec.model.name` (`anthropic/claude-...`), `openai` for a
    bare name, as the workers resolve it; providers whose variable is not known are not
    checked."""
    from rollout_operator.runtime.models.naming import PROVIDER_KEY_ENV

    model = spec.model
    if model.serve is not None or model.base_url or environ.get(MODEL_KEY_ENV) \
            or environ.get("LITELLM_API_KEY"):
        return None
    name = model.name or ""
    provider = name.split("/", 1)[0] if "/" in name else "openai"
    variable = PROVIDER_KEY_ENV.get(provider)
    if variable is None or environ.get(variable):
        return None
    return (f"spec.model.name {name!r} needs an API key and none is set: export "
            f"{MODEL_KEY_ENV}=... (or {variable}, or put it in a .env file here), or, for an "
            "OpenAI-compatible server that needs no key, give --base-url URL (spec.model.baseURL)")
