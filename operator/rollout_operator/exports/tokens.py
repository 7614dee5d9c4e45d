"""`tokens`: one token-level row per trainable record, for RL trainers.

Columns: `rollout_id`, `row_index`, `sample_index`, `attempt`, `input_ids` (the whole
trajectory's tokens), `loss_mask` (1 on the tokens the policy generated, 0 on prompt, tool
results and template tokens), `logprobs` (the sampler's logprob of each generated token, null
elsewhere or when the endpoint sent none), `reward`, `advantage` and `policy_version`.

The sequence is the last turn's: its `prompt_token_ids` (what the endpoint tokenized for the
last call, the whole conversation so far re-rendered by the chat template) followed by its
`token_ids`, which get mask 1. An earlier turn's `token_ids` get mask 1 too where the last
prompt holds them exactly as they were sampled: the sequence's first `len(prompt) +
len(token_ids)` tokens are that turn's prompt followed by its reply, token for token. Then the
tokens and the context the sampler conditioned them on are both in the sequence, and their
logprobs are those of the policy that produced them. A turn the template rendered differently
once more turns followed (reasoning dropped from history, a tool call re-serialised) is not
there as sampled: its tokens stay context (mask 0, no logprobs), and the export says which
records lost which turns. Every assistant message needs a turn with both id lists, or the
record is left out.

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
    "Records carry token ids when the run sets spec.model.captureTokens: true, which asks a "
    "vLLM or SGLang endpoint for them with every call (return_token_ids and logprobs), or "
    "when the endpoint returns them unasked (token_ids on the choice, prompt_token_ids "
    "beside it). Set it, run again, then export."
)


class NotLinedUp(ValueError):
    """A record's turns cannot make a token sequence (a turn without ids)."""


@dataclass(slots=True)
class TokenSequence:
    """One record's tokens: input ids, loss mask, logprobs (None off the mask), and the
    numbers (from 1) of the earlier turns the last prompt does not hold as sampled."""

    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float | None]
    untrained_turns: list[int] = field(default_factory=list)


@dataclass(slots=True)
class TokenExport:
    """What `token_rows` made: the rows, the trainable records left out and why, and the
    records some of whose turns are context only."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    without_tokens: int = 0
    not_lined_up: list[str] = field(default_factory=list)
    partly_trained: list[str] = field(default_factory=list)


def token_sequence(record: TrajectoryRecord) -> TokenSequence:
    """The record's token sequence (see the module docstring); raises `NotLinedUp`."""
    turns = sorted(record.turns, key=lambda t: t.message_index if t.message_index is not None
                   else -1)
    if not turns:
        raise NotLinedUp("the record has no turns")
    indices = {t.message_index for t in turns}
    if None not in indices:
        bare = [i for i, m in enumerate(record.messages)
                if m.get("role") == "assistant" and i not in indices]
        if bare:
            raise NotLinedUp(f"assistant message {bare[0]} has no token ids")
    for number, turn in enumerate(turns, start=1):
        if turn.token_ids is None:
            raise NotLinedUp(f"turn {number} has no token ids")
        if turn.prompt_token_ids is None:
            raise NotLinedUp(f"turn {number} has no prompt token ids")
    last = turns[-1]
    assert last.prompt_token_ids is not None and last.token_ids is not None
    ids = [*last.prompt_token_ids, *last.token_ids]
    mask = [0] * len(ids)
    logprobs: list[float | None] = [None] * len(ids)
    untrained: list[int] = []
    trained_end = 0
    for number, turn in enumerate(turns, start=1):
        assert turn.prompt_token_ids is not None and turn.token_ids is not None
        start = len(turn.prompt_token_ids)
        end = start + len(turn.token_ids)
        as_sampled = (start >= trained_end and end <= len(ids)
                      and ids[:start] == turn.prompt_token_ids
                      and ids[start:end] == turn.token_ids)
        if not as_sampled:
            untrained.append(number)
            continue
        mask[start:end] = [1] * (end - start)
        if turn.logprobs is not None and len(turn.logprobs) == len(turn.token_ids):
            logprobs[start:end] = list(turn.logprobs)
        trained_end = end
    return TokenSequence(ids, mask, logprobs, untrained)


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
            sequence = token_sequence(record)
        except NotLinedUp as exc:
            export.not_lined_up.append(f"{record.rollout_id}: {exc}")
            continue
        if sequence.untrained_turns:
            numbers = ", ".join(str(n) for n in sequence.untrained_turns)
            export.partly_trained.append(
                f"{record.rollout_id}: turn(s) {numbers} of {len(record.turns)} are context "
                "only (the last prompt does not hold them as sampled)")
        export.rows.append({
            "rollout_id": record.rollout_id,
            "row_index": record.row_index,
            "sample_index": record.sample_index,
            "attempt": record.attempt,
            "input_ids": sequence.input_ids,
            "loss_mask": sequence.loss_mask,
            "logprobs": sequence.logprobs,
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
