"""The scoring API between a trusted worker and the user-code scorer server.

The worker never imports the repo: it sends finished trajectories, in batches, to a scorer
server that has loaded the repo's reward functions and rubrics, and gets back per-scorer scores
or per-scorer errors. Everything the server answers is untrusted: answers are parsed with these
models, bounded in size, and any answer that does not fit is a scoring failure of the batch,
never a crash of the worker.

    GET  /health        -> Health
    GET  /v1/scorers    -> ScorerList
    POST /v1/score      ScoreRequest -> ScoreResponse

Every body carries `version`; a peer that speaks another version is refused with a message that
names both versions.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROTOCOL_VERSION = 1
SCORERS_PATH = "/v1/scorers"
SCORE_PATH = "/v1/score"
HEALTH_PATH = "/health"
DEFAULT_SCORER_PORT = 8081
MAX_ERROR_CHARS = 2000
"""Longest error message kept per scorer; user code decides what its exceptions say."""
MAX_RESPONSE_BYTES = 64 * 2**20


class ProtocolError(ValueError):
    """A peer answered something this side cannot use (another version, junk, too large)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = PROTOCOL_VERSION

    @field_validator("version")
    @classmethod
    def _same_version(cls, value: int) -> int:
        if value != PROTOCOL_VERSION:
            raise ValueError(
                f"scoring protocol version {value} is not supported (this side speaks "
                f"{PROTOCOL_VERSION}); run the same rollout-operator version on both sides"
            )
        return value


_M = TypeVar("_M", bound="_Message")


class Health(_Message):
    ok: bool = True
    generation: int = Field(default=0, description="Restarts of the server process so far.")


class ScorerInfo(BaseModel):
    ref: str
    mode: Literal["simple", "full"]


class LoadProblem(BaseModel):
    file: str | None = None
    message: str


class ScorerList(_Message):
    scorers: list[ScorerInfo] = Field(default_factory=list)
    problems: list[LoadProblem] = Field(default_factory=list)
    generation: int = 0


class ScoreItem(BaseModel):
    """One finished trajectory to score."""

    id: str
    messages: list[dict[str, Any]]
    ground_truth: str | None = None
    row: dict[str, Any] = Field(default_factory=dict)


class ScoreRequest(_Message):
    items: list[ScoreItem]
    scorers: list[str] | None = Field(
        default=None, description="Only these refs (None: every loaded scorer)."
    )
    isolate: bool = Field(
        default=False,
        description="Run each scorer call in a forked process of its own (after a crash).",
    )


class ItemScores(BaseModel):
    id: str
    scores: dict[str, float] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    scoring_ms: float = 0.0

    @field_validator("scores")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for ref, score in value.items():
            if not math.isfinite(score):
                raise ValueError(f"score of {ref} is {score}, not a finite number")
        return value

    @field_validator("errors")
    @classmethod
    def _short(cls, value: dict[str, str]) -> dict[str, str]:
        return {ref: truncate(message) for ref, message in value.items()}


class ScoreResponse(_Message):
    results: list[ItemScores]
    generation: int = 0


def truncate(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    if len(message) <= limit:
        return message
    return message[: limit - 20] + f"... ({len(message)} chars)"


def parse_response(body: bytes, model: type[_M]) -> _M:
    """`body` as `model`, or `ProtocolError` saying why it cannot be used."""
    if len(body) > MAX_RESPONSE_BYTES:
        raise ProtocolError(f"the scorer server answered {len(body)} bytes (limit "
                            f"{MAX_RESPONSE_BYTES})")
    try:
        return model.model_validate_json(body)
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(first[:3])[:300]
        raise ProtocolError(f"the scorer server's answer is not a valid "
                            f"{model.__name__}: {detail}") from None

