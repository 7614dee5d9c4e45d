"""`tokens`: one token-level row per trainable record, for RL trainers.

Columns: `rollout_id`, `row_index`, `sample_index`, `attempt`, `input_ids` (the whole
trajectory's tokens), `loss_mask` (1 on the tokens the policy generated, 0 on prompt, tool
results and template tokens), `logprobs` (the sampler's logprob of each generated token, null
elsewhere or when the endpoint sent none), `reward`, `advantage` and `policy_version`.

The sequence is built turn by turn from what the endpoint returned: each assistant turn's
`prompt_token_ids` must extend the sequence so far (the earlier turns' prompts and outputs);
the new prompt tokens get mask 0, the turn's `token_ids` mask 1. A record whose turns do not
line up (a chat template that renders earlier turns differently once more follow) cannot be
one sequence: it is left out and counted.

The advantage is GRPO-style, over the prompt's trainable samples: `reward - mean(reward)`
(Dr. GRPO's unscaled form), or with `scale_by_std` divided by `std + 1e-6` as
`trajectories.parquet` has it (`runtime.metrics.group_advantages`). Equal rewards give 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_operator.exports.source import ExportError, trainable
from rollout_operator.runtime.metrics import group_advantages
from rollout_operator.runtime.records import TrajectoryRecord

CAPTURE_HINT = (
    "Records carry token ids only when the model endpoint returns them with each reply, as "
    "the fields vLLM adds for return_token_ids: token_ids (and logprobs) on the choice, "
    "prompt_token_ids beside it. This run's endpoint returned none; put the policy behind an "
    "endpoint that returns them (a gateway in front of vLLM that asks for them, for "
    "instance), run again, then export."
)


class NotLinedUp(ValueError):
    """A record's turns cannot be joined into one token sequence."""


@dataclass(slots=True)
class TokenExport:
    """What `token_rows` made: the rows, and the trainable records left out and why."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    without_tokens: int = 0
    not_lined_up: list[str] = field(default_factory=list)


def token_sequence(record: TrajectoryRecord) -> tuple[list[int], list[int], list[float | None]]:
    """(input ids, loss mask, logprobs) of a record's whole trajectory; raises `NotLinedUp`."""
    ids: list[int] = []
    mask: list[int] = []
    logprobs: list[float | None] = []
    turns = sorted(record.turns, key=lambda t: t.message_index if t.message_index is not None
                   else -1)
    for number, turn in enumerate(turns, start=1):
        if turn.token_ids is None:
            raise NotLinedUp(f"turn {number} has no token ids")
        if turn.prompt_token_ids is None:
            raise NotLinedUp(f"turn {number} has no prompt token ids")
        prompt = turn.prompt_token_ids
        if prompt[:len(ids)] != ids:
            raise NotLinedUp(f"turn {number}'s prompt does not start with the turns before it")
        added = prompt[len(ids):]
        ids += added
        mask += [0] * len(added)
        logprobs += [None] * len(added)
        ids += turn.token_ids
        mask += [1] * len(turn.token_ids)
        if turn.logprobs is not None and len(turn.logprobs) == len(turn.token_ids):
            logprobs += list(turn.logprobs)
        else:
            logprobs += [None] * len(turn.token_ids)
    return ids, mask, logprobs


def advantages(records: Iterable[TrajectoryRecord], *,
               scale_by_std: bool = False) -> dict[tuple[int, int], float]:
    """The advantage of each trainable record, by (row, sample), over its prompt's samples."""
    by_row: dict[int, list[TrajectoryRecord]] = {}
    for record in records:
        if trainable(record):
            by_row.setdefault(record.row_index, []).append(record)
    result: dict[tuple[int, int], float] = {}
    for row, samples in by_row.items():
        values = group_advantages([r.reward for r in samples], scale_by_std=scale_by_std)
        for record, value in zip(samples, values, strict=True):
            if value is not None:
                result[(row, record.sample_index)] = value
    return result


def token_rows(records: list[TrajectoryRecord], *, scale_by_std: bool = False) -> TokenExport:
    """The token rows of the trainable records that carry token ids; raises `ExportError`
    when none does."""
    scored = [r for r in records if trainable(r)]
    advantage = advantages(scored, scale_by_std=scale_by_std)
    export = TokenExport()
    for record in sorted(scored, key=lambda r: (r.row_index, r.sample_index)):
        if not record.turns or all(t.token_ids is None for t in record.turns):
            export.without_tokens += 1
            continue
        try:
            ids, mask, logprobs = token_sequence(record)
        except NotLinedUp as exc:
            export.not_lined_up.append(f"{record.rollout_id}: {exc}")
            continue
        export.rows.append({
            "rollout_id": record.rollout_id,
            "row_index": record.row_index,
            "sample_index": record.sample_index,
            "attempt": record.attempt,
            "input_ids": ids,
            "loss_mask": mask,
            "logprobs": logprobs,
            "reward": record.reward,
            "advantage": advantage[(record.row_index, record.sample_index)],
            "policy_version": record.policy_version,
        })
    if scored and export.without_tokens == len(scored):
        raise ExportError(f"none of the {len(scored)} completed records has token ids. "
                          + CAPTURE_HINT)
    return export


def write_token_parquet(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write the rows as Parquet (under a temporary name, renamed when whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("rollout_id", pa.string()),
        ("row_index", pa.int64()),
        ("sample_index", pa.int64()),
        ("attempt", pa.int64()),
        ("input_ids", pa.list_(pa.int64())),
        ("loss_mask", pa.list_(pa.int8())),
        ("logprobs", pa.list_(pa.float64())),
        ("reward", pa.float64()),
        ("advantage", pa.float64()),
        ("policy_version", pa.string()),
    ])
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), partial, compression="zstd")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return len(rows)
