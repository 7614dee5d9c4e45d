"""`status.phase`, derived from the conditions for printer columns; never the source of truth."""

from __future__ import annotations

from collections.abc import Sequence

from rollout_operator.api.constants import ConditionStatus, ConditionType, Phase, Reason
from rollout_operator.api.status import Condition, PhaseName, find_condition, is_true


def derive_phase(conditions: Sequence[Condition], *, suspended: bool = False) -> PhaseName:
    if is_true(conditions, ConditionType.FAILED):
        return Phase.FAILED
    if is_true(conditions, ConditionType.COMPLETE):
        return Phase.SUCCEEDED
    if suspended:
        return Phase.SUSPENDED
    if not is_true(conditions, ConditionType.SYNCED):
        synced = find_condition(conditions, ConditionType.SYNCED)
        return Phase.SYNCING if synced is not None else Phase.PENDING
    if not (is_true(conditions, ConditionType.TOOLS_READY)
            and is_true(conditions, ConditionType.INFERENCE_READY)):
        return Phase.STARTING
    complete = find_condition(conditions, ConditionType.COMPLETE)
    if complete is not None and complete.status == ConditionStatus.FALSE and (
        complete.reason in (Reason.AGGREGATING, Reason.AGGREGATE_RETRYING)
    ):
        return Phase.AGGREGATING
    return Phase.RUNNING
