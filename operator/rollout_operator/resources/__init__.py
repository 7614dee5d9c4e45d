"""Pure builders of the Kubernetes objects a RolloutRun owns.

Each builder takes a `RunContext` and returns a manifest dict; nothing here talks to the API.
`build_children` lists them in creation order (a tool pod's NetworkPolicy before its pods).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollout_operator.api.constants import Phase
from rollout_operator.resources.aggregate import build_aggregate_job
from rollout_operator.resources.context import (
    INFERENCE,
    ROLLOUT_SERVER,
    SCORERS,
    TOOLS,
    RunContext,
)
from rollout_operator.resources.inference import (
    build_inference_deployment,
    build_inference_service,
)
from rollout_operator.resources.inspect_job import (
    build_inspect_job,
    build_inspect_network_policy,
)
from rollout_operator.resources.names import child_name
from rollout_operator.resources.rollout_server import (
    build_rollout_server_deployment,
    build_rollout_server_network_policy,
    build_rollout_server_service,
)
from rollout_operator.resources.scorers import (
    build_scorers_deployment,
    build_scorers_network_policy,
    build_scorers_service,
)
from rollout_operator.resources.security import pod_security_violations
from rollout_operator.resources.sync_job import build_sync_job
from rollout_operator.resources.tools import (
    build_tools_deployment,
    build_tools_network_policy,
    build_tools_service,
)
from rollout_operator.resources.workers import build_worker_job

Builder = Callable[[RunContext], dict[str, Any]]

TOOL_BUILDERS: tuple[Builder, ...] = (
    build_tools_network_policy,
    build_tools_service,
    build_tools_deployment,
)
SCORER_BUILDERS: tuple[Builder, ...] = (
    build_scorers_network_policy,
    build_scorers_service,
    build_scorers_deployment,
)
ROLLOUT_SERVER_BUILDERS: tuple[Builder, ...] = (
    build_rollout_server_network_policy,
    build_rollout_server_service,
    build_rollout_server_deployment,
)
INSPECT_BUILDERS: tuple[Builder, ...] = (build_inspect_network_policy, build_inspect_job)
INFERENCE_BUILDERS: tuple[Builder, ...] = (build_inference_service, build_inference_deployment)


def serving_builders(ctx: RunContext) -> list[Builder]:
    """Tool servers, scorer servers when the run has scorers (the rollout servers instead of
    both for a `spec.rollout` run), and the inference server when the run manages one."""
    if ctx.spec.rollout is not None:
        builders = list(ROLLOUT_SERVER_BUILDERS)
    else:
        builders = list(TOOL_BUILDERS)
        if ctx.scoring:
            builders += SCORER_BUILDERS
    if ctx.spec.model.serve is not None:
        builders += INFERENCE_BUILDERS
    return builders


def builders_for_phase(ctx: RunContext, phase: str | None = None) -> list[Builder]:
    """The children that must exist while the run is in `phase`; every child when None.

    Pending, Succeeded, Failed and Suspended need none (workers of a suspended run are kept
    suspended by their Job, not rebuilt).
    """
    if phase is None:
        return [build_sync_job, *INSPECT_BUILDERS, *serving_builders(ctx), build_worker_job,
                build_aggregate_job]
    if phase == Phase.SYNCING:
        return [build_sync_job, *INSPECT_BUILDERS]
    if phase == Phase.STARTING:
        return serving_builders(ctx)
    if phase == Phase.RUNNING:
        return [*serving_builders(ctx), build_worker_job]
    if phase == Phase.AGGREGATING:
        return [build_aggregate_job]
    if phase in Phase.ALL:
        return []
    raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(Phase.ALL)}")


def user_code_servers(ctx: RunContext) -> list[tuple[str, str]]:
    """(component, what it is) of the user-code servers that must be ready before workers
    start: the rollout servers of a `spec.rollout` run, else the tools and any scorers."""
    if ctx.spec.rollout is not None:
        return [(ROLLOUT_SERVER, "the rollout servers")]
    servers = [(TOOLS, "the tool servers")]
    if ctx.scoring:
        servers.append((SCORERS, "the scorer servers"))
    return servers


def user_code_children(ctx: RunContext) -> list[dict[str, Any]]:
    """The NetworkPolicies, Services and Deployments of `user_code_servers`."""
    if ctx.spec.rollout is not None:
        return [build(ctx) for build in ROLLOUT_SERVER_BUILDERS]
    return [*tool_children(ctx), *scorer_children(ctx)]


def tool_children(ctx: RunContext) -> list[dict[str, Any]]:
    """The tool servers' NetworkPolicy, Service and Deployment, in that order."""
    return [build(ctx) for build in TOOL_BUILDERS]


def scorer_children(ctx: RunContext) -> list[dict[str, Any]]:
    """The scorer servers' NetworkPolicy, Service and Deployment; none without scorers."""
    if not ctx.scoring:
        return []
    return [build(ctx) for build in SCORER_BUILDERS]


def inspect_children(ctx: RunContext) -> list[dict[str, Any]]:
    """The inspection Job and its NetworkPolicy (policy first)."""
    return [build(ctx) for build in INSPECT_BUILDERS]


def inference_children(ctx: RunContext) -> list[dict[str, Any]]:
    """The managed inference Service and Deployment; none for an external model."""
    if ctx.spec.model.serve is None:
        return []
    return [build(ctx) for build in INFERENCE_BUILDERS]


def long_running_children(run_name: str, uid: str) -> list[tuple[str, str, str]]:
    """(kind, name, apiVersion) of the children that serve while a run is going and must be
    removed when it finishes: tool, scorer and inference Deployments, their Services and the
    user-code servers' NetworkPolicies.

    Scorer and inference children are listed whether or not the run has them; check before
    deleting.
    """
    tools = child_name(run_name, uid, TOOLS)
    scorers = child_name(run_name, uid, SCORERS)
    inference = child_name(run_name, uid, INFERENCE)
    rollout_server = child_name(run_name, uid, ROLLOUT_SERVER)
    return [
        ("Deployment", tools, "apps/v1"),
        ("Service", tools, "v1"),
        ("NetworkPolicy", tools, "networking.k8s.io/v1"),
        ("Deployment", scorers, "apps/v1"),
        ("Service", scorers, "v1"),
        ("NetworkPolicy", scorers, "networking.k8s.io/v1"),
        ("Deployment", inference, "apps/v1"),
        ("Service", inference, "v1"),
        ("Deployment", rollout_server, "apps/v1"),
        ("Service", rollout_server, "v1"),
        ("NetworkPolicy", rollout_server, "networking.k8s.io/v1"),
    ]


def build_children(ctx: RunContext, phase: str | None = None) -> list[dict[str, Any]]:
    """Manifests of the children for `phase` (all of them when None), in creation order."""
    return [build(ctx) for build in builders_for_phase(ctx, phase)]


__all__ = [
    "RunContext",
    "build_aggregate_job",
    "build_children",
    "build_inference_deployment",
    "build_inference_service",
    "build_inspect_job",
    "build_inspect_network_policy",
    "build_rollout_server_deployment",
    "build_rollout_server_network_policy",
    "build_rollout_server_service",
    "build_scorers_deployment",
    "build_scorers_network_policy",
    "build_scorers_service",
    "build_sync_job",
    "build_tools_deployment",
    "build_tools_network_policy",
    "build_tools_service",
    "build_worker_job",
    "builders_for_phase",
    "child_name",
    "inference_children",
    "inspect_children",
    "long_running_children",
    "pod_security_violations",
    "scorer_children",
    "tool_children",
    "user_code_children",
    "user_code_servers",
]
