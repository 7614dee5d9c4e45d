"""Everything a builder needs to know about one run, in one immutable value.

Builders take a `RunContext` and nothing else, so that a manifest depends only on the run's
identity, its spec, what sync found (commit, bundle, scorers) and the operator's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout_operator.api.constants import API_VERSION, KIND, LABEL_PREFIX
from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.api.status import RolloutRunStatus
from rollout_operator.resources.names import child_name, label_value
from rollout_operator.runtime.run_config import RunConfig
from rollout_operator.runtime.run_layout import run_prefix
from rollout_operator.runtime.scorer_protocol import DEFAULT_SCORER_PORT
from rollout_operator.settings import OperatorSettings

APP_NAME = "rollout-operator"
RUN_LABEL = f"{LABEL_PREFIX}run"
RUN_UID_LABEL = f"{LABEL_PREFIX}run-uid"
COMPONENT_LABEL = f"{LABEL_PREFIX}component"

USER_CODE_LABEL = f"{LABEL_PREFIX}user-code"
"""On every pod that runs the repo's code, so NetworkPolicies and admission policies can
select them."""

SYNC = "sync"
INSPECT = "inspect"
TOOLS = "tools"
SCORERS = "scorers"
INFERENCE = "inference"
WORKERS = "workers"
AGGREGATE = "aggregate"
ROLLOUT_SERVER = "rollout-server"
COMPONENTS = (SYNC, INSPECT, TOOLS, SCORERS, ROLLOUT_SERVER, INFERENCE, WORKERS, AGGREGATE)
USER_CODE_COMPONENTS = (INSPECT, TOOLS, SCORERS, ROLLOUT_SERVER)

TOOL_PORT = 8080
TOOL_PATH = "/mcp"
SCORER_PORT = DEFAULT_SCORER_PORT


class MissingOutputError(ValueError):
    """Neither the run nor the operator names an object-storage URL."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """One RolloutRun as the builders see it; `run_prefix` is derived when left empty.

    `commit`, `bundle_url`, `scorers` and `fastmcp_version` come from the sync Job's report.
    """

    name: str
    namespace: str
    uid: str
    generation: int
    spec: RolloutRunSpec
    settings: OperatorSettings
    commit: str | None = None
    bundle_url: str | None = None
    run_prefix: str = ""
    scorers: list[str] = field(default_factory=list)
    fastmcp_version: str | None = None
    bundle_fetch_url: str | None = None
    """The signed URL user-code pods fetch the bundle with (from the sync Job's report; never
    in status)."""
    scoring: bool = True
    """Whether the run has scorers (inspection found or the spec names some): a scorer
    Deployment serves them."""
    tools: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.run_prefix:
            prefix = run_prefix(
                effective_output_url(self.spec, self.settings), self.namespace, self.name, self.uid
            )
            object.__setattr__(self, "run_prefix", prefix)

    @classmethod
    def from_object(
        cls,
        obj: Mapping[str, Any],
        spec: RolloutRunSpec,
        settings: OperatorSettings,
        *,
        commit: str | None = None,
        bundle_url: str | None = None,
        scorers: list[str] | None = None,
        fastmcp_version: str | None = None,
    ) -> RunContext:
        """A context for a RolloutRun object as read from the API (metadata, parsed spec)."""
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta["name"]),
            namespace=str(meta.get("namespace") or "default"),
            uid=str(meta["uid"]),
            generation=int(meta.get("generation") or 1),
            spec=spec,
            settings=settings,
            commit=commit,
            bundle_url=bundle_url,
            scorers=list(scorers or []),
            fastmcp_version=fastmcp_version,
        )

    @classmethod
    def from_status(
        cls,
        *,
        name: str,
        namespace: str,
        uid: str,
        generation: int,
        spec: RolloutRunSpec,
        settings: OperatorSettings,
        status: RolloutRunStatus | None,
        bundle_fetch_url: str | None = None,
    ) -> RunContext:
        """A context with what sync and inspection recorded in the run's status (commit,
        bundle, FastMCP, whether there are scorers) and the bundle's signed URL.

        Scorers are not taken from status, whose lists are capped for size: pods given none
        run spec.scoring.functions, or every scorer the bundle has.
        """
        scoring = bool(spec.scoring.functions) or bool(status and status.scorers)
        return cls(
            name=name,
            namespace=namespace,
            uid=uid,
            generation=generation,
            spec=spec,
            settings=settings,
            commit=status.commit if status else None,
            bundle_url=status.bundle if status else None,
            fastmcp_version=status.fastmcp_version if status else None,
            bundle_fetch_url=bundle_fetch_url,
            scoring=scoring,
            tools=list(status.tools) if status else [],
        )

    def child_name(self, component: str) -> str:
        return child_name(self.name, self.uid, component)

    def owner_reference(self) -> dict[str, Any]:
        """Makes the run its child's controller, so deleting the run deletes the child."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def selector_labels(self, component: str) -> dict[str, str]:
        """The labels that pick this run's pods of one component (the uid, not the name)."""
        return {RUN_UID_LABEL: self.uid, COMPONENT_LABEL: component}

    def labels(self, component: str) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": APP_NAME,
            "app.kubernetes.io/managed-by": APP_NAME,
            "app.kubernetes.io/instance": label_value(self.name),
            "app.kubernetes.io/component": component,
            RUN_LABEL: label_value(self.name),
            **self.selector_labels(component),
        }
        if component in USER_CODE_COMPONENTS:
            labels[USER_CODE_LABEL] = "true"
        return labels

    @property
    def sandbox_image(self) -> str:
        return self.spec.sandbox.image or self.settings.runtime_image

    @property
    def output_url(self) -> str:
        return effective_output_url(self.spec, self.settings)

    @property
    def output_endpoint(self) -> str | None:
        return self.spec.output.endpoint or self.settings.default_output_endpoint

    def service_url(self, component: str, port: int) -> str:
        return self.settings.service_url(self.child_name(component), self.namespace, port)

    @property
    def tool_url(self) -> str:
        """The tool Service's MCP endpoint as worker pods reach it."""
        return self.service_url(TOOLS, TOOL_PORT) + TOOL_PATH

    @property
    def scorer_url(self) -> str | None:
        """The scorer Service as worker pods reach it; None when the run has no scorers."""
        return self.service_url(SCORERS, SCORER_PORT) if self.scoring else None

    @property
    def model_base_url(self) -> str | None:
        """The managed inference Service's OpenAI-compatible base URL; None for external models."""
        serve = self.spec.model.serve
        if serve is None:
            return None
        return self.service_url(INFERENCE, serve.port) + "/v1"

    def require_bundle_url(self) -> str:
        if not self.bundle_url:
            raise ValueError(
                f"run {self.namespace}/{self.name} has no bundle URL yet: tool and worker pods "
                "are built after sync has uploaded the bundle"
            )
        return self.bundle_url

    def require_bundle_fetch_url(self) -> str:
        """The URL user-code pods fetch the bundle from without credentials."""
        if self.bundle_fetch_url:
            return self.bundle_fetch_url
        if self.bundle_url and self.bundle_url.startswith("file://"):
            return self.bundle_url
        raise ValueError(
            f"run {self.namespace}/{self.name} has no signed bundle URL: user-code pods are "
            "built from the sync Job's report"
        )

    def effective_spec(self) -> RolloutRunSpec:
        """The spec with the operator's storage defaults filled in, as the pods must use it."""
        output = self.spec.output.model_copy(
            update={"url": self.output_url, "endpoint": self.output_endpoint}
        )
        return self.spec.model_copy(update={"output": output})

    def run_config(self) -> RunConfig:
        """What every pod of the run gets in `ROLLOUT_RUN_CONFIG` (no secret values)."""
        return RunConfig(
            spec=self.effective_spec(),
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            run_prefix=self.run_prefix,
            bundle_url=self.bundle_url,
            tool_url=self.tool_url,
            scorer_url=self.scorer_url,
            model_base_url=self.model_base_url,
            commit=self.commit,
            fastmcp_version=self.fastmcp_version,
            scorers=list(self.scorers),
            tools=list(self.tools),
        )


def effective_output_url(spec: RolloutRunSpec, settings: OperatorSettings) -> str:
    url = spec.output.url or settings.default_output_url
    if not url:
        raise MissingOutputError(
            "spec.output.url is not set and the operator has no default "
            "(ROLLOUT_OPERATOR_DEFAULT_OUTPUT_URL): set one of them"
        )
    return url
