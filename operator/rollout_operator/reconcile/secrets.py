"""Which Secrets a spec refers to, and which of them are missing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from rollout_operator.api.spec import RolloutRunSpec


def referenced_secrets(spec: RolloutRunSpec) -> list[tuple[str, str]]:
    """(field path, Secret name) for every Secret the spec names."""
    refs: list[tuple[str, str]] = []
    if spec.repo.credentials_secret:
        refs.append(("spec.repo.credentialsSecret", spec.repo.credentials_secret))
    if spec.model.api_key_secret is not None:
        refs.append(("spec.model.apiKeySecret", spec.model.api_key_secret.name))
    for i, secret in enumerate(spec.scoring.secrets):
        refs.append((f"spec.scoring.secrets[{i}]", secret.secret_key_ref.name))
    for i, secret in enumerate(spec.rollout.secrets if spec.rollout else []):
        refs.append((f"spec.rollout.secrets[{i}]", secret.secret_key_ref.name))
    if spec.output.credentials_secret:
        refs.append(("spec.output.credentialsSecret", spec.output.credentials_secret))
    return refs


def missing_secrets(spec: RolloutRunSpec, existing: Iterable[str], namespace: str) -> list[str]:
    """A message for each referenced Secret that does not exist in the run's namespace."""
    present = set(existing)
    return [
        f"{path}: Secret '{name}' does not exist in namespace '{namespace}'; create it or fix "
        "the name"
        for path, name in referenced_secrets(spec)
        if name not in present
    ]


def secret_names_in(raw_spec: Mapping[str, Any]) -> list[str]:
    """Secret names a raw spec refers to; none when the spec does not parse (that is reported
    as an invalid spec elsewhere)."""
    try:
        spec = RolloutRunSpec.model_validate(raw_spec)
    except ValidationError:
        return []
    return sorted({name for _, name in referenced_secrets(spec)})
