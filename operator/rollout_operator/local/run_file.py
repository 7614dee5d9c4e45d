"""A RolloutRun manifest read for a run on this machine.

The file is the very manifest `kubectl apply` takes. What a cluster fills in is decided here:
the namespace (`metadata.namespace`, else `default`), a uid (derived from the namespace, name
and spec, so running the same file again finds and resumes the same run), and where relative
paths point. A local `spec.repo.url` is relative to the manifest's folder (so a manifest next to
its repo can say `url: .`); an output or dataset `file://` URL, or a plain path, is relative to
the current folder; the output defaults to `file://./rollout-output/`.

Flags of `rolloutctl run` change the spec before it is checked (`--model`, `--base-url`,
`--limit`, `--samples`, `--workers`, `--output`), so they change the uid as an edit of the file
would. `--fresh` starts another generation of the same run: the same name and spec with a new
uid (`local_uid(..., generation=n)`), in a folder beside the earlier ones.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rollout_operator.api.spec import RolloutRunSpec

DEFAULT_NAME = "run"
DEFAULT_NAMESPACE = "default"
DEFAULT_OUTPUT = "rollout-output"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class RunFileError(ValueError):
    """The manifest cannot be run; `problems` holds one message per problem (the caller names
    the file)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line changes in the spec; None leaves the manifest's value."""

    name: str | None = None
    shards: int | None = None
    output: str | None = None
    model: str | None = None
    base_url: str | None = None
    limit: int | None = None
    samples: int | None = None


@dataclass(frozen=True, slots=True)
class LocalRun:
    """One run as the local backend carries it out."""

    name: str
    namespace: str
    uid: str
    spec: RolloutRunSpec
    manifest: Path
    generation: int = 0
    """0 for the first run of this name and spec; `--fresh` adds one."""

    def with_generation(self, generation: int) -> LocalRun:
        """The same run started afresh: generation `generation`, with its own uid."""
        from dataclasses import replace

        return replace(self, generation=generation,
                       uid=local_uid(self.namespace, self.name, self.spec, generation))

    @property
    def output_url(self) -> str:
        assert self.spec.output.url is not None
        return self.spec.output.url.rstrip("/")


def load_run_file(
    path: Path,
    *,
    name: str | None = None,
    shards: int | None = None,
    output: str | None = None,
    cwd: Path | None = None,
    overrides: Overrides | None = None,
) -> LocalRun:
    """Read, resolve and validate the manifest at `path` (raises `RunFileError`).

    `name`, `shards` and `output` are `overrides`' fields of the same names (either may be
    given)."""
    flags = overrides or Overrides()
    name = name or flags.name
    shards = shards if shards is not None else flags.shards
    output = output if output is not None else flags.output
    from rollout_operator.api.constants import GROUP, KIND
    from rollout_operator.api.manifest_yaml import (
        ManifestYAMLError,
        load_manifest_documents,
        read_manifest,
    )

    cwd = (cwd or Path.cwd()).resolve()
    try:
        with path.open("rb") as file:
            documents = load_manifest_documents(read_manifest(file))
    except OSError as exc:
        raise RunFileError([f"cannot be read ({exc.strerror or exc})"]) from None
    except ManifestYAMLError as exc:
        raise RunFileError([str(exc)]) from None
    runs = [doc for doc in documents if isinstance(doc, Mapping) and doc.get("kind") == KIND]
    if not runs:
        raise RunFileError([f"no document with kind: {KIND} (apiVersion: {GROUP}/...)"])
    if len(runs) > 1:
        raise RunFileError([f"holds {len(runs)} RolloutRuns; give one per file"])
    document = runs[0]
    api_version = str(document.get("apiVersion") or "")
    if api_version and not api_version.startswith(f"{GROUP}/"):
        raise RunFileError([f"apiVersion: {api_version!r} is not {GROUP}/v1alpha1"])
    meta = document.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise RunFileError(["metadata: must be a mapping"])
    run_name = name or str(meta.get("name") or DEFAULT_NAME)
    namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
    problems = [f"{label}: {value!r} must be a lowercase name of letters, digits, '-' and '.' "
                "(like a Kubernetes object name)"
                for label, value in (("name", run_name), ("metadata.namespace", namespace))
                if not _NAME.match(value) or len(value) > 63]
    if problems:
        raise RunFileError(problems)
    raw_spec = document.get("spec")
    if not isinstance(raw_spec, Mapping):
        raise RunFileError(["spec: missing, or not a mapping of fields"])
    spec_data = _resolved(dict(raw_spec), manifest_dir=path.resolve().parent, cwd=cwd,
                          shards=shards, output=output)
    _override(spec_data, flags)
    spec = _validated(spec_data)
    return LocalRun(name=run_name, namespace=namespace, uid=local_uid(namespace, run_name, spec),
                    spec=spec, manifest=path.resolve())


def local_uid(namespace: str, name: str, spec: RolloutRunSpec, generation: int = 0) -> str:
    """A uid that is the same whenever the same run is started again (so that it resumes);
    each `generation` (`--fresh`) has its own."""
    from rollout_operator.api.validation import spec_hash

    fresh = f"/{generation}" if generation else ""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rolloutctl-run:{namespace}/{name}/"
                                             f"{spec_hash(spec)}{fresh}"))


def _override(spec: dict[str, Any], flags: Overrides) -> None:
    """The command line's model and dataset flags written into the raw spec."""
    if flags.model is not None or flags.base_url is not None:
        model = dict(spec.get("model") or {}) if isinstance(spec.get("model"), Mapping) else {}
        if flags.model is not None:
            model.pop("serve", None)  # --model names the model to call instead of serving one
            model["name"] = flags.model
        if flags.base_url is not None:
            model.pop("base_url", None)
            model["baseURL"] = flags.base_url
        spec["model"] = model
    if flags.limit is not None or flags.samples is not None:
        raw = spec.get("dataset")
        dataset = dict(raw) if isinstance(raw, Mapping) else {}
        for key, snake, value in (("limit", "limit", flags.limit),
                                  ("samplesPerPrompt", "samples_per_prompt", flags.samples)):
            if value is not None:
                dataset.pop(snake, None)
                dataset[key] = value
        spec["dataset"] = dataset


def _validated(spec_data: dict[str, Any]) -> RolloutRunSpec:
    from rollout_operator.api.validation import SpecError, validate_spec

    try:
        return validate_spec(spec_data, cluster=False, allow_file_repos=True)
    except SpecError as exc:
        raise RunFileError(exc.problems) from None


def _resolved(spec: dict[str, Any], *, manifest_dir: Path, cwd: Path, shards: int | None,
              output: str | None) -> dict[str, Any]:
    repo = spec.get("repo")
    if isinstance(repo, Mapping):
        repo = dict(repo)
        url = repo.get("url")
        if isinstance(url, str) and url.strip():
            repo["url"] = _resolve_repo(url.strip(), manifest_dir)
        spec["repo"] = repo
    out = dict(spec.get("output") or {})
    if output is not None:
        out["url"] = output
    out["url"] = _resolve_storage(str(out.get("url") or DEFAULT_OUTPUT), cwd)
    spec["output"] = out
    dataset = spec.get("dataset")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("url"), str):
        spec["dataset"] = {**dataset, "url": _resolve_storage(dataset["url"], cwd)}
    if shards is not None:
        spec["workers"] = {**dict(spec.get("workers") or {}), "shards": shards}
    return spec


def _resolve_repo(url: str, base: Path) -> str:
    """A local repo path made absolute against the manifest's folder; URLs stay as they are."""
    from rollout_operator.api.validation import repo_url_kind

    kind = repo_url_kind(url)
    if kind == "local":
        return str((base / Path(url).expanduser()).resolve())
    if kind == "file":
        parts = urlsplit(url)
        if parts.netloc in ("", "localhost") and not parts.path.startswith("/"):
            return (base / unquote(parts.path)).resolve().as_uri()
        if parts.netloc not in ("", "localhost"):  # file://./repo and file://repo
            return (base / unquote(parts.netloc + parts.path)).resolve().as_uri()
    return url


def _resolve_storage(url: str, cwd: Path) -> str:
    """`file://` URLs and plain paths made absolute against `cwd`; bucket URLs unchanged."""
    text = url.strip()
    if "://" not in text:
        return (cwd / Path(text).expanduser()).resolve().as_uri()
    parts = urlsplit(text)
    if parts.scheme.lower() != "file":
        return text
    if parts.netloc in ("", "localhost"):
        path = unquote(parts.path)
        return (cwd / path).resolve().as_uri() if not path.startswith("/") else \
            Path(path).resolve().as_uri()
    # file://./out or file://out: the "host" is the first part of a relative path.
    return (cwd / unquote(parts.netloc + parts.path)).resolve().as_uri()
