"""`python -m rollout_operator.runtime.tool_server` in its own process, with either engine, for
tests and benchmarks of the tool server itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Self

import rollout_operator

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_TABLE_MCP = REPO_ROOT / "tests" / "fixtures" / "repos" / "tool_table" / "mcp"
CALCULATOR_MCP = REPO_ROOT / "examples" / "calculator" / "mcp"


def server_env() -> dict[str, str]:
    """This environment with the runtime importable, whether or not it is installed."""
    operator_dir = Path(rollout_operator.__path__[0]).parent
    pythonpath = os.pathsep.join(filter(None, [str(operator_dir), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


class ToolServerProcess:
    """Serve `mcp_dir` with `engine` on a free loopback port; stderr goes to `log_path`."""

    def __init__(self, mcp_dir: Path, engine: str, log_path: Path, timeout: float = 30.0) -> None:
        self.mcp_dir = mcp_dir
        self.engine = engine
        self.log_path = log_path
        self.timeout = timeout
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def base_url(self) -> str:
        return self.url.removesuffix("/mcp")

    def start(self) -> Self:
        """Start the server and wait for its `READY <url>` line."""
        command = [
            sys.executable, "-m", "rollout_operator.runtime.tool_server",
            "--mcp", str(self.mcp_dir), "--port", "0", "--engine", self.engine,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=server_env(),
                cwd=REPO_ROOT,
            )  # fmt: skip
        stdout = self.process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not line or not line[0].startswith("READY "):
            self.stop()
            log_text = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"the {self.engine} tool server did not start:\n{log_text}")
        self.url = line[0].split(" ", 1)[1].strip()
        return self

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
