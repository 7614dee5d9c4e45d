"""`dpo`: TRL's conversational preference rows, `{"prompt", "chosen", "rejected"}`.

One row per prompt (dataset row) whose completed samples differ in reward: `chosen` is the
completion of its best sample, `rejected` that of its worst. Ties are broken by the lowest
sample index, so the same run always gives the same pairs. `prompt` is the messages before the
first assistant message; `chosen` and `rejected` are the rest of each trajectory (assistant
turns, tool calls and tool results).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rollout_operator.exports.conversation import split_prompt
from rollout_operator.exports.source import trainable
from rollout_operator.runtime.records import TrajectoryRecord


def preference_pair(samples: list[TrajectoryRecord]
                    ) -> tuple[TrajectoryRecord, TrajectoryRecord] | None:
    """(best, worst) of one prompt's samples, or None when their rewards are all equal."""
    scored = [r for r in samples if trainable(r)]
    if len({r.reward for r in scored}) < 2:
        return None
    best = min(scored, key=lambda r: (-(r.reward or 0.0), r.sample_index))
    worst = min(scored, key=lambda r: (r.reward or 0.0, r.sample_index))
    return best, worst


def dpo_rows(records: Iterable[TrajectoryRecord]) -> Iterator[dict[str, Any]]:
    """The preference rows, by row index."""
    by_row: dict[int, list[TrajectoryRecord]] = {}
    for record in records:
        by_row.setdefault(record.row_index, []).append(record)
    for row in sorted(by_row):
        pair = preference_pair(by_row[row])
        if pair is None:
            continue
        best, worst = pair
        prompt, chosen = split_prompt(best.messages)
        _, rejected = split_prompt(worst.messages)
        yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}
