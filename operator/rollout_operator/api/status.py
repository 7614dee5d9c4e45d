"""The RolloutRun status: conditions, progress and a compact summary of the results.

A status lives in etcd next to the spec and is read by every `kubectl get`, so it must stay small
whatever the dataset: every list is capped and every free text is cut at validation time, and
`bounded_status` drops detail, least useful first, until the whole status fits the byte budget.
Trajectories themselves never go into status; `artifacts` points at them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from rollout_operator.api.constants import ConditionStatus
from rollout_operator.api.spec import ApiModel

MAX_STATUS_BYTES = 32 * 1024
# bounded_status aims below the hard limit, leaving room for what other writers may add.
STATUS_BUDGET_BYTES = 24 * 1024

MAX_TOOLS = 64
MAX_SCORERS = 32
MAX_SAMPLES = 6
MAX_SAMPLE_SCORES = 16
MAX_PASS_AT_K = 16
MAX_CONDITIONS = 8
MAX_NAME_CHARS = 128
MAX_ANSWER_CHARS = 200
MAX_MESSAGE_CHARS = 1024
MAX_URL_CHARS = 1024

ELLIPSIS = "…"


def cut_text(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its start and an ellipsis, `limit` in all."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS


def cut_middle(text: str, limit: int) -> str:
    """`text` shortened in the middle, so that a name keeps its distinguishing end (`:function`)."""
    if len(text) <= limit:
        return text
    tail = (limit - len(ELLIPSIS)) // 2
    head = limit - len(ELLIPSIS) - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def _name_cutter(value: Any) -> Any:
    return cut_middle(value, MAX_NAME_CHARS) if isinstance(value, str) else value


def _cutter(limit: int) -> Callable[[Any], Any]:
    def cut(value: Any) -> Any:
        return cut_text(value, limit) if isinstance(value, str) else value

    return cut


def _list_capper(limit: int) -> Callable[[Any], Any]:
    def cap(value: Any) -> Any:
        return list(value[:limit]) if isinstance(value, list | tuple) else value

    return cap


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _score_map_capper(limit: int) -> Callable[[Any], Any]:
    """Keeps the first `limit` finite entries, with keys cut to a name's length."""

    def cap(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kept: dict[Any, Any] = {}
        for key, score in value.items():
            if len(kept) >= limit:
                break
            if isinstance(score, float) and not math.isfinite(score):
                continue
            kept[_name_cutter(key)] = score
        return kept

    return cap


def _summary_capper(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = list(value.items())[:MAX_SCORERS]
    return {_name_cutter(k): v for k, v in items}


Name = Annotated[str, Field(max_length=MAX_NAME_CHARS), BeforeValidator(_name_cutter)]
Message = Annotated[
    str, Field(max_length=MAX_MESSAGE_CHARS), BeforeValidator(_cutter(MAX_MESSAGE_CHARS))
]
Url = Annotated[str, Field(max_length=MAX_URL_CHARS)]
FiniteFloat = Annotated[float | None, BeforeValidator(_finite_or_none)]
ScoreMap = Annotated[
    dict[str, float],
    Field(max_length=MAX_SAMPLE_SCORES),
    BeforeValidator(_score_map_capper(MAX_SAMPLE_SCORES)),
]
PassAtK = Annotated[
    dict[str, float],
    Field(max_length=MAX_PASS_AT_K),
    BeforeValidator(_score_map_capper(MAX_PASS_AT_K)),
]


class StatusModel(ApiModel):
    """Status models accept what the API server returns: timestamps arrive as strings."""

    model_config = ConfigDict(strict=False)


class Condition(StatusModel):
    """One aspect of the run's state, following the Kubernetes condition conventions."""

    type: str = Field(
        min_length=1,
        max_length=64,
        description="Condition type: Synced, ToolsReady, InferenceReady, Complete, Failed, "
                    "SpecRefused or Queued.",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason for the last transition, e.g. InvalidSpec.",
    )
    message: Message = Field(
        default="", description="What happened, for humans; says what to fix on failure."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="metadata.generation of the spec this condition was set from.",
    )
    last_transition_time: datetime = Field(
        description="When status last changed from one value to another."
    )


class Progress(StatusModel):
    """How many rollouts are done, by outcome."""

    total: int = Field(default=0, ge=0, description="Rollouts planned: rows x samplesPerPrompt.")
    completed: int = Field(default=0, ge=0, description="Rollouts finished and scored.")
    failed: int = Field(
        default=0, ge=0, description="Rollouts that ended in an error of the model or user code."
    )
    masked: int = Field(
        default=0,
        ge=0,
        description="Rollouts lost to infrastructure trouble; recorded, never scored 0.",
    )
    invalid: int = Field(
        default=0,
        ge=0,
        description="Rollouts of dataset rows that cannot be used (bad JSON, wrong types, a "
        "missing column, bytes that are not UTF-8); recorded with the file and line, never run "
        "or scored.",
    )
    percent: str | None = Field(
        default=None, max_length=8, description="Share of rollouts done, for display, e.g. 42%."
    )

    @classmethod
    def from_counts(cls, total: int, completed: int, failed: int = 0, masked: int = 0,
                    invalid: int = 0) -> Progress:
        """Progress with `percent` filled in; 100% only when every rollout is done."""
        return cls(
            total=total,
            completed=completed,
            failed=failed,
            masked=masked,
            invalid=invalid,
            percent=percent_text(completed + failed + masked + invalid, total),
        )


def percent_text(done: int, total: int) -> str:
    """`done` of `total` as a whole percentage, rounded down so that 100% means finished."""
    if total <= 0:
        return "0%"
    return f"{min(100, max(0, done * 100 // total))}%"


class ServerRestarts(StatusModel):
    """Times a user-code server died and was started again: a tool or a scorer killed its
    process (os._exit, a crash, the memory limit). What it was doing is masked or recorded on
    its trajectories; the run goes on."""

    tools: int = Field(default=0, ge=0, description="Container restarts of the tool pods.")
    scorers: int = Field(
        default=0, ge=0,
        description="Scorer server processes started again (by its supervisor, as workers "
                    "saw it, or container restarts).",
    )


class OutageSeconds(StatusModel):
    """Seconds the run's pods waited out outages of what they depend on
    (spec.faults.outageBudgetSeconds), summed over the pods that waited."""

    model: float = Field(default=0, ge=0, description="The model endpoint.")
    tools: float = Field(default=0, ge=0, description="The tool server.")
    storage: float = Field(default=0, ge=0, description="Object storage.")


class AggregateRetries(StatusModel):
    """Aggregate Jobs run again because object storage could not be reached."""

    count: int = Field(default=0, ge=0, description="Aggregate Jobs run again so far.")
    next_time: datetime | None = Field(
        default=None, description="When the next aggregate Job may start."
    )


class ScorerSummary(StatusModel):
    """Statistics of one scorer over all scored rollouts."""

    mean: FiniteFloat = Field(default=None, description="Mean score.")
    std: FiniteFloat = Field(default=None, description="Population standard deviation.")
    min: FiniteFloat = Field(default=None, description="Lowest score.")
    max: FiniteFloat = Field(default=None, description="Highest score.")
    pass_at_k: PassAtK | None = Field(
        default=None,
        description="Unbiased pass@k estimate by k (as a string key), at scoring.passThreshold.",
    )
    prompts: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Dataset rows the figures are computed over: rows with at least one rollout that "
            "was neither masked nor invalid."
        ),
    )
    rollouts: int | None = Field(
        default=None, ge=0, description="Rollouts the figures are computed over."
    )


class TrajectorySample(StatusModel):
    """One scored rollout, shown in status as an example of the best or worst outcomes."""

    row_index: int = Field(ge=0, description="Dataset row of the rollout.")
    sample_index: int = Field(ge=0, description="Sample number within the row.")
    reward: FiniteFloat = Field(default=None, description="Reward of the rollout.")
    scores: ScoreMap = Field(default_factory=dict, description="Score by scorer (module:function).")
    answer: Annotated[
        str, Field(max_length=MAX_ANSWER_CHARS), BeforeValidator(_cutter(MAX_ANSWER_CHARS))
    ] = Field(default="", description="The start of the final answer.")


class Artifacts(StatusModel):
    """Where the run's outputs are in object storage."""

    run: Url | None = Field(default=None, description="Prefix of everything this run wrote.")
    results: Url | None = Field(
        default=None, description="results.json, in the osmosis eval results schema."
    )
    trajectories: Url | None = Field(
        default=None, description="Prefix of the trajectory records (JSONL parts per shard)."
    )
    parquet: Url | None = Field(
        default=None, description="All trajectories compacted into one Parquet file."
    )


PhaseName = Literal[
    "Pending", "Syncing", "Starting", "Running", "Aggregating", "Succeeded", "Failed", "Suspended"
]


class RolloutRunStatus(StatusModel):
    """Where the run stands. Written by the operator only."""

    phase: PhaseName | None = Field(
        default=None,
        description=(
            "Summary of the conditions for display: Pending, Syncing, Starting, Running, "
            "Aggregating, Succeeded, Failed or Suspended."
        ),
    )
    conditions: Annotated[
        list[Condition],
        Field(max_length=MAX_CONDITIONS),
        BeforeValidator(_list_capper(MAX_CONDITIONS)),
    ] = Field(
        default_factory=list,
        description="Synced, ToolsReady, InferenceReady, Complete, Failed and SpecRefused.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the operator last acted on."
    )
    spec_hash: str | None = Field(
        default=None,
        max_length=64,
        description="Hash of the spec the run started with, to detect edits.",
    )
    commit: str | None = Field(
        default=None, max_length=64, description="Commit SHA that repo.revision resolved to."
    )
    bundle: Url | None = Field(
        default=None, description="Repository bundle (code and dependencies) the pods run."
    )
    fastmcp_version: Name | None = Field(default=None, description="FastMCP version in the bundle.")
    policy_version: Name | None = Field(
        default=None,
        description="spec.model.policyVersion: the policy version every record of the run "
                    "carries (its policy_version).",
    )
    tools: Annotated[
        list[Name], Field(max_length=MAX_TOOLS), BeforeValidator(_list_capper(MAX_TOOLS))
    ] = Field(
        default_factory=list,
        description=f"Tools the repository serves (at most {MAX_TOOLS} names).",
    )
    scorers: Annotated[
        list[Name], Field(max_length=MAX_SCORERS), BeforeValidator(_list_capper(MAX_SCORERS))
    ] = Field(
        default_factory=list,
        description=f"Scorers that run, as module:function (at most {MAX_SCORERS}).",
    )
    progress: Progress | None = Field(default=None, description="Rollouts done so far.")
    restarts: ServerRestarts | None = Field(
        default=None, description="User-code servers that died and were started again."
    )
    outage_seconds: OutageSeconds | None = Field(
        default=None,
        description="Seconds the pods waited for a model endpoint, tool server or object store "
                    "that could not be reached.",
    )
    aggregate_retries: AggregateRetries | None = Field(
        default=None,
        description="Aggregate Jobs run again after object storage could not be reached.",
    )
    summary: (
        Annotated[
            dict[str, ScorerSummary],
            Field(max_length=MAX_SCORERS),
            BeforeValidator(_summary_capper),
        ]
        | None
    ) = Field(default=None, description="Statistics by scorer once the run is aggregated.")
    score: str | None = Field(
        default=None, max_length=32, description="Mean of the first scorer, for display."
    )
    samples: Annotated[
        list[TrajectorySample],
        Field(max_length=MAX_SAMPLES),
        BeforeValidator(_list_capper(MAX_SAMPLES)),
    ] = Field(
        default_factory=list,
        description=f"A few scored rollouts, best and worst first (at most {MAX_SAMPLES}).",
    )
    artifacts: Artifacts | None = Field(default=None, description="Output locations.")
    start_time: datetime | None = Field(default=None, description="When the run started.")
    completion_time: datetime | None = Field(
        default=None, description="When the run succeeded or failed."
    )


def status_patch(status: RolloutRunStatus) -> dict[str, Any]:
    """The status as the API expects it: camelCase keys, no nulls, RFC 3339 timestamps."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_merge_patch(
    current: Mapping[str, Any] | None, status: RolloutRunStatus
) -> dict[str, Any]:
    """A JSON merge patch that turns the `current` status into `status`.

    `status_patch` leaves out empty fields, and a merge patch keeps what it leaves out, so every
    top-level field that `current` has and `status` no longer has is set to null here.
    """
    patch = status_patch(status)
    for key in current or {}:
        patch.setdefault(key, None)
    return patch


def status_size(status: RolloutRunStatus) -> int:
    """Bytes of the status as compact JSON, roughly what etcd stores."""
    return len(json.dumps(status_patch(status), separators=(",", ":")).encode())


def _keep_ends(items: Sequence[Any], count: int) -> list[Any]:
    """The first and last items, `count` in all (samples are ordered best first, worst last)."""
    if len(items) <= count:
        return list(items)
    head = (count + 1) // 2
    return [*items[:head], *items[len(items) - (count - head) :]]


def _short_pass_at_k(summary: ScorerSummary) -> ScorerSummary:
    if not summary.pass_at_k:
        return summary
    keys = list(summary.pass_at_k)
    kept = {k: summary.pass_at_k[k] for k in dict.fromkeys([keys[0], keys[-1]])}
    return summary.model_copy(update={"pass_at_k": kept})


def _short_messages(conditions: Iterable[Condition], limit: int) -> list[Condition]:
    return [c.model_copy(update={"message": cut_text(c.message, limit)}) for c in conditions]


# Each step drops more detail than the one before; the ones that carry the outcome (conditions,
# progress, score, artifacts) are shortened last.
_REDUCTIONS: tuple[Callable[[RolloutRunStatus], dict[str, Any]], ...] = (
    lambda s: {"samples": _keep_ends(s.samples, 2)},
    lambda s: {"samples": []},
    lambda s: {"summary": {k: _short_pass_at_k(v) for k, v in (s.summary or {}).items()}},
    lambda s: {"tools": s.tools[:16]},
    lambda s: {"summary": dict(list((s.summary or {}).items())[:8]) if s.summary else None},
    lambda s: {"scorers": s.scorers[:8]},
    lambda s: {"tools": []},
    lambda s: {"conditions": _short_messages(s.conditions, 256)},
    lambda s: {"summary": dict(list((s.summary or {}).items())[:1]) if s.summary else None},
    lambda s: {"scorers": []},
)


def bounded_status(
    status: RolloutRunStatus, *, budget_bytes: int = STATUS_BUDGET_BYTES
) -> RolloutRunStatus:
    """A copy of `status` that fits `budget_bytes` as JSON, whatever it was built from.

    Re-validates first (applying every cap, also to objects made with `model_construct`), then
    drops detail step by step: samples, pass@k columns, tool names, scorer entries, long
    condition messages.
    """
    bounded = RolloutRunStatus.model_validate(status_patch(status))
    for reduce in _REDUCTIONS:
        if status_size(bounded) <= budget_bytes:
            break
        bounded = bounded.model_copy(update=reduce(bounded))
    return bounded


def utc_now() -> datetime:
    """Now, in UTC, to the second (Kubernetes timestamps have second precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of type `type_`, or None."""
    return next((c for c in conditions if c.type == type_), None)


def condition_is(conditions: Iterable[Condition], type_: str, status: str) -> bool:
    """Whether the condition `type_` exists and has `status` ("True", "False", "Unknown")."""
    found = find_condition(conditions, type_)
    return found is not None and found.status == status


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    """Whether the condition `type_` is present and True."""
    return condition_is(conditions, type_, ConditionStatus.TRUE)


def set_condition(
    conditions: Iterable[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """The conditions with `type_` set; order kept, new types appended.

    `lastTransitionTime` moves to `now` only when `status` changes, so that it tells since when
    the condition has held (reason and message updates keep it).
    """
    existing = list(conditions)
    previous = find_condition(existing, type_)
    transition = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "observed_generation": generation,
            "last_transition_time": transition.replace(microsecond=0),
        }
    )
    if previous is None:
        return [*existing, updated]
    return [updated if c.type == type_ else c for c in existing]


def remove_condition(conditions: Iterable[Condition], type_: str) -> list[Condition]:
    """The conditions without `type_`."""
    return [c for c in conditions if c.type != type_]


__all__ = [
    "MAX_STATUS_BYTES",
    "STATUS_BUDGET_BYTES",
    "Artifacts",
    "Condition",
    "PhaseName",
    "Progress",
    "RolloutRunStatus",
    "ScorerSummary",
    "TrajectorySample",
    "bounded_status",
    "condition_is",
    "cut_middle",
    "cut_text",
    "find_condition",
    "is_true",
    "percent_text",
    "remove_condition",
    "set_condition",
    "status_merge_patch",
    "status_patch",
    "status_size",
    "utc_now",
]
