"""A trajectory's messages as trainers want them: prompt, completion and tool definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollout_operator.runtime.records import TrajectoryRecord


def split_prompt(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                               list[dict[str, Any]]]:
    """(prompt, completion): the messages before the first assistant message, and the rest."""
    for index, message in enumerate(messages):
        if message.get("role") == "assistant":
            return list(messages[:index]), list(messages[index:])
    return list(messages), []


def tool_definitions(record: TrajectoryRecord,
                     schemas: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The tools the model was offered, as OpenAI function definitions: the run's tools.json
    schemas of the record's tools, else (a run written before tools.json) their names only."""
    names = record.tools or []
    if schemas:
        by_name = {s.get("function", {}).get("name"): s for s in schemas}
        return [by_name.get(name) or _named(name) for name in names]
    return [_named(name) for name in names]


def _named(name: str) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
