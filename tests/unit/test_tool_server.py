"""The tool server process: a repo's tools over streamable HTTP at /mcp, with /health."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastmcp import Client
from starlette.routing import Route

import rollout_operator
from rollout_operator.runtime.repo_loader import load_mcp_server
from rollout_operator.runtime.tool_server import HEALTH_PATH, endpoint_url, tool_http_app

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR_MCP = ROOT / "examples" / "calculator" / "mcp"
REPOS = ROOT / "tests" / "fixtures" / "repos"
READY_TIMEOUT = 30.0


def _server_env() -> dict[str, str]:
    operator_dir = Path(rollout_operator.__path__[0]).parent
    pythonpath = os.pathsep.join(filter(None, [str(operator_dir), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


def _command(mcp_dir: Path, *extra: str, python: str = sys.executable) -> list[str]:
    module = "rollout_operator.runtime.tool_server"
    return [python, "-m", module, "--mcp", str(mcp_dir), "--port", "0", *extra]


def _read_ready_line(process: subprocess.Popen[str]) -> str:
    """The first stdout line, or a failure carrying the server's stderr."""
    assert process.stdout is not None
    line: list[str] = []
    stdout = process.stdout
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(READY_TIMEOUT)
    if not line or not line[0]:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"tool server did not announce READY; stderr:\n{stderr}")
    return line[0].strip()


@contextmanager
def running_server(
    mcp_dir: Path, *extra: str, python: str = sys.executable, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        _command(mcp_dir, *extra, python=python),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or _server_env(),
        cwd=ROOT,
    )
    try:
        ready = _read_ready_line(process)
        assert ready.startswith("READY http://127.0.0.1:") and ready.endswith("/mcp"), ready
        yield process, ready.split(" ", 1)[1]
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _stop(process: subprocess.Popen[str]) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=10)
    return code, time.monotonic() - started


async def test_serves_the_calculator_over_http_and_stops_on_sigterm() -> None:
    with running_server(CALCULATOR_MCP) as (process, url):
        async with Client(url) as client:
            names = sorted(tool.name for tool in await client.list_tools())
            result = await client.call_tool("multiply", {"first_val": 12, "second_val": 8})
        assert names == ["add", "multiply"]
        assert result.data == 96.0 and not result.is_error

        status, body = _get(url.removesuffix("/mcp") + HEALTH_PATH)
        assert status == 200 and json.loads(body) == {"status": "healthy"}
        assert _get(url.removesuffix("/mcp") + "/nope")[0] == 404

        code, seconds = _stop(process)
        assert code == 0
        assert seconds < 5


async def test_adds_health_and_writes_the_ready_file(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready" / "url"
    ready_file.parent.mkdir()
    with running_server(REPOS / "second_tools" / "mcp", "--ready-file", str(ready_file)) as (
        process,
        url,
    ):
        assert ready_file.read_text() == url + "\n"
        status, body = _get(url.removesuffix("/mcp") + HEALTH_PATH)
        assert status == 200 and json.loads(body) == {"status": "healthy"}
        async with Client(url) as client:
            shouted = await client.call_tool("shout", {"text": "hi"})
        assert shouted.data == "HI"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_a_repo_that_cannot_load_exits_1_with_the_reason() -> None:
    done = subprocess.run(
        _command(REPOS / "no_server" / "mcp"),
        capture_output=True, text=True, env=_server_env(), cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: No FastMCP instance found in ")


def test_health_route_is_added_once_and_the_repos_own_is_kept() -> None:
    def health_endpoints(mcp_dir: Path) -> list[str]:
        app = tool_http_app(load_mcp_server(mcp_dir))
        routes = [r for r in app.routes if isinstance(r, Route) and r.path == HEALTH_PATH]
        return [route.endpoint.__module__ for route in routes]

    assert health_endpoints(CALCULATOR_MCP) == ["server.mcp_server"]
    assert health_endpoints(REPOS / "second_tools" / "mcp") == [
        "rollout_operator.runtime.tool_server"
    ]


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [("127.0.0.1", 8080, "http://127.0.0.1:8080/mcp"), ("::1", 9, "http://[::1]:9/mcp")],
)
def test_endpoint_url(host: str, port: int, url: str) -> None:
    assert endpoint_url(host, port) == url


@pytest.mark.slow
async def test_tool_server_runs_under_fastmcp_2_12() -> None:
    """A pod may run the repo's pinned fastmcp 2.12.x; our 4.x client talks to it."""
    from tests.unit.test_repo_loader import old_fastmcp_python

    python = old_fastmcp_python()  # holds fastmcp 2.12.4 and no rollout_operator
    env = {**_server_env(), "PYTHONWARNINGS": "ignore"}
    env.pop("VIRTUAL_ENV", None)
    with running_server(CALCULATOR_MCP, python=str(python), env=env) as (process, url):
        async with Client(url) as client:
            result = await client.call_tool("multiply", {"first_val": 12, "second_val": 8})
        assert result.data == 96.0
        assert _get(url.removesuffix("/mcp") + HEALTH_PATH)[0] == 200
        assert _stop(process)[0] == 0
