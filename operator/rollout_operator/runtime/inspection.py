"""Inspecting a repo bundle: the one step that imports the repo to learn what it holds.

Importing `mcp/main.py` (to list its tools) and the scorer modules (to find and check scorers)
runs the repo's code, so inspection runs on the user-code side (`rolloutctl inspect`, in a pod
or sandbox without credentials) and its findings travel back as an `InspectionReport`: the
trusted phases read the report and never import the repo themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

INSPECTION_VERSION = 1
MCP_MAIN = "mcp/main.py"


class InspectionProblem(BaseModel):
    file: str | None = None
    message: str


class InspectionReport(BaseModel):
    """What a bundle holds: its tools, its scorers and every problem, with the file it is in
    (relative to the repo folder)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: int = INSPECTION_VERSION
    tools: list[str] = Field(default_factory=list)
    scorers: list[str] = Field(default_factory=list)
    fastmcp_version: str | None = Field(default=None, alias="fastmcpVersion")
    problems: list[InspectionProblem] = Field(default_factory=list)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != INSPECTION_VERSION:
            raise ValueError(f"inspection report version {value} is not supported (this side "
                             f"reads {INSPECTION_VERSION}); run one rollout-operator version")
        return value

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, file: str | None, message: str) -> None:
        self.problems.append(InspectionProblem(file=file, message=message))

    def message(self) -> dict[str, object]:
        """The report as a termination message (camelCase, with `ok`)."""
        return {"ok": self.ok, **self.model_dump(mode="json", by_alias=True)}


def inspect_bundle(root: Path, wanted: Sequence[str] | None) -> InspectionReport:
    """Import the unpacked bundle at `root` as the tool and scorer servers will, and report.

    `wanted` is `spec.scoring.functions`: None means every scorer found.
    """
    from rollout_operator.runtime.bundle import activate_bundle
    from rollout_operator.runtime.repo_loader import inspect_repo

    activate_bundle(root)
    report = InspectionReport()
    inspected = inspect_repo(root)
    report.fastmcp_version = inspected.fastmcp_version
    report.tools = sorted(str(tool.get("function", {}).get("name")) for tool in inspected.tools)
    has_main = (root / MCP_MAIN).is_file()
    if not has_main:
        report.problem(MCP_MAIN, "missing: the repo folder needs mcp/main.py, the tool server "
                       "that defines the tools (check spec.repo.path and the revision)")
    for problem in inspected.problems:
        if problem.area == "tools" and not has_main:
            continue  # the same missing file, said above
        # Paths inside a scratch folder mean nothing to the user: show them relative.
        message = problem.message.replace(str(root) + os.sep, "").replace(str(root), ".")
        report.problem(_relative(problem.file, root), message)

    discovered = [scorer.ref for scorer in inspected.scorers]
    if wanted is None:
        report.scorers = discovered
    else:
        report.scorers = list(wanted)
        for ref in wanted:
            if ref not in discovered:
                _check_scorer_ref(root, ref, report)
    return report


def _check_scorer_ref(root: Path, ref: str, report: InspectionReport) -> None:
    from rollout_operator.runtime.errors import EvalFnError
    from rollout_operator.runtime.repo_loader import load_function

    try:
        load_function(root, ref)
    except EvalFnError as exc:
        module = ref.split(":", 1)[0]
        candidate = module.replace(".", "/") + ".py"
        shown = candidate if (root / candidate).is_file() else None
        report.problem(shown, f"spec.scoring.functions: {ref!r} cannot be used: {exc}")


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve())) or "."
    except ValueError:
        return str(path)
