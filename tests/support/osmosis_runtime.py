"""Run user-repo code that imports `osmosis_ai` inside a test, leaving the interpreter as it was."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import rollout_operator
from rollout_operator.runtime.osmosis_compat import install_osmosis_ai

REPO_ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = REPO_ROOT / "examples" / "calculator"
_OPERATOR_DIR = Path(rollout_operator.__file__).resolve().parents[1]
_names = itertools.count(1)
_files = itertools.count(1)


@contextmanager
def osmosis_ai_installed() -> Iterator[None]:
    """`install_osmosis_ai()`, then undo its changes to `sys.modules` and `sys.meta_path`."""
    modules_before = set(sys.modules)
    meta_path_before = list(sys.meta_path)
    install_osmosis_ai()
    try:
        yield
    finally:
        sys.meta_path[:] = meta_path_before
        for name in set(sys.modules) - modules_before:
            if name == "osmosis_ai" or name.startswith(("osmosis_ai.", "_user_module_")):
                del sys.modules[name]


def load_module(path: Path) -> types.ModuleType:
    """Import a user file by path under a unique name, as a repo loader would."""
    name = f"_user_module_{next(_names)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def define_decorated(
    tmp_path: Path, source: str, *, decorator: str, future: bool = False
) -> types.ModuleType:
    """Write `source` as a user module that decorates with `decorator` and import it.

    The module imports `Optional` and the decorator from `rollout_operator`; `future=True` starts
    it with `from __future__ import annotations`, so its annotations are strings.
    """
    header = "from __future__ import annotations\n" if future else ""
    header += f"from typing import Optional\nfrom rollout_operator import {decorator}\n\n"
    path = tmp_path / f"{decorator}_{next(_files)}.py"
    path.write_text(header + textwrap.dedent(source))
    return load_module(path)


def decoration_error(
    tmp_path: Path, source: str, *, decorator: str, future: bool = False
) -> str:
    """The message of the `TypeError` that defining `source` must raise."""
    with pytest.raises(TypeError) as caught:
        define_decorated(tmp_path, source, decorator=decorator, future=future)
    return str(caught.value)


def run_python(
    code: str, *, extra_path: list[Path] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that can import rollout_operator and tests.*."""
    paths = [str(p) for p in extra_path or []] + [str(_OPERATOR_DIR), str(REPO_ROOT)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
