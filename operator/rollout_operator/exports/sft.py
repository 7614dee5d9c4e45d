"""`sft`: TRL's conversational SFT rows, `{"messages": [...], "tools": [...]}`, one per
completed record whose reward is at or above the pass threshold (the one pass@k counts with,
`spec.scoring.passThreshold`, unless given). Messages are the whole trajectory as the model saw
it, tool calls with their JSON-string arguments (the OpenAI format); `tools` are the function
definitions the model was offered."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from rollout_operator.exports.conversation import tool_definitions
from rollout_operator.exports.source import trainable
from rollout_operator.runtime.records import TrajectoryRecord


def passes(record: TrajectoryRecord, threshold: float) -> bool:
    """A completed record whose reward is at or above `threshold`."""
    return trainable(record) and record.reward is not None and record.reward >= threshold


def sft_rows(records: Iterable[TrajectoryRecord], threshold: float,
             schemas: Sequence[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """The SFT rows of the passing records, in the order given."""
    for record in records:
        if passes(record, threshold):
            yield {"messages": record.messages, "tools": tool_definitions(record, schemas)}
