"""The operator's configuration: one object read from `ROLLOUT_OPERATOR_*` environment variables.

It is built once at start-up and handed to every builder and decision, so that nothing reads the
environment behind the caller's back (the Helm chart renders these variables from its values).
List settings accept a JSON list or a comma-separated string.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rollout_operator import __version__

ENV_PREFIX = "ROLLOUT_OPERATOR_"

StrList = Annotated[list[str], NoDecode]


class OperatorSettings(BaseSettings):
    """Images, storage defaults, pod limits and switches of one operator deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    runtime_image: str = Field(
        default=f"ghcr.io/rollout-operator/sandbox:{__version__}",
        description="Sandbox image of the sync, tool-server, worker and aggregate pods "
        "(a run's spec.sandbox.image overrides it).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: StrList = Field(
        default_factory=list,
        description="Names of image pull Secrets (in the run's namespace) set on every pod.",
    )
    vllm_image: str = Field(
        default="vllm/vllm-openai:v0.11.0", description="Image of managed vLLM servers."
    )
    sglang_image: str = Field(
        default="lmsysorg/sglang:v0.5.3", description="Image of managed SGLang servers."
    )
    default_output_url: str | None = Field(
        default=None,
        description="Object-storage URL used when a run's spec.output.url is empty.",
    )
    default_output_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint used when a run's spec.output.endpoint is empty.",
    )
    allow_file_repos: bool = Field(
        default=False, description="Accept file:// repo URLs (development clusters only)."
    )
    service_url_template: str = Field(
        default="http://{name}.{namespace}.svc:{port}",
        description="URL of a Service as pods reach it; tests map it to loopback.",
    )
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    allowed_runtime_classes: StrList = Field(
        default_factory=list,
        description="RuntimeClass names a run may ask for; empty allows any.",
    )
    default_egress: StrList = Field(
        default_factory=list,
        description="CIDRs every tool pod may reach, on top of the run's own egress rules.",
    )
    storage_egress: StrList = Field(
        default_factory=list,
        description="CIDRs of the object storage: tool pods fetch their bundle from it.",
    )
    package_index_egress: StrList = Field(
        default_factory=list,
        description=(
            "CIDRs of the Python package index (PyPI or a mirror): the rollout-server pods of "
            "0.3 workspaces build their environment with uv sync from it."
        ),
    )
    sync_deadline_seconds: int = Field(default=1800, gt=0)
    tools_start_deadline_seconds: int = Field(
        default=900, gt=0,
        description="A run fails when its tool servers are not ready this long after creation.",
    )
    inference_start_deadline_seconds: int = Field(
        default=3600, gt=0,
        description="A run fails when its managed inference server is not ready this long "
        "after creation (weights may take long to download).",
    )
    worker_deadline_seconds: int = Field(default=86400, gt=0)
    aggregate_deadline_seconds: int = Field(default=1800, gt=0)
    default_requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "250m", "memory": "512Mi"},
        description="Requests of a sandbox container whose run sets none.",
    )
    default_limits: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "2Gi"},
        description="Limits of a sandbox container whose run sets none.",
    )
    inference_requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "4", "memory": "16Gi"},
        description="Requests of a managed inference container whose run sets none.",
    )
    inference_limits: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "8", "memory": "32Gi"},
        description="Limits of a managed inference container whose run sets none.",
    )
    inference_shm_size_limit: str = Field(
        default="16Gi", description="Size of /dev/shm (memory-backed) of inference servers."
    )
    inference_cache_size_limit: str | None = Field(
        default=None,
        description="Size limit of the volume inference servers download weights to; "
        "unlimited when unset.",
    )
    tmp_size_limit: str = Field(default="1Gi", description="Size limit of each pod's /tmp.")
    workspace_size_limit: str = Field(
        default="10Gi", description="Size limit of the volume holding the unpacked repo."
    )
    post_events: bool = True
    namespaces: StrList = Field(
        default_factory=list, description="Namespaces to watch; empty watches the whole cluster."
    )

    @field_validator(
        "image_pull_secrets",
        "allowed_runtime_classes",
        "default_egress",
        "storage_egress",
        "package_index_egress",
        "namespaces",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    def service_url(self, name: str, namespace: str, port: int) -> str:
        """The URL at which pods reach Service `name` in `namespace` on `port`."""
        return self.service_url_template.format(name=name, namespace=namespace, port=port)
