"""The Argo CD health check of docs/argocd/rolloutrun-health.lua, run in Lua 5.1 (the language of
Argo CD's gopher-lua) against statuses built with the operator's own status models, one or more
per phase, and the copy of the script in docs/gitops.md."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.api.constants import API_VERSION, KIND, ConditionType, Phase, Reason
from rollout_operator.api.status import (
    Artifacts,
    Condition,
    Progress,
    RolloutRunStatus,
    set_condition,
    status_patch,
)
from rollout_operator.reconcile.phase import derive_phase

try:
    import lupa
except ImportError:  # no Lua runtime here: the Argo CD tests skip, the Flux ones still run
    lupa = None

requires_lua = pytest.mark.skipif(lupa is None, reason="no Lua runtime (PyPI lupa) installed")

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCRIPT = DOCS / "argocd" / "rolloutrun-health.lua"
GITOPS = DOCS / "gitops.md"
HEALTH_KEY = "resource.customizations.health.rollouts.dev_RolloutRun"
# Libraries a health script must not need: Argo CD runs it in a restricted VM.
UNAVAILABLE_GLOBALS = ("os", "io", "debug", "package", "require", "dofile", "loadfile")

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
T, F = "True", "False"
RESULTS = "s3://rollouts/calculator/team/calculator-01234567/results.json"


def _conditions(*items: tuple[str, str, str, str]) -> list[Condition]:
    conditions: list[Condition] = []
    for type_, status, reason, message in items:
        conditions = set_condition(conditions, type_, status, reason, message, 1, NOW)
    return conditions


SYNCING = (ConditionType.SYNCED, F, Reason.SYNCING,
           "Cloning the repository and checking its tools, scorers and dataset.")
SYNCED = (ConditionType.SYNCED, T, Reason.SYNCED, "Repository at commit aaaaaaaaaaaa: 2 tools.")
TOOLS_STARTING = (ConditionType.TOOLS_READY, F, Reason.TOOLS_STARTING,
                  "Waiting for the tool servers to become ready.")
TOOLS_READY = (ConditionType.TOOLS_READY, T, Reason.TOOLS_AVAILABLE, "1 tool server(s) ready.")
EXTERNAL = (ConditionType.INFERENCE_READY, T, Reason.EXTERNAL_ENDPOINT, "Using model openai/m.")
VLLM_STARTING = (ConditionType.INFERENCE_READY, F, Reason.INFERENCE_STARTING,
                 "Waiting for vllm to load Qwen/Qwen3-8B.")
RUNNING = (ConditionType.COMPLETE, F, Reason.ROLLOUTS_RUNNING, "1 of 2 shards done.")
AGGREGATING = (ConditionType.COMPLETE, F, Reason.AGGREGATING,
               "Computing the summary and writing results.json.")
COMPLETED = (ConditionType.COMPLETE, T, Reason.COMPLETED,
             f"80 rollouts scored; results in {RESULTS}.")
NOT_FAILED = (ConditionType.FAILED, F, Reason.COMPLETED, "The run completed.")
WORKERS_FAILED = (ConditionType.FAILED, T, Reason.WORKERS_FAILED,
                  "Worker Job calculator-workers-1a2b3c4d failed (shards 1): BackoffLimitExceeded")
INVALID = (ConditionType.FAILED, T, Reason.INVALID_SPEC,
           "spec.model.apiKeySecret: Secret 'llm-api-key' does not exist in namespace 'team'; "
           "create it or fix the name")
RESUMED = (ConditionType.FAILED, F, Reason.RESUMED, "The spec is valid again.")
SUSPENDED = (ConditionType.COMPLETE, F, Reason.SUSPENDED, "The run is suspended.")


@dataclass(frozen=True)
class Case:
    name: str
    phase: str
    conditions: Sequence[tuple[str, str, str, str]]
    health: str
    message_parts: Sequence[str]
    suspended: bool = False
    progress: Progress | None = None


CASES = [
    Case("pending", Phase.PENDING, [], "Progressing", ["Pending"]),
    Case("syncing", Phase.SYNCING, [SYNCING], "Progressing", ["Syncing: Cloning the repository"]),
    Case("resumed after a fixed spec", Phase.SYNCING, [RESUMED, SYNCING], "Progressing",
         ["Syncing: Cloning"]),
    Case("tools starting", Phase.STARTING, [SYNCED, TOOLS_STARTING, EXTERNAL], "Progressing",
         ["Starting: Waiting for the tool servers"]),
    Case("inference starting", Phase.STARTING, [SYNCED, TOOLS_READY, VLLM_STARTING],
         "Progressing", ["Starting: Waiting for vllm to load Qwen/Qwen3-8B."]),
    Case("running", Phase.RUNNING, [SYNCED, TOOLS_READY, EXTERNAL, RUNNING], "Progressing",
         ["Running: 1 of 2 shards done.", "50%"],
         progress=Progress.from_counts(total=80, completed=36, failed=2, masked=2)),
    Case("aggregating", Phase.AGGREGATING, [SYNCED, TOOLS_READY, EXTERNAL, AGGREGATING],
         "Progressing", ["Aggregating: Computing the summary"]),
    Case("succeeded", Phase.SUCCEEDED,
         [SYNCED, TOOLS_READY, EXTERNAL, COMPLETED, NOT_FAILED], "Healthy", [RESULTS]),
    Case("workers failed", Phase.FAILED, [SYNCED, TOOLS_READY, EXTERNAL, RUNNING, WORKERS_FAILED],
         "Degraded", ["WorkersFailed: Worker Job calculator-workers-1a2b3c4d failed (shards 1)"]),
    Case("invalid spec", Phase.FAILED, [INVALID], "Degraded",
         ["InvalidSpec: spec.model.apiKeySecret: Secret 'llm-api-key' does not exist"]),
    Case("suspended before the workers", Phase.SUSPENDED,
         [SYNCED, TOOLS_READY, EXTERNAL], "Suspended", ["spec.suspend"], suspended=True),
    Case("suspended while running", Phase.SUSPENDED,
         [SYNCED, TOOLS_READY, EXTERNAL, SUSPENDED], "Suspended", ["spec.suspend", "50%"],
         suspended=True, progress=Progress.from_counts(total=10, completed=5)),
]


def _run_object(case: Case) -> dict[str, Any]:
    conditions = _conditions(*case.conditions)
    phase = derive_phase(conditions, suspended=case.suspended)
    assert phase == case.phase, f"{case.name}: the operator derives {phase}, not {case.phase}"
    status = RolloutRunStatus(phase=phase, conditions=conditions, progress=case.progress,
                              observed_generation=1)
    if case.phase == Phase.SUCCEEDED:
        status.artifacts = Artifacts(results=RESULTS)
        status.score = "0.95"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "calculator", "namespace": "team", "generation": 1},
        "spec": {"suspend": case.suspended},
        "status": status_patch(status),
    }


def _new_runtime() -> Any:
    try:
        from lupa import lua51

        runtime = lua51.LuaRuntime()
    except ImportError:  # a lupa build without the Lua 5.1 module: its default Lua
        runtime = lupa.LuaRuntime()
    lua_globals = runtime.globals()
    for name in UNAVAILABLE_GLOBALS:
        lua_globals[name] = None
    return runtime


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like data as Argo CD hands it to Lua: objects and arrays become tables (arrays from
    index 1), nulls are absent."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[key] = _to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(runtime, item)
        return table
    return value


def health_of(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    runtime = _new_runtime()
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(script)
    assert result is not None, "the script returned nothing"
    return str(result.status), str(result.message)


@pytest.fixture(scope="module")
def script() -> str:
    return SCRIPT.read_text()


def test_every_phase_has_a_case() -> None:
    assert {case.phase for case in CASES} == set(Phase.ALL)


@requires_lua
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_health_follows_the_phase_and_conditions(script: str, case: Case) -> None:
    health, message = health_of(script, _run_object(case))
    assert health == case.health
    for part in case.message_parts:
        assert part in message


@requires_lua
def test_a_run_without_status_waits_for_the_operator(script: str) -> None:
    obj = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "r"}, "spec": {}}
    assert health_of(script, obj) == (
        "Progressing", "Waiting for the operator to pick the run up")


@requires_lua
def test_a_failed_condition_wins_over_a_stale_phase(script: str) -> None:
    obj = _run_object(CASES[[c.name for c in CASES].index("running")])
    obj["status"]["conditions"].append(status_patch(RolloutRunStatus(
        conditions=_conditions(WORKERS_FAILED)))["conditions"][0])
    health, message = health_of(script, obj)
    assert health == "Degraded"
    assert message.startswith("WorkersFailed: ")


def test_gitops_page_embeds_the_same_script(script: str) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", GITOPS.read_text(), flags=re.DOTALL)
    embedded = [
        doc["data"][HEALTH_KEY]
        for block in blocks
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and HEALTH_KEY in (doc.get("data") or {})
    ]
    assert embedded == [script]


def _flux_check() -> dict[str, str]:
    blocks = re.findall(r"```yaml\n(.*?)```", GITOPS.read_text(), flags=re.DOTALL)
    checks = [
        check
        for block in blocks
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == "Kustomization"
        for check in doc["spec"].get("healthCheckExprs", [])
        if check.get("kind") == KIND
    ]
    assert len(checks) == 1
    assert checks[0]["apiVersion"] == API_VERSION
    return {key: checks[0][key] for key in ("current", "failed")}


def _flux_verdicts(obj: dict[str, Any]) -> dict[str, bool]:
    """Each expression evaluated as Flux does: the object's top-level fields are variables."""
    import celpy
    from celpy.adapter import json_to_cel

    environment = celpy.Environment()
    activation = {key: json_to_cel(value) for key, value in obj.items()}
    verdicts = {}
    for name, expression in _flux_check().items():
        program = environment.program(environment.compile(expression))
        verdicts[name] = bool(program.evaluate(activation))
    return verdicts


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_flux_health_expressions(case: Case) -> None:
    verdicts = _flux_verdicts(_run_object(case))
    assert verdicts == {"current": case.health == "Healthy", "failed": case.health == "Degraded"}
