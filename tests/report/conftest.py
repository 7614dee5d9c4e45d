"""Fixtures of the report tests: a Chromium to render pages in, and where screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.report.chromium import NOT_FOUND, find_chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(NOT_FOUND)
    return binary


def keep_artifact(path: Path, data: bytes) -> Path:
    """Write `data` at `path` (under the test's tmp folder) and copy it into
    $ROLLOUT_TEST_ARTIFACTS, when that is set (CI keeps that folder)."""
    path.write_bytes(data)
    target = os.environ.get("ROLLOUT_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / path.name)
    return path
