"""ATIF v1.7 trajectories as 0.3 rollout servers write them: a strict model to validate them
(unknown keys and non-finite numbers refused), and the rules for which trajectory belongs to a
rollout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = "ATIF-v1.7"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ToolCall(_Strict):
    tool_call_id: str
    function_name: str
    arguments: dict[str, Any]


class ObservationResult(_Strict):
    source_call_id: str | None = None
    content: str | list[dict[str, Any]] | None = None
    subagent_trajectory_ref: Any = None


class Observation(_Strict):
    results: list[ObservationResult]


class StepMetrics(_Strict):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    extra: dict[str, Any] | None = None


class Step(_Strict):
    step_id: int = Field(ge=1)
    timestamp: str | None = None
    source: Literal["system", "user", "agent"]
    message: str | list[dict[str, Any]]
    reasoning_content: str | None = None
    model_name: str | None = None
    reasoning_effort: Any = None
    tool_calls: list[ToolCall] | None = None
    observation: Observation | None = None
    metrics: StepMetrics | None = None
    llm_call_count: int | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _agent_only(self) -> Step:
        if self.source != "agent":
            for name in ("model_name", "reasoning_content", "reasoning_effort", "tool_calls",
                         "metrics"):
                if getattr(self, name) is not None:
                    raise ValueError(f"a {self.source} step may not carry {name}")
        return self


class Agent(_Strict):
    name: str
    version: str
    model_name: str | None = None
    tool_definitions: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


class FinalMetrics(_Strict):
    total_prompt_tokens: int | None = None
    total_completion_tokens: int | None = None
    total_cached_tokens: int | None = None
    total_cost_usd: float | None = None
    total_steps: int
    extra: dict[str, Any] | None = None


class Trajectory(_Strict):
    schema_version: Literal["ATIF-v1.7"]
    session_id: str
    trajectory_id: str | None = None
    agent: Agent
    steps: list[Step] = Field(min_length=1)
    notes: str | None = None
    final_metrics: FinalMetrics | None = None
    continued_trajectory_ref: Any = None
    subagent_trajectories: Any = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sequential(self) -> Trajectory:
        ids = [step.step_id for step in self.steps]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"step ids must run 1..{len(ids)}, got {ids}")
        return self


def trajectory_rollout_id(document: dict[str, Any]) -> str | None:
    """Whose trajectory this is: `extra.osmosis.rollout_id`, else `session_id`, else the
    `trajectory_id` before any `/`."""
    extra = document.get("extra")
    osmosis = extra.get("osmosis") if isinstance(extra, dict) else None
    if isinstance(osmosis, dict) and isinstance(osmosis.get("rollout_id"), str):
        return str(osmosis["rollout_id"])
    if isinstance(document.get("session_id"), str):
        return str(document["session_id"])
    trajectory_id = document.get("trajectory_id")
    return trajectory_id.split("/", 1)[0] if isinstance(trajectory_id, str) else None


def validate(document: Any) -> list[str]:
    """What is wrong with a trajectory document against ATIF v1.7 (empty: nothing)."""
    try:
        Trajectory.model_validate(document)
    except ValidationError as exc:
        return [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()]
    return []


def load_valid(path: Path, rollout_id: str) -> dict[str, Any] | None:
    """The trajectory at `path` if it is valid ATIF and belongs to `rollout_id`, else None."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or validate(document):
        return None
    return document if trajectory_rollout_id(document) == rollout_id else None
