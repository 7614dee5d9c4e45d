"""The tool table server (tests/fixtures/tool_table_server.py) in its own process, for tests and
benchmarks of the HTTP tool providers: one port answers with SSE streams, one with JSON bodies."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.loopback import HOST, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO_ROOT / "tests" / "fixtures" / "tool_table_server.py"


class ToolTableProcess:
    """Start, stop and start again on the same two ports; stderr goes to `log_path`."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.json_port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/mcp"

    @property
    def json_url(self) -> str:
        return f"http://{HOST}:{self.json_port}/mcp"

    def start(self) -> None:
        """Start the server and wait until both ports answer /health (30 s at most)."""
        command = [sys.executable, str(SERVER_SCRIPT), str(self.port)]
        # A file, not a pipe: tracebacks of failing tools must never fill a buffer and stall it.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*command, "--json-port", str(self.json_port)],
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        pending = {self.port, self.json_port}
        while pending:
            if self.process.poll() is not None:
                output = self.log_path.read_text(errors="replace")
                raise RuntimeError(f"tool table server exited early:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tool table server did not answer /health within 30 s")
            for port in list(pending):
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1):
                        pending.discard(port)
                except OSError:
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
