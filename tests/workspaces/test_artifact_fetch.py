"""How a worker of a `spec.rollout` run collects ATIF files: over HTTP from the rollout pod's
artifact server (served here by the same standard-library file server the pod runs), or from
a local folder; missing and oversized files are not kept."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_operator.cli import pod_work_rollout


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "trajectory.json").write_bytes(b'{"x": 1}')
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "trajectory.json").write_bytes(b"x" * 2048)
    return tmp_path


@pytest.fixture
def served(artifacts: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(artifacts))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def fetch_all(base: str) -> list[bytes | None]:
    fetch, close = pod_work_rollout._fetcher(base)
    try:
        return [await fetch(name) for name in ("r1", "missing", "big")]
    finally:
        await close()


@pytest.mark.parametrize("where", ["http", "folder"])
def test_fetch(where: str, served: str, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pod_work_rollout, "MAX_TRAJECTORY_BYTES", 1024)
    base = served if where == "http" else str(artifacts)
    assert asyncio.run(fetch_all(base)) == [b'{"x": 1}', None, None]
