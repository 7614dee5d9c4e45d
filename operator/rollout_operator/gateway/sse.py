"""A whole chat completion as an OpenAI stream: one chunk with the full delta, then `[DONE]`."""

from __future__ import annotations

import json
from typing import Any

HEARTBEAT = b": keepalive\n\n"
DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def completion_chunk(reply: dict[str, Any]) -> dict[str, Any]:
    """The `chat.completion.chunk` carrying all of `reply`'s first choice (and its usage)."""
    choices = reply.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    assert isinstance(message, dict)
    delta: dict[str, Any] = {"role": message.get("role") or "assistant",
                             "content": message.get("content")}
    for key in ("reasoning_content", "refusal"):
        if message.get(key) is not None:
            delta[key] = message[key]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)
                               if isinstance(call, dict)]
    chunk_choice: dict[str, Any] = {"index": 0, "delta": delta,
                                    "finish_reason": choice.get("finish_reason") or "stop"}
    if choice.get("logprobs") is not None:
        chunk_choice["logprobs"] = choice["logprobs"]
    chunk: dict[str, Any] = {
        "id": reply.get("id") or "chatcmpl-gateway", "object": "chat.completion.chunk",
        "created": reply.get("created") or 0, "model": reply.get("model"),
        "choices": [chunk_choice],
    }
    if reply.get("usage") is not None:
        chunk["usage"] = reply["usage"]  # the bridge sends usage whether or not it was asked for
    return chunk
