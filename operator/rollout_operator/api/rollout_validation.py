"""Checks of `spec.rollout` (an Osmosis 0.3 workspace's rollout) that a schema cannot express.

The rules are those of an eval config's `[experiment]`, `[env]` and `[secrets]`: a
single-segment rollout name, an entrypoint inside the rollout, no `_OSMOSIS_` names, no name
both plain and secret. The mcp/ and reward-function fields do not apply to such a run and are
refused, so that nobody believes they take effect.
"""

from __future__ import annotations

import re

from rollout_operator.api.spec import RolloutRunSpec

RESERVED_ENV_PREFIX = "_OSMOSIS_"
# Set by the runner itself (workers, `rolloutctl run`) on every rollout server.
OPERATOR_ENV_PREFIX = "ROLLOUT_"
WHERE = "spec.rollout"


def rollout_problems(spec: RolloutRunSpec) -> list[str]:
    """What is wrong with `spec.rollout`, each message naming the field and the fix; none for
    a run without it."""
    rollout = spec.rollout
    if rollout is None:
        return []
    problems: list[str] = []
    if rollout.name in (".", ".."):
        problems.append(f"{WHERE}.name: must name a directory under rollouts/ "
                        f"(got {rollout.name!r})")
    entry = rollout.entrypoint
    parts = re.split(r"[/\\]", entry)
    if entry.startswith(("/", "\\", "~")) or ".." in parts or "\x00" in entry:
        problems.append(f"{WHERE}.entrypoint: must be a file inside rollouts/{rollout.name}/, "
                        f"e.g. main.py (got {entry!r})")
    elif not entry.endswith(".py"):
        problems.append(f"{WHERE}.entrypoint: must be a Python file, e.g. main.py "
                        f"(got {entry!r})")
    for name in rollout.env:
        problems += _reserved(f"{WHERE}.env.{name}", name)
    seen: set[str] = set()
    for i, secret in enumerate(rollout.secrets):
        where = f"{WHERE}.secrets[{i}].env"
        problems += _reserved(where, secret.env)
        if secret.env in rollout.env:
            problems.append(f"{where}: {secret.env!r} is also in {WHERE}.env; each variable "
                            "must come from exactly one place")
        if secret.env in seen:
            problems.append(f"{where}: {secret.env!r} is set twice; keep one entry")
        seen.add(secret.env)
    scoring = spec.scoring
    if scoring.functions is not None:
        problems.append("spec.scoring.functions: a 0.3 workspace is scored by its Grader; "
                        "remove scoring.functions when spec.rollout is set")
    if scoring.secrets:
        problems.append("spec.scoring.secrets: there are no scorer servers when spec.rollout "
                        "is set; give the Grader's secrets in spec.rollout.secrets")
    if scoring.egress:
        problems.append("spec.scoring.egress: there are no scorer servers when spec.rollout "
                        "is set; the rollout server reaches only the model gateway")
    if spec.sandbox.egress:
        problems.append("spec.sandbox.egress: the rollout server of a 0.3 workspace reaches "
                        "only the model gateway; remove sandbox.egress when spec.rollout is set")
    return problems


def _reserved(where: str, name: str) -> list[str]:
    upper = name.upper()
    if upper.startswith(RESERVED_ENV_PREFIX):
        return [f"{where}: names starting with {RESERVED_ENV_PREFIX} are reserved by the "
                f"platform; choose a different name"]
    if upper.startswith(OPERATOR_ENV_PREFIX):
        return [f"{where}: names starting with {OPERATOR_ENV_PREFIX} are reserved for the "
                f"operator; choose a different name"]
    return []
