"""`rolloutctl render -f rolloutrun.yaml`: print every object the operator would create for a run.

The run is validated as the operator would validate it, with the operator's settings taken from
`ROLLOUT_OPERATOR_*` variables. What only exists once the run is created and synced (its uid,
the commit, the bundle URL, the scorers found) is filled with placeholders, and the output says
so in a leading comment. The file is read within the bounds of `api.manifest_yaml`. Exit codes:
0 printed; 2 the file, the run or the operator's settings must change first (the message says
what to change).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rollout_operator.settings import OperatorSettings

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_COMMIT = "0" * 40
PLACEHOLDER_DEPS_HASH = "0" * 16
PLACEHOLDER_FETCH_URL = "https://signed-url-of-the-bundle.invalid/from-the-sync-report"


class RenderRefused(click.ClickException):
    """The file, the run in it or the operator's settings must change first: exit 2, as
    `rolloutctl run` does for a manifest that cannot run."""

    exit_code = 2


def _load_runs(stream: IO[str]) -> list[Mapping[str, Any]]:
    """The RolloutRun documents of a YAML stream (other documents are ignored)."""
    from rollout_operator.api.constants import KIND
    from rollout_operator.api.manifest_yaml import (
        ManifestYAMLError,
        load_manifest_documents,
        read_manifest,
    )

    try:
        documents = load_manifest_documents(read_manifest(stream))
    except ManifestYAMLError as exc:
        raise RenderRefused(f"{stream.name}: {exc}") from None
    runs = [doc for doc in documents if isinstance(doc, Mapping) and doc.get("kind") == KIND]
    if not runs:
        raise RenderRefused(f"{stream.name}: no document with kind: {KIND}")
    return runs


def render_run(
    run: Mapping[str, Any],
    *,
    namespace: str | None,
    name: str | None,
    settings: OperatorSettings,
) -> tuple[str, list[dict[str, Any]]]:
    """The header comment and the child manifests of one RolloutRun document."""
    from rollout_operator.api.validation import SpecError, validate_spec
    from rollout_operator.resources import RunContext, build_children
    from rollout_operator.resources.policy import policy_problems
    from rollout_operator.runtime.run_layout import bundle_url

    meta = run.get("metadata") or {}
    run_name = name or meta.get("name")
    if not run_name:
        raise RenderRefused("the RolloutRun has no metadata.name; pass --name")
    run_namespace = namespace or meta.get("namespace") or "default"
    try:
        spec = validate_spec(
            run.get("spec"), cluster=True, allow_file_repos=settings.allow_file_repos
        )
    except SpecError as exc:
        raise RenderRefused(_problem_list(run_name, exc.problems)) from None
    problems = policy_problems(spec, settings)
    if problems:
        raise RenderRefused(_problem_list(run_name, problems))
    ctx = RunContext(
        name=run_name,
        namespace=run_namespace,
        uid=PLACEHOLDER_UID,
        generation=1,
        spec=spec,
        settings=settings,
        commit=PLACEHOLDER_COMMIT,
        scorers=list(spec.scoring.functions or []),
    )
    ctx = dataclasses.replace(
        ctx, bundle_url=bundle_url(ctx.output_url, PLACEHOLDER_COMMIT, PLACEHOLDER_DEPS_HASH),
        bundle_fetch_url=PLACEHOLDER_FETCH_URL,
    )
    header = (
        f"# Objects the operator creates for RolloutRun {run_namespace}/{run_name}, "
        "each in its phase.\n"
        "# Placeholders for what is known only once the run exists and has synced:\n"
        f"#   uid      {ctx.uid} (it also sets name suffixes and the run prefix)\n"
        f"#   commit   {ctx.commit}\n"
        f"#   bundle   {ctx.bundle_url}\n"
        f"#   signed   {PLACEHOLDER_FETCH_URL} (user-code pods fetch the bundle with it)\n"
        "#   scorers  spec.scoring.functions (sync finds every scorer when it is empty)\n"
    )
    return header, build_children(ctx)


def _problem_list(name: str, problems: Iterable[str]) -> str:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"RolloutRun {name!r} cannot run:\n{lines}"


def _dump(manifests: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, width=100)


@click.command("render")
@click.option(
    "-f",
    "--filename",
    "stream",
    type=click.File("r"),
    required=True,
    help="RolloutRun YAML file ('-' reads standard input).",
)
@click.option("-n", "--namespace", default=None, help="Namespace (default: metadata.namespace).")
@click.option("--name", default=None, help="Run name (default: metadata.name).")
def render_command(stream: IO[str], namespace: str | None, name: str | None) -> None:
    """Print the Kubernetes objects a RolloutRun would create, as a YAML stream."""
    from pydantic import ValidationError

    from rollout_operator.settings import OperatorSettings

    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        raise RenderRefused(f"operator settings (ROLLOUT_OPERATOR_*): {exc}") from None
    runs = _load_runs(stream)
    if name is not None and len(runs) > 1:
        raise RenderRefused("--name applies to a file with one RolloutRun only")
    parts = []
    for run in runs:
        header, manifests = render_run(run, namespace=namespace, name=name, settings=settings)
        parts.append(header + _dump(manifests))
    click.echo("---\n".join(parts), nl=False)
