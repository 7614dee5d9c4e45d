"""Checks of a spec against the operator's own settings, which the API layer cannot know.

`api.validation.spec_problems` judges a spec on its own; these checks need the settings (which
RuntimeClasses the cluster admin allows, whether a default output URL exists). Each message
names the field and what to do.
"""

from __future__ import annotations

from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.settings import ENV_PREFIX, OperatorSettings


def policy_problems(spec: RolloutRunSpec, settings: OperatorSettings) -> list[str]:
    """What keeps `spec` from running under `settings`; empty when it may run."""
    problems: list[str] = []
    runtime_class = spec.sandbox.runtime_class_name
    allowed = settings.allowed_runtime_classes
    if runtime_class is not None and allowed and runtime_class not in allowed:
        problems.append(
            f"spec.sandbox.runtimeClassName: {runtime_class!r} is not allowed by the operator; "
            f"use one of {', '.join(allowed)} or remove it"
        )
    if not spec.output.url and not settings.default_output_url:
        problems.append(
            "spec.output.url: is required because the operator has no default output URL "
            f"({ENV_PREFIX}DEFAULT_OUTPUT_URL); set it to s3://bucket/prefix or gs://bucket/prefix"
        )
    return problems
