"""Per-rollout accounts: the calls a rollout made through the gateway, with their usage and,
when the endpoint returned them, token ids and logprobs (for ATIF step metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CallRecord:
    """One forwarded chat call's usage and token data (None: the endpoint did not return it)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None


@dataclass(slots=True)
class RolloutAccount:
    """Everything one rollout did through the gateway."""

    rollout_id: str
    calls: list[CallRecord] = field(default_factory=list)
    failed_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return sum(call.total_tokens or 0 for call in self.calls)


class Ledger:
    """The open rollouts' accounts; a call for a rollout that is not open is refused."""

    def __init__(self) -> None:
        self._accounts: dict[str, RolloutAccount] = {}

    def open(self, rollout_id: str) -> RolloutAccount:
        account = self._accounts.setdefault(rollout_id, RolloutAccount(rollout_id))
        return account

    def close(self, rollout_id: str) -> RolloutAccount | None:
        """Forget a rollout and return its account (None if it was not open)."""
        return self._accounts.pop(rollout_id, None)

    def get(self, rollout_id: str) -> RolloutAccount | None:
        return self._accounts.get(rollout_id)

    def __contains__(self, rollout_id: object) -> bool:
        return rollout_id in self._accounts


def record_of(reply: dict[str, Any]) -> CallRecord:
    """The usage and token data of an OpenAI-style chat completion."""
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    record = CallRecord(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")),
                        _int(usage.get("total_tokens")))
    if record.total_tokens is None and record.prompt_tokens is not None:
        record.total_tokens = record.prompt_tokens + (record.completion_tokens or 0)
    prompt_ids = reply.get("prompt_token_ids")
    choices = reply.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(
        choices[0], dict) else {}
    if prompt_ids is None:
        prompt_ids = choice.get("prompt_token_ids")
    record.prompt_token_ids = _ints(prompt_ids)
    record.completion_token_ids = _ints(choice.get("token_ids"))
    record.logprobs = _logprobs(choice.get("logprobs"))
    return record


def strip_token_data(reply: dict[str, Any]) -> None:
    """Remove the non-standard token fields (vLLM's) the agent is not meant to see."""
    reply.pop("prompt_token_ids", None)
    for choice in reply.get("choices") or ():
        if isinstance(choice, dict):
            choice.pop("token_ids", None)
            choice.pop("prompt_token_ids", None)
            if isinstance(choice.get("logprobs"), list):
                choice.pop("logprobs")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ints(value: object) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(item, int) for item in value):
        return list(value)
    return None


def _logprobs(value: object) -> list[float] | None:
    """Per-token logprobs from a vLLM-style list or an OpenAI `{"content": [...]}` object."""
    if isinstance(value, list) and all(isinstance(item, int | float) for item in value):
        return [float(item) for item in value]
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        out = [item.get("logprob") for item in value["content"] if isinstance(item, dict)]
        if all(isinstance(item, int | float) for item in out):
            return [float(item) for item in out if item is not None]
    return None
