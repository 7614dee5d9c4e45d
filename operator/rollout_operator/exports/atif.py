"""Trajectory records as ATIF v1.7 documents (Agent Trajectory Interchange Format: Harbor's,
and what Osmosis 0.3 writes per rollout).

`to_atif(record)` maps the OpenAI-style messages to steps: `system`/`developer` messages become
system steps, `user` ones user steps, `assistant` ones agent steps (with `tool_calls`, their
JSON-string arguments parsed into objects, else `{"_raw": text}`), and each `tool` message folds
into the observation of the agent step before it, `source_call_id` set to its call's id. Any
other role becomes a user step with `extra.original_role`. An assistant turn's token ids and
logprobs (when the endpoint returned them) become its step's metrics.

`extra.osmosis` carries what Osmosis readers look for (`rollout_id`, `label`, `reward`,
`request_extra_fields.row_index` / `run_index`); `extra.rollout_operator` the rest of the record
(status, scores, attempt, policy version, finish reason, error). Numbers are finite: a -inf
logprob is written as null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rollout_operator import __version__
from rollout_operator.runtime.records import TrajectoryRecord, TurnTokens

ATIF_VERSION = "ATIF-v1.7"
AGENT_NAME = "rollout-operator"


def atif_file_name(record: TrajectoryRecord) -> str:
    """`row_<r>_run_<k>.json`, as Osmosis names its trajectory copies."""
    return f"row_{record.row_index}_run_{record.sample_index}.json"


def to_atif(record: TrajectoryRecord, *, model_name: str | None = None,
            tool_definitions: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The record as one ATIF document."""
    tokens = {t.message_index: t for t in record.turns if t.message_index is not None}
    steps: list[dict[str, Any]] = []
    for index, message in enumerate(record.messages):
        role = message.get("role")
        if role == "tool" and steps and steps[-1]["source"] == "agent":
            _observe(steps[-1], message)
            continue
        step: dict[str, Any] = {"step_id": len(steps) + 1, "source": _source(role),
                                "message": _content(message.get("content"))}
        if step["source"] == "agent":
            _agent_fields(step, message, model_name, tokens.get(index))
        elif role not in ("system", "developer", "user"):
            step["extra"] = {"original_role": role}
            if role == "tool" and message.get("tool_call_id"):
                step["extra"]["tool_call_id"] = message["tool_call_id"]
        steps.append(step)
    if not steps:  # an invalid row's record has no messages; ATIF needs a step
        steps.append({"step_id": 1, "source": "system", "message": ""})
    agent: dict[str, Any] = {"name": AGENT_NAME, "version": __version__}
    if model_name:
        agent["model_name"] = model_name
    if tool_definitions:
        agent["tool_definitions"] = list(tool_definitions)
    final: dict[str, Any] = {"total_prompt_tokens": record.usage.prompt_tokens,
                             "total_completion_tokens": record.usage.completion_tokens,
                             "total_steps": len(steps)}
    details: dict[str, Any] = {
        "status": record.status,
        "finish_reason": record.finish_reason,
        "scores": dict(record.scores),
        "attempt": record.attempt,
        "policy_version": record.policy_version,
        "model_tag": record.model_tag,
        "num_llm_calls": record.usage.num_llm_calls,
        "num_tool_calls": record.usage.num_tool_calls,
    }
    if record.error is not None:
        details["error"] = record.error.model_dump()
    return {
        "schema_version": ATIF_VERSION,
        "session_id": record.rollout_id,
        "trajectory_id": record.rollout_id,
        "agent": agent,
        "steps": steps,
        "final_metrics": final,
        "extra": {
            "osmosis": {
                "rollout_id": record.rollout_id,
                "label": record.ground_truth,
                "reward": record.reward,
                "request_extra_fields": {"row_index": record.row_index,
                                         "run_index": record.sample_index},
            },
            "rollout_operator": details,
        },
    }


def _source(role: Any) -> str:
    if role in ("system", "developer"):
        return "system"
    if role == "assistant":
        return "agent"
    return "user"


def _content(content: Any) -> str | list[dict[str, Any]]:
    """A message's content as ATIF takes it: text, or text parts (other parts as their JSON)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append({"type": "text", "text": str(part.get("text") or "")})
            else:
                parts.append({"type": "text", "text": json.dumps(part, sort_keys=True)})
        return parts
    return json.dumps(content, sort_keys=True)


def _agent_fields(step: dict[str, Any], message: dict[str, Any], model_name: str | None,
                  tokens: TurnTokens | None) -> None:
    if model_name:
        step["model_name"] = model_name
    if message.get("reasoning_content"):
        step["reasoning_content"] = str(message["reasoning_content"])
    calls = message.get("tool_calls") or []
    if calls:
        step["tool_calls"] = [_tool_call(call) for call in calls]
    if tokens is not None:
        metrics: dict[str, Any] = {}
        if tokens.prompt_token_ids is not None:
            metrics["prompt_token_ids"] = list(tokens.prompt_token_ids)
        if tokens.token_ids is not None:
            metrics["completion_token_ids"] = list(tokens.token_ids)
        if tokens.logprobs is not None:
            metrics["logprobs"] = [v if math.isfinite(v) else None for v in tokens.logprobs]
        if metrics:
            step["metrics"] = metrics


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments")
    arguments: Any
    if isinstance(raw, dict):
        arguments = raw
    else:
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {"_raw": raw}
    return {"tool_call_id": str(call.get("id") or ""),
            "function_name": str(function.get("name") or ""), "arguments": arguments}


def _observe(step: dict[str, Any], message: dict[str, Any]) -> None:
    result: dict[str, Any] = {"content": _content(message.get("content"))}
    call_id = message.get("tool_call_id")
    if call_id and any(c["tool_call_id"] == call_id for c in step.get("tool_calls") or ()):
        result["source_call_id"] = call_id
    step.setdefault("observation", {"results": []})["results"].append(result)
