"""`rolloutctl validate [REPO]`: load a Local Rollout repo the way a run would, and say what breaks.

It imports `mcp/main.py` and lists its tools as the model would get them, imports every module
under `reward_fn/` and `reward_rubric/` to find the decorated scorers, and reads every row of each
dataset at the repo root or under `data/` (where `osmosis init` workspaces keep them) through the
dataset validator. Everything found is printed, and every problem names the file it is in; the
exit code is 1 when there is any problem.

What `rolloutctl run` refuses before it starts is checked by the same function
(`local.preflight`): the repo folder's layout always, and with `-f rolloutrun.yaml` the
manifest, the model key and the judge keys too, for the repo folder the manifest names.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rollout_operator.runtime.repo_loader import RepoReport


@dataclass(slots=True)
class DatasetCheck:
    """One dataset file: how many rows it has, and the first problem found in it."""

    path: Path
    rows: int = 0
    bad_rows: int = 0
    error: str | None = None


@dataclass(slots=True)
class Problem:
    area: str
    file: Path | None
    message: str


@dataclass(slots=True)
class Validation:
    report: RepoReport
    datasets: list[DatasetCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset_file(path: Path) -> DatasetCheck:
    """Read every row, counting them; keep the first error (a bad row or an unreadable file).

    A bad row's error names its line of the file (`line 7: ...`), as a run's records do.
    """
    from rollout_operator.runtime.dataset import BadRow, iter_rows_lenient
    from rollout_operator.runtime.errors import LocalExecutionError

    check = DatasetCheck(path)
    try:
        for row in iter_rows_lenient(path, source=""):
            check.rows += 1
            if isinstance(row, BadRow):
                check.bad_rows += 1
                if check.error is None:
                    check.error = row.message
    except (LocalExecutionError, OSError) as exc:
        # The rest of the file cannot be read: report where reading stopped.
        check.error = f"{exc} (after {check.rows} rows)" if check.rows else str(exc)
    return check


def validate_repo(repo: Path) -> Validation:
    from rollout_operator.local.preflight import repo_layout_problems
    from rollout_operator.runtime.repo_loader import inspect_repo

    report = inspect_repo(repo)
    result = Validation(report)
    layout = repo_layout_problems(report.root) if report.root.is_dir() else []
    for found in layout:
        result.problems.append(Problem(found.area, report.root / found.file
                                       if found.file else None, found.message))
    for problem in report.problems:
        if problem.area == "tools" and layout:
            continue  # the missing mcp/main.py, said above
        result.problems.append(Problem(problem.area, problem.file, problem.message))
    if not report.root.is_dir():
        return result
    if not report.scorers and not any(p.area == "scorers" for p in report.problems):
        result.notes.append("no @osmosis_reward or @osmosis_rubric functions found")
    if not report.datasets:
        result.notes.append(
            "no dataset (.jsonl, .csv or .parquet) at the repo root or under data/"
        )
    for path in report.datasets:
        check = check_dataset_file(path)
        result.datasets.append(check)
        if check.error is not None:
            more = f" ({check.bad_rows} bad rows in all)" if check.bad_rows > 1 else ""
            result.problems.append(Problem("dataset", path, check.error + more))
    return result


def _shown(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _parameters(tool: dict[str, Any]) -> list[str]:
    parameters = tool.get("function", {}).get("parameters") or {}
    return list((parameters.get("properties") or {}).keys())


def as_json(result: Validation) -> dict[str, Any]:
    report = result.report
    root = report.root
    return {
        "repo": str(root),
        "ok": result.ok,
        "fastmcp_version": report.fastmcp_version,
        "tools": [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description"),
                "parameters": _parameters(tool),
            }
            for tool in report.tools
        ],
        "scorers": [
            {"ref": s.ref, "kind": s.kind, "file": _shown(s.file, root), "line": s.line}
            for s in report.scorers
        ],
        "datasets": [
            {
                "file": _shown(d.path, root),
                "rows": d.rows,
                "bad_rows": d.bad_rows,
                "error": d.error,
            }
            for d in result.datasets
        ],
        "problems": [
            {"area": p.area, "file": _shown(p.file, root) or None, "message": p.message}
            for p in result.problems
        ],
        "notes": list(result.notes),
    }


def print_report(result: Validation, console: Console) -> None:
    report = result.report
    root = report.root
    console.print(Text(f"Repository: {root}", style="bold"))
    if report.tools:
        tools = Table(title="Tools", title_justify="left")
        tools.add_column("name", style="cyan", overflow="fold")
        tools.add_column("parameters", overflow="fold")
        tools.add_column("description", overflow="fold")
        for tool in report.tools:
            function = tool["function"]
            tools.add_row(
                Text(function["name"]),
                Text(", ".join(_parameters(tool))),
                Text(str(function.get("description") or "")),
            )
        console.print(tools)
    if report.scorers:
        scorers = Table(title="Scorers", title_justify="left")
        scorers.add_column("scorer", style="cyan", overflow="fold")
        scorers.add_column("kind")
        scorers.add_column("file", overflow="fold")
        for scorer in report.scorers:
            where = _shown(scorer.file, root) + (f":{scorer.line}" if scorer.line else "")
            scorers.add_row(Text(scorer.ref), Text(scorer.kind), Text(where))
        console.print(scorers)
    if result.datasets:
        datasets = Table(title="Datasets", title_justify="left")
        datasets.add_column("file", style="cyan", overflow="fold")
        datasets.add_column("rows", justify="right")
        datasets.add_column("status")
        for check in result.datasets:
            status = Text("ok", style="green") if check.error is None else Text("error", "red")
            datasets.add_row(Text(_shown(check.path, root)), str(check.rows), status)
        console.print(datasets)
    for note in result.notes:
        console.print(Text(f"Note: {note}", style="yellow"))
    if result.ok:
        console.print(Text("No problems found.", style="green"))
        return
    console.print(Text(f"{len(result.problems)} problem(s):", style="bold red"))
    for problem in result.problems:
        line = Text("  ")
        where = _shown(problem.file, root)
        if where:
            line.append(where, style="bold")
            line.append(": ")
        line.append(problem.message)
        console.print(line)


def _preflight(filename: Path) -> tuple[Path | None, list[Problem]]:
    """`rolloutctl run`'s own checks of the manifest: the local repo folder it names (None for
    a git URL, checked at sync), and the problems `run` would refuse to start with."""
    from rollout_operator.local.preflight import preflight
    from rollout_operator.local.run_file import RunFileError, load_run_file
    from rollout_operator.local.source import is_local_path

    try:
        run = load_run_file(filename)
    except RunFileError as exc:
        return None, [Problem("manifest", filename, message) for message in exc.problems]
    repo = run.spec.repo
    root = None
    if is_local_path(repo.url):
        root = Path(repo.url) / repo.path.strip("/") if repo.path.strip("/") else Path(repo.url)
    return root, [Problem(c.area, (root / c.file) if root and c.file else None, c.message)
                  for c in preflight(run, os.environ) if c.area not in ("tools", "repo")]


@click.command("validate")
@click.argument("repo", default=None, required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("-f", "--filename", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A RolloutRun manifest: also check it, its model key and judge keys, as "
                   "`rolloutctl run` does before it starts (REPO is then its local repo).")
@click.option("--json", "as_json_output", is_flag=True, help="Print the report as JSON.")
def validate_command(repo: Path | None, filename: Path | None, as_json_output: bool) -> None:
    """Check that REPO's tools, reward functions, rubrics and datasets load (default: .)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    manifest_problems: list[Problem] = []
    manifest_only = False
    if filename is not None:
        root, manifest_problems = _preflight(filename)
        manifest_only = repo is None and root is None
        repo = repo or root
    if manifest_only:  # a git repo, or a manifest that cannot be read: nothing to import here
        from rollout_operator.runtime.repo_loader import RepoReport

        assert filename is not None
        result = Validation(RepoReport(root=filename.resolve()))
        result.notes.append("the manifest's repo is a git URL: its files are checked when the "
                            "run syncs it (or give its checkout as REPO)")
    else:
        # User code may print while it is imported; keep stdout for the report (valid JSON).
        with contextlib.redirect_stdout(sys.stderr):
            result = validate_repo(repo or Path("."))
    result.problems[:0] = manifest_problems
    if as_json_output:
        click.echo(json.dumps(as_json(result), indent=2))
    else:
        print_report(result, Console(highlight=False))
    raise SystemExit(0 if result.ok else 1)
