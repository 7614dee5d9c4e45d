"""What a run's pod needs to know, handed over as JSON in one environment variable.

The operator (or the local backend) builds a `RunConfig` for every pod it starts and puts
`to_env_value()` into `ROLLOUT_RUN_CONFIG`; the pod entrypoints read it back with `from_env()`.
It holds no secrets: API keys and storage credentials reach the pod as their own environment
variables, from Secret references.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollout_operator.api.spec import RolloutRunSpec

RUN_CONFIG_ENV = "ROLLOUT_RUN_CONFIG"
MODEL_API_KEY_ENV = "ROLLOUT_MODEL_API_KEY"
DEFAULT_REPO_DIR = "/workspace/repo"


class RunConfigError(ValueError):
    """`ROLLOUT_RUN_CONFIG` is missing or does not describe a run."""


class RunConfig(BaseModel):
    """One run, as its pods see it."""

    model_config = ConfigDict(extra="forbid")

    spec: RolloutRunSpec
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)
    run_prefix: str = Field(
        min_length=1, description="URL of the run's folder: <output.url>/<ns>/<name>-<uid8>."
    )
    bundle_url: str | None = Field(default=None, description="URL of the repo bundle.")
    repo_dir: str = Field(
        default=DEFAULT_REPO_DIR,
        description="Where the repo (repo.path applied) is unpacked in the pod.",
    )
    tool_url: str | None = Field(default=None, description="The tool Service's /mcp URL.")
    scorer_url: str | None = Field(
        default=None, description="The scorer Service's URL (http://host:port)."
    )
    model_base_url: str | None = Field(
        default=None, description="Endpoint of the managed inference Service (spec.model.serve)."
    )
    commit: str | None = None
    fastmcp_version: str | None = Field(
        default=None, description="FastMCP version of the tool server (recorded per trajectory)."
    )
    scorers: list[str] = Field(
        default_factory=list,
        description="module:function refs found by inspection; empty means spec.scoring.",
    )
    tools: list[str] = Field(
        default_factory=list, description="Tool names found by inspection (for run.json)."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RunConfig:
        """The config in `ROLLOUT_RUN_CONFIG` (raises `RunConfigError` saying what is wrong)."""
        raw = environ.get(RUN_CONFIG_ENV)
        if not raw:
            raise RunConfigError(
                f"{RUN_CONFIG_ENV} is not set: this command runs inside a RolloutRun's pod, "
                "which gets the run's configuration as JSON in that variable"
            )
        return cls.from_json(raw)

    @classmethod
    def from_json(cls, raw: str | bytes) -> RunConfig:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
                for error in exc.errors(include_url=False)[:5]
            )
            message = f"{RUN_CONFIG_ENV} is not a valid run config: {problems}"
            raise RunConfigError(message) from None

    def to_env_value(self) -> str:
        """Compact JSON for `ROLLOUT_RUN_CONFIG` (the spec with its camelCase keys)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def env(self) -> dict[str, str]:
        """`{ROLLOUT_RUN_CONFIG: ...}`, to merge into a pod's environment."""
        return {RUN_CONFIG_ENV: self.to_env_value()}

    @property
    def scorer_refs(self) -> list[str]:
        """The scorers the run uses: what inspection found, else spec.scoring.functions (empty:
        every scorer the scorer server finds)."""
        return list(self.scorers or self.spec.scoring.functions or [])

    @property
    def policy_version(self) -> str | None:
        """`spec.model.policyVersion`, stamped on every record the run writes."""
        return self.spec.model.policy_version

    @property
    def model_name(self) -> str:
        """The model the rollouts request (`spec.model.name`, or the served model)."""
        return self.spec.model.served_name

    @property
    def model_endpoint(self) -> str | None:
        """Where model calls go: the managed Service, else `spec.model.baseURL`."""
        return self.model_base_url or self.spec.model.base_url

    @property
    def capture_tokens(self) -> bool:
        """`spec.model.captureTokens`: every model call asks for token ids and logprobs."""
        return self.spec.model.capture_tokens

    @property
    def engine(self) -> Literal["vllm", "sglang"] | None:
        """The managed server's engine (`spec.model.serve.engine`); None for an endpoint of
        unknown make, which is asked in vLLM's words."""
        serve = self.spec.model.serve
        return serve.engine if serve is not None else None

    def completion_params(self) -> dict[str, Any]:
        """Sampling parameters set in the spec (unset ones are not sent)."""
        model = self.spec.model
        params: dict[str, Any] = {}
        if model.temperature is not None:
            params["temperature"] = model.temperature
        if model.top_p is not None:
            params["top_p"] = model.top_p
        if model.max_tokens is not None:
            params["max_tokens"] = model.max_tokens
        return params
