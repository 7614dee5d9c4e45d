"""Trajectory records of a small run, committed to a folder the way workers commit them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rollout_operator.runtime.records import RecordError, TrajectoryRecord, TurnTokens, Usage
from rollout_operator.runtime.run_layout import RUN_JSON, TOOLS_JSON
from rollout_operator.runtime.shards import ShardWriter
from rollout_operator.runtime.storage import open_store

SYSTEM = {"role": "system", "content": "You are a calculator assistant."}
TOOL_SCHEMA = {"type": "function", "function": {
    "name": "multiply", "description": "Multiply two numbers.",
    "parameters": {"type": "object", "properties": {"first_val": {"type": "number"},
                                                    "second_val": {"type": "number"}}}}}


def conversation(row: int, answer: str, call_id: str) -> list[dict[str, Any]]:
    return [
        SYSTEM,
        {"role": "user", "content": f"What is {row} * 2?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": call_id, "type": "function",
            "function": {"name": "multiply",
                         "arguments": json.dumps({"first_val": row, "second_val": 2})}}]},
        {"role": "tool", "content": str(row * 2), "tool_call_id": call_id},
        {"role": "assistant", "content": f"#### {answer}"},
    ]


def turns(row: int, sample: int) -> list[TurnTokens]:
    """Token ids that line up: each turn's prompt starts with everything before it."""
    prompt = [1, 2, row]
    first = [10 + sample, 11]
    tool = [3, row * 2]
    second = [20, 21 + sample]
    return [TurnTokens(token_ids=first, logprobs=[-0.5, -0.25], message_index=2,
                       prompt_token_ids=prompt),
            TurnTokens(token_ids=second, logprobs=[-1.0, float("-inf")], message_index=4,
                       prompt_token_ids=prompt + first + tool)]


def record(row: int, sample: int, reward: float | None, *, status: str = "completed",
           attempt: int = 0, tokens: bool = True) -> TrajectoryRecord:
    answer = str(row * 2) if reward else "-1"
    fields: dict[str, Any] = {}
    if status != "completed":
        fields["error"] = RecordError(category="inference" if status == "masked" else "timeout",
                                      message="endpoint unreachable")
    return TrajectoryRecord(
        rollout_id=f"calc-{row}-{sample}", row_index=row, sample_index=sample, status=status,
        finish_reason="stop", messages=conversation(row, answer, f"call_{row}_{sample}"),
        scores={"reward": reward} if reward is not None else {}, reward=reward,
        ground_truth=str(row * 2), usage=Usage(prompt_tokens=30, completion_tokens=8),
        turns=turns(row, sample) if tokens else [], tools=["multiply"], attempt=attempt,
        policy_version="step-120", **fields)


def sample_run() -> list[TrajectoryRecord]:
    """Row 0: both pass; row 1: 1.0 and 0.0; row 2: 0.0, 0.5, 0.5 (a tie for best); row 3:
    one completed (0.0) and one masked; row 4: invalid; row 5: a failed one and a 1.0."""
    return [
        record(0, 0, 1.0), record(0, 1, 1.0),
        record(1, 0, 1.0), record(1, 1, 0.0),
        record(2, 0, 0.0), record(2, 1, 0.5), record(2, 2, 0.5),
        record(3, 0, 0.0), record(3, 1, None, status="masked"),
        TrajectoryRecord(rollout_id="calc-4-0", row_index=4, status="invalid",
                         error=RecordError(category="dataset", message="line 5: not JSON")),
        record(5, 0, None, status="failed"), record(5, 1, 1.0),
    ]


def commit(folder: Path, records: list[TrajectoryRecord], *, shards: int = 2,
           pass_threshold: float | None = None, tool_schemas: bool = True) -> Path:
    """Commit `records` under `folder` (shard = row % shards), with run.json and tools.json."""

    async def main() -> None:
        store = open_store(str(folder))
        for index in range(shards):
            async with ShardWriter(store, "", index, part_size=2) as writer:
                for item in records:
                    if item.row_index % shards == index:
                        await writer.add(item)
        scoring = {} if pass_threshold is None else {"passThreshold": pass_threshold}
        spec = {"model": {"name": "openai/policy", "policyVersion": "step-120"},
                "scoring": scoring}
        await store.put(RUN_JSON, json.dumps({"spec": spec}).encode())
        if tool_schemas:
            await store.put(TOOLS_JSON, json.dumps([TOOL_SCHEMA]).encode())

    asyncio.run(main())
    return folder
