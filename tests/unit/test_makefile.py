"""The Makefile's two entry points: `make example` installs the runtime only, into a virtual
environment of its own, and `make test` the dev extras (read from `make -n`, which prints the
commands without running them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(target: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'dev'}",
         f"EXAMPLE_VENV={tmp_path / 'example'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_make_example_installs_the_runtime_without_dev_extras(tmp_path: Path) -> None:
    lines = _dry_run("example", tmp_path)
    installs = [line for line in lines if "pip install" in line]
    assert installs, lines
    assert all("[dev]" not in line for line in installs)
    assert any(line.startswith(f"{tmp_path / 'example'}/bin/pip install") and
               line.rstrip().endswith("-e .") for line in installs)
    assert not any(str(tmp_path / "dev") in line for line in lines)  # .venv is left alone
    assert any(line.startswith(f"ROLLOUT_VENV={tmp_path / 'example'} ./examples/run-calculator.sh")
               for line in lines)


def test_make_test_still_installs_the_dev_extras(tmp_path: Path) -> None:
    lines = _dry_run("test", tmp_path)
    assert any("pip install" in line and "'.[dev]'" in line for line in lines), lines
