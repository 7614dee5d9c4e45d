"""Status models: bounded whatever the input, conditions that keep their transition times."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollout_operator.api.constants import ConditionStatus, ConditionType, Reason
from rollout_operator.api.status import (
    MAX_ANSWER_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_SAMPLES,
    MAX_SCORERS,
    MAX_STATUS_BYTES,
    MAX_TOOLS,
    STATUS_BUDGET_BYTES,
    Artifacts,
    Condition,
    Progress,
    RolloutRunStatus,
    ScorerSummary,
    TrajectorySample,
    bounded_status,
    cut_middle,
    cut_text,
    find_condition,
    is_true,
    percent_text,
    remove_condition,
    set_condition,
    status_merge_patch,
    status_patch,
    status_size,
)

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def json_bytes(status: RolloutRunStatus) -> int:
    return len(json.dumps(status_patch(status)).encode())


def pathological_status() -> RolloutRunStatus:
    scorer = "reward_fn.very_long_module_name_" + "x" * 500 + ":f"
    return RolloutRunStatus(
        phase="Succeeded",
        conditions=[
            Condition(
                type=t,
                status="False",
                reason="Completed",
                message="m" * 1_000_000,
                observed_generation=7,
                last_transition_time=T0,
            )
            for t in [*ConditionType.ALL, "A", "B", "C", "D", "E"]
        ],
        commit="a" * 40,
        bundle="s3://bucket/bundles/" + "b" * 900,
        fastmcp_version="2" * 10_000,
        tools=[f"tool_{i}_" + "t" * 1000 for i in range(10_000)],
        scorers=[f"{scorer}{i}" for i in range(500)],
        progress=Progress.from_counts(total=10**9, completed=10**9),
        summary={
            f"{scorer}{i}": ScorerSummary(
                mean=0.5,
                std=0.1,
                min=0.0,
                max=1.0,
                pass_at_k={str(k): 0.5 for k in range(1, 1025)},
            )
            for i in range(500)
        },
        score="0.500",
        samples=[
            TrajectorySample(
                row_index=i,
                sample_index=0,
                reward=1.0,
                scores={f"{scorer}{j}": 1.0 for j in range(500)},
                answer="y" * 1_000_000,
            )
            for i in range(1000)
        ],
        artifacts=Artifacts(
            run="s3://bucket/" + "r" * 1000,
            results="s3://bucket/" + "r" * 1000,
            trajectories="s3://bucket/" + "r" * 1000,
            parquet="s3://bucket/" + "r" * 1000,
        ),
        start_time=T0,
        completion_time=T0,
    )


def test_pathological_inputs_are_capped_at_construction() -> None:
    status = pathological_status()
    assert len(status.tools) == MAX_TOOLS
    assert len(status.scorers) == MAX_SCORERS
    assert status.summary is not None and len(status.summary) == MAX_SCORERS
    assert len(status.samples) == MAX_SAMPLES
    assert all(len(s.answer) == MAX_ANSWER_CHARS for s in status.samples)
    assert all(s.answer.endswith("…") for s in status.samples)
    assert all(len(c.message) == MAX_MESSAGE_CHARS for c in status.conditions)


def test_bounded_status_fits_the_budget_whatever_the_input() -> None:
    bounded = bounded_status(pathological_status())
    size = json_bytes(bounded)
    assert size <= STATUS_BUDGET_BYTES < MAX_STATUS_BYTES
    assert status_size(bounded) <= size
    # What says how the run went survives the cuts.
    assert bounded.phase == "Succeeded"
    assert bounded.progress == Progress.from_counts(total=10**9, completed=10**9)
    assert bounded.score == "0.500"
    assert bounded.artifacts is not None and bounded.artifacts.results is not None
    assert bounded.summary and len(bounded.summary) >= 1
    assert {c.type for c in bounded.conditions} >= set(ConditionType.ALL)


def test_bounded_status_also_caps_objects_built_without_validation() -> None:
    raw = RolloutRunStatus.model_construct(
        tools=["t" * 5000] * 5000,
        samples=[],
        conditions=[],
        scorers=[],
    )
    bounded = bounded_status(raw)
    assert json_bytes(bounded) <= STATUS_BUDGET_BYTES
    assert all(len(t) <= 128 for t in bounded.tools)


def test_a_small_status_is_left_whole() -> None:
    status = RolloutRunStatus(
        phase="Running",
        tools=["add", "multiply"],
        scorers=["reward_fn.compute_reward:numbers_match_reward"],
        samples=[
            TrajectorySample(row_index=i, sample_index=1, reward=1.0, answer="#### 96")
            for i in range(6)
        ],
        summary={"r:f": ScorerSummary(mean=1.0, std=0.0, min=1.0, max=1.0, pass_at_k={"1": 1.0})},
    )
    assert bounded_status(status) == status


def test_budget_cuts_drop_samples_before_anything_else() -> None:
    status = RolloutRunStatus(
        tools=["add"],
        samples=[
            TrajectorySample(row_index=i, sample_index=0, answer="a" * MAX_ANSWER_CHARS)
            for i in range(6)
        ],
    )
    bounded = bounded_status(status, budget_bytes=status_size(status) - 1)
    assert [s.row_index for s in bounded.samples] == [0, 5]
    assert bounded.tools == ["add"]


def test_non_finite_numbers_become_absent() -> None:
    summary = ScorerSummary(
        mean=math.nan, std=math.inf, min=0.0, max=1.0, pass_at_k={"1": math.nan, "2": 0.5}
    )
    assert (summary.mean, summary.std) == (None, None)
    assert summary.pass_at_k == {"2": 0.5}
    sample = TrajectorySample(row_index=0, sample_index=0, reward=-math.inf, scores={"a": math.nan})
    assert sample.reward is None and sample.scores == {}
    json.dumps(
        status_patch(RolloutRunStatus(summary={"s": summary}, samples=[sample])), allow_nan=False
    )


def test_status_patch_uses_camel_case_and_rfc3339() -> None:
    status = RolloutRunStatus(
        observed_generation=3,
        spec_hash="0123456789abcdef",
        fastmcp_version="2.12.4",
        start_time=T0,
        progress=Progress.from_counts(total=8, completed=3, failed=1, masked=0),
        conditions=set_condition([], ConditionType.SYNCED, "True", Reason.SYNCED, "ok", 3, T0),
    )
    patch = status_patch(status)
    assert patch["observedGeneration"] == 3
    assert patch["specHash"] == "0123456789abcdef"
    assert patch["fastmcpVersion"] == "2.12.4"
    assert patch["startTime"] == "2026-11-01T12:00:00Z"
    assert patch["progress"] == {
        "total": 8,
        "completed": 3,
        "failed": 1,
        "masked": 0,
        "invalid": 0,
        "percent": "50%",
    }
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-11-01T12:00:00Z"
    assert "summary" not in patch and "completionTime" not in patch
    assert RolloutRunStatus.model_validate(patch) == status


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [
        (0, 0, "0%"),
        (0, 10, "0%"),
        (1, 3, "33%"),
        (999, 1000, "99%"),
        (1000, 1000, "100%"),
        (5, 4, "100%"),
    ],
)
def test_percent_rounds_down(done: int, total: int, text: str) -> None:
    assert percent_text(done, total) == text


def test_cut_text() -> None:
    assert cut_text("abc", 3) == "abc"
    assert cut_text("abcd", 3) == "ab…"
    assert len(cut_text("x" * 10_000, 200)) == 200
    assert cut_middle("abcdefgh", 5) == "ab…gh"
    long_ref = "reward_fn." + "m" * 300 + ":numbers_match_reward"
    assert cut_middle(long_ref, 128).endswith(":numbers_match_reward")
    assert len(cut_middle(long_ref, 128)) == 128


class TestSetCondition:
    def test_adds_a_new_condition_at_the_end(self) -> None:
        first = set_condition([], ConditionType.SYNCED, "Unknown", Reason.SYNCING, "cloning", 1, T0)
        both = set_condition(
            first, ConditionType.TOOLS_READY, "False", Reason.TOOLS_STARTING, "", 1, T0
        )
        assert [c.type for c in both] == [ConditionType.SYNCED, ConditionType.TOOLS_READY]
        assert first[0].last_transition_time == T0

    def test_keeps_the_transition_time_when_status_is_unchanged(self) -> None:
        before = set_condition([], ConditionType.SYNCED, "True", Reason.SYNCED, "commit a", 1, T0)
        later = T0 + timedelta(minutes=5)
        after = set_condition(
            before, ConditionType.SYNCED, "True", Reason.SYNCED, "commit b", 2, later
        )
        (condition,) = after
        assert condition.last_transition_time == T0
        assert condition.message == "commit b"
        assert condition.observed_generation == 2

    def test_moves_the_transition_time_when_status_changes(self) -> None:
        before = set_condition([], ConditionType.SYNCED, "Unknown", Reason.SYNCING, "", 1, T0)
        later = T0 + timedelta(minutes=5, microseconds=123)
        after = set_condition(
            before, ConditionType.SYNCED, "False", Reason.SYNC_FAILED, "x", 1, later
        )
        assert after[0].last_transition_time == later.replace(microsecond=0)
        assert after[0].reason == Reason.SYNC_FAILED

    def test_replaces_in_place_and_leaves_others_alone(self) -> None:
        conditions = set_condition([], ConditionType.SYNCED, "True", Reason.SYNCED, "", 1, T0)
        conditions = set_condition(
            conditions, ConditionType.FAILED, "False", Reason.PENDING, "", 1, T0
        )
        updated = set_condition(
            conditions, ConditionType.SYNCED, "False", Reason.SPEC_CHANGED, "", 2, T0
        )
        assert [c.type for c in updated] == [ConditionType.SYNCED, ConditionType.FAILED]
        assert updated[1] == conditions[1]
        assert conditions[0].status == ConditionStatus.TRUE

    def test_cuts_long_messages_and_checks_reasons(self) -> None:
        (condition,) = set_condition(
            [], ConditionType.FAILED, "True", Reason.INVALID_SPEC, "e" * 5000, 1, T0
        )
        assert len(condition.message) == MAX_MESSAGE_CHARS
        with pytest.raises(ValueError, match="reason"):
            set_condition([], ConditionType.FAILED, "True", "not camel case", "", 1, T0)
        with pytest.raises(ValueError, match="status"):
            set_condition([], ConditionType.FAILED, "Yes", Reason.INVALID_SPEC, "", 1, T0)

    def test_lookup_helpers(self) -> None:
        conditions = set_condition([], ConditionType.COMPLETE, "True", Reason.COMPLETED, "", 1, T0)
        assert is_true(conditions, ConditionType.COMPLETE)
        assert not is_true(conditions, ConditionType.FAILED)
        assert find_condition(conditions, ConditionType.FAILED) is None
        assert remove_condition(conditions, ConditionType.COMPLETE) == []

    def test_conditions_read_back_from_the_api(self) -> None:
        from_api = {
            "conditions": [
                {
                    "type": "Synced",
                    "status": "True",
                    "reason": "Synced",
                    "message": "",
                    "observedGeneration": 1,
                    "lastTransitionTime": "2026-11-01T12:00:00Z",
                }
            ]
        }
        status = RolloutRunStatus.model_validate(from_api)
        assert status.conditions[0].last_transition_time == T0
        kept = set_condition(
            status.conditions, "Synced", "True", "Synced", "", 2, T0 + timedelta(hours=1)
        )
        assert kept[0].last_transition_time == T0


def test_merge_patch_clears_fields_that_are_gone() -> None:
    current = {"phase": "Failed", "completionTime": "2026-11-01T12:00:00Z", "kopf": {"x": 1}}
    patch = status_merge_patch(current, RolloutRunStatus(phase="Running"))
    empty_lists: dict[str, Any] = {"conditions": [], "tools": [], "scorers": [], "samples": []}
    assert patch == {"phase": "Running", **empty_lists, "completionTime": None, "kopf": None}
    assert status_merge_patch(None, RolloutRunStatus(phase="Running")) == {
        "phase": "Running",
        **empty_lists,
    }
