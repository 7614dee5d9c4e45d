"""The Makefile's two entry points: `make example` installs the runtime only, with uv, into a
virtual environment of its own, and `make test` the dev extras (read from `make -n`, which
prints the commands without running them)."""

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
    example = tmp_path / "example"
    installs = [line for line in lines if "pip install" in line]
    assert installs, lines
    assert all("[dev]" not in line for line in installs)
    # uv comes from the package index into the example's own environment, and installs the
    # project (runtime dependencies only) into that environment's Python.
    assert any(line.startswith(f"{example}/bin/pip install") and
               line.split()[-1] == "uv" for line in installs), installs
    project = [line for line in installs if line.rstrip().endswith("-e .")]
    assert len(project) == 1, installs
    words = project[0].split()
    assert words[:3] == [f"{example}/bin/uv", "pip", "install"], words
    assert words[words.index("--python") + 1] == f"{example}/bin/python", words
    assert not any(str(tmp_path / "dev") in line for line in lines)  # .venv is left alone
    assert any(line.startswith(f"ROLLOUT_VENV={example} ./examples/run-calculator.sh")
               for line in lines)


def test_make_example_bootstraps_uv_before_using_it(tmp_path: Path) -> None:
    lines = _dry_run("example-install", tmp_path)
    example = tmp_path / "example"
    order = [index for index, line in enumerate(lines)
             if line.startswith((f"{example}/bin/pip install", f"{example}/bin/uv pip install"))]
    assert [lines[index].split()[0] for index in order] == [
        f"{example}/bin/pip", f"{example}/bin/uv"], lines
    assert lines[0].split()[-3:] == ["-m", "venv", str(example)], lines


def test_make_test_still_installs_the_dev_extras(tmp_path: Path) -> None:
    lines = _dry_run("test", tmp_path)
    assert any("pip install" in line and "'.[dev]'" in line for line in lines), lines
