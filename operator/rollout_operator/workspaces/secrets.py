"""`[secrets].required` values: from `--secrets-file` (dotenv; `-` reads stdin), then the
environment. They go to the gateway (the provider key) and to the rollout process."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from pathlib import Path

from rollout_operator.workspaces.errors import WorkspaceError


def resolve_secrets(names: tuple[str, ...], secrets_file: str | None,
                    environ: Mapping[str, str]) -> dict[str, str]:
    from dotenv import dotenv_values

    from_file: dict[str, str | None] = {}
    if secrets_file == "-":
        from_file = dict(dotenv_values(stream=io.StringIO(sys.stdin.read())))
    elif secrets_file:
        path = Path(secrets_file)
        if not path.is_file():
            raise WorkspaceError(f"--secrets-file {secrets_file}: no such file")
        from_file = dict(dotenv_values(path))
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        value = from_file.get(name) or environ.get(name)
        if value:
            values[name] = value
        else:
            missing.append(name)
    if missing:
        raise WorkspaceError(f"No value found for: {', '.join(missing)}. Export them or pass "
                             "--secrets-file.", code="SECRETS_MISSING")
    return values
