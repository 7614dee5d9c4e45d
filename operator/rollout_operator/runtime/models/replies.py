"""Reading a chat completion reply into a `ChatResult`, the same way for every client.

The stored assistant message must not depend on which client made the call. Upstream stores
litellm's `choice.message.model_dump(exclude_none=True)`, so the lean client normalises the raw
JSON message the way litellm does for an OpenAI-compatible endpoint: null fields dropped
(including `content: null` next to tool calls), non-standard fields moved under
`provider_specific_fields`, reasoning exposed as `reasoning_content`, tool calls completed with
`type` and string `arguments`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from rollout_operator.runtime.interfaces import ChatResult, Message, Usage

_MESSAGE_FIELDS = frozenset({
    "content", "role", "tool_calls", "function_call", "audio", "reasoning_content",
    "thinking_blocks", "annotations", "images", "refusal", "reasoning_items",
    "provider_specific_fields",
})

_THINK = re.compile(
    r"<(?:think|thinking|budget:thinking)>(.*?)</(?:think|thinking|budget:thinking)>(.*)",
    re.DOTALL,
)

_OPENAI_FINISH = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter"})
_FINISH_ALIASES = {
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "refusal": "content_filter",
}


class InvalidReply(ValueError):
    """A 2xx body that is not a chat completion."""


def result_from_reply(payload: Any) -> ChatResult:
    """The `ChatResult` of a raw `/chat/completions` JSON body (first choice)."""
    if not isinstance(payload, dict):
        raise InvalidReply(f"expected a JSON object, got {type(payload).__name__}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = payload.get("error")
        if error:
            raise InvalidReply(f"error in reply: {_error_text(error)}")
        raise InvalidReply("the reply has no choices")
    choice = choices[0]
    raw_message = choice.get("message")
    if not isinstance(raw_message, dict):
        raise InvalidReply("the first choice has no message")
    message = normalise_message(raw_message)
    token_ids, logprobs = token_data(choice.get("token_ids"), choice.get("logprobs"))
    if token_ids is None:
        extra = choice.get("provider_specific_fields")
        if isinstance(extra, dict):
            token_ids, _ = token_data(extra.get("token_ids"), None)
    if token_ids is None:
        meta_ids, meta_logprobs = sglang_meta_tokens(choice.get("meta_info"))
        if meta_ids is not None:
            token_ids = meta_ids
            logprobs = logprobs if logprobs is not None else meta_logprobs
    # vLLM (`return_token_ids`) puts the prompt's ids beside the choices, SGLang on the choice.
    prompt_ids, _ = token_data(payload.get("prompt_token_ids", choice.get("prompt_token_ids")),
                               None)
    return ChatResult(
        message=message,
        finish_reason=finish_reason(choice.get("finish_reason"), message),
        usage=usage_from(payload.get("usage")),
        token_ids=token_ids,
        logprobs=logprobs,
        prompt_token_ids=prompt_ids,
    )


def normalise_message(raw: Mapping[str, Any]) -> Message:
    extra: dict[str, Any] = dict(raw.get("provider_specific_fields") or {})
    for key in raw.keys() - _MESSAGE_FIELDS:
        extra[key] = raw[key]

    annotations = raw.get("annotations")
    if isinstance(annotations, list):
        others = [a for a in annotations if _provider_annotation(a)]
        if others:
            extra["annotations"] = others
            annotations = [a for a in annotations if not _provider_annotation(a)] or None

    content = raw.get("content")
    reasoning: Any = None
    if "reasoning_content" in raw:
        reasoning = raw["reasoning_content"]
    elif "reasoning" in raw:
        reasoning = raw["reasoning"]
    elif isinstance(content, str) and content:
        match = _THINK.match(content)
        if match:
            reasoning, content = match.group(1), match.group(2)

    thinking_blocks = raw.get("thinking_blocks")
    if "thinking_blocks" in raw:
        extra["thinking_blocks"] = thinking_blocks

    message: dict[str, Any] = {
        "content": content,
        "role": raw.get("role") or "assistant",
        "tool_calls": _tool_calls(raw.get("tool_calls")),
        "function_call": raw.get("function_call"),
        "audio": raw.get("audio"),
        "reasoning_content": reasoning,
        "thinking_blocks": thinking_blocks,
        "reasoning_items": raw.get("reasoning_items"),
        "annotations": annotations,
        "images": raw.get("images"),
        "refusal": raw.get("refusal"),
        "provider_specific_fields": extra or None,
    }
    return {key: value for key, value in message.items() if value is not None}


def _tool_calls(raw: Any) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list):
        return None
    calls: list[dict[str, Any]] = []
    for item in raw:
        call = {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else {}
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        elif isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        call["function"] = {"arguments": arguments}
        if function.get("name") is not None:
            call["function"]["name"] = function["name"]
        call.setdefault("id", str(uuid.uuid4()))
        call.setdefault("type", "function")
        calls.append(call)
    return calls


def _provider_annotation(annotation: Any) -> bool:
    return isinstance(annotation, dict) and "type" in annotation and (
        annotation["type"] != "url_citation"
    )


def finish_reason(raw: Any, message: Message) -> str:
    """OpenAI's finish reasons; a stop that carries tool calls is a `tool_calls` finish."""
    if raw is None:
        reason = "stop"
    elif raw in _OPENAI_FINISH:
        reason = str(raw)
    else:
        reason = _FINISH_ALIASES.get(str(raw), "stop")
    if reason == "stop" and message.get("tool_calls"):
        return "tool_calls"
    return reason


def usage_from(raw: Any) -> Usage:
    if not isinstance(raw, Mapping):
        return Usage()
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )


def token_data(raw_ids: Any, raw_logprobs: Any) -> tuple[list[int] | None, list[float] | None]:
    """Per-turn token ids and logprobs as flat lists, from vLLM's lists or OpenAI's objects.

    vLLM puts `token_ids` and `logprobs` lists on the choice; OpenAI (and vLLM with
    `logprobs=true`) sends `logprobs: {"content": [{"token", "logprob", ...}, ...]}`.
    """
    token_ids = [int(t) for t in raw_ids] if isinstance(raw_ids, list) else None
    return token_ids, _flat_logprobs(raw_logprobs)


def sglang_meta_tokens(meta: Any) -> tuple[list[int] | None, list[float] | None]:
    """The reply's token ids and logprobs from an SGLang choice's `meta_info`
    (`return_meta_info`): `output_token_logprobs` entries are `[logprob, token_id, text]` or
    `{"logprob", "token_id"}`; without them, `output_ids` gives the ids alone."""
    if not isinstance(meta, Mapping):
        return None, None
    entries = meta.get("output_token_logprobs")
    if isinstance(entries, list) and entries:
        ids: list[int] = []
        values: list[float] = []
        for entry in entries:
            if isinstance(entry, Mapping):
                value, token = entry.get("logprob"), entry.get("token_id", entry.get("id"))
            elif isinstance(entry, list | tuple) and len(entry) >= 2:
                value, token = entry[0], entry[1]
            else:
                return token_data(meta.get("output_ids"), None)
            if not isinstance(token, int) or not isinstance(value, int | float):
                return token_data(meta.get("output_ids"), None)
            ids.append(token)
            values.append(float(value))
        return ids, values
    return token_data(meta.get("output_ids"), None)


def _flat_logprobs(raw: Any) -> list[float] | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        if all(isinstance(v, int | float) for v in raw):
            return [float(v) for v in raw]
        return None
    content = raw.get("content") if isinstance(raw, Mapping) else getattr(raw, "content", None)
    if not isinstance(content, list):
        return None
    values: list[float] = []
    for item in content:
        value = item.get("logprob") if isinstance(item, Mapping) else getattr(item, "logprob", None)
        if not isinstance(value, int | float):
            return None
        values.append(float(value))
    return values


def _error_text(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or json.dumps(error))
    return str(error)


def error_detail(body: bytes) -> str:
    """The endpoint's own words from an error body: `error.message`, or the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, Mapping):
        if "error" in parsed:
            return _error_text(parsed["error"])
        if "message" in parsed:
            return str(parsed["message"])
        if "detail" in parsed:
            return str(parsed["detail"])
    return text
