"""Tool-call latency and client CPU of each tool provider.

Every call is `multiply(12, 8)` on the tool table server (tests/fixtures/tool_table_server.py),
one call in flight. The HTTP server runs in its own process, so `time.process_time()` in this
process is the client's CPU alone; in-process and in-memory calls run the server's code in this
process too, so there client CPU includes the server's work. Modes:

- InProcessTools: the loaded server's `call_tool`, no MCP framing;
- FastMCPClientTools in memory: `fastmcp.Client(server)`, one session kept;
- FastMCPClientTools over HTTP and HttpTools (SSE and JSON answers), one session kept;
- a new MCP session per call for both HTTP clients (handshake, call, session end).

Run: `.venv/bin/python bench/tool_calls.py [--calls N] [--quick]`; results go to
bench/results/tool_calls.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model, process_cpu_s  # noqa: E402
from tests.fixtures.tool_table_server import build_server  # noqa: E402
from tests.support.tool_table import ToolTableProcess  # noqa: E402

from rollout_operator.runtime.interfaces import ToolOutput, ToolProvider  # noqa: E402
from rollout_operator.runtime.tools import (  # noqa: E402
    FastMCPClientTools,
    HttpTools,
    InProcessTools,
)

ARGUMENTS = {"first_val": 12, "second_val": 8}
WARM_UP = 50


@dataclass
class Measure:
    mode: str
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu_ms: float
    server_cpu_ms: float | None


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


Call = Callable[[], Awaitable[ToolOutput]]


async def measure(mode: str, call: Call, calls: int, server_pid: int | None) -> Measure:
    for _ in range(WARM_UP):
        output = await call()
        assert output.content == "96.0", output
    latencies: list[float] = []
    gc.collect()
    server0 = process_cpu_s(server_pid) if server_pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        start = time.perf_counter()
        output = await call()
        latencies.append((time.perf_counter() - start) * 1000)
        assert output.content == "96.0", output
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server = process_cpu_s(server_pid) - server0 if server_pid else None
    latencies.sort()
    result = Measure(
        mode,
        calls,
        statistics.median(latencies),
        percentile(latencies, 0.99),
        wall * 1000 / calls,
        cpu * 1000 / calls,
        server * 1000 / calls if server is not None else None,
    )
    print(f"{mode:46} p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
          f"client CPU {result.cpu_ms:5.2f} ms/call", flush=True)
    return result


async def kept_session(mode: str, tools: ToolProvider, calls: int, pid: int | None) -> Measure:
    try:
        async with tools.session() as session:
            return await measure(
                mode, lambda: session.call("multiply", ARGUMENTS, None), calls, pid
            )
    finally:
        await tools.aclose()


async def session_per_call(mode: str, tools: ToolProvider, calls: int, pid: int) -> Measure:
    async def call() -> ToolOutput:
        async with tools.session() as session:
            return await session.call("multiply", ARGUMENTS, None)

    try:
        return await measure(mode, call, calls, pid)
    finally:
        await tools.aclose()


async def run(calls: int, session_calls: int) -> list[Measure]:
    with tempfile.TemporaryDirectory() as logs:
        server = ToolTableProcess(Path(logs) / "server.log")
        server.start()
        assert server.process is not None
        url, json_url, pid = server.url, server.json_url, server.process.pid
        try:
            return [
                await kept_session("InProcessTools", InProcessTools(build_server()), calls, None),
                await kept_session(
                    "FastMCPClientTools, in memory", FastMCPClientTools(build_server()), calls,
                    None,
                ),
                await kept_session("FastMCPClientTools, HTTP, kept session",
                                   FastMCPClientTools(url), calls, pid),
                await kept_session("HttpTools, HTTP (SSE answers), kept session",
                                   HttpTools(url), calls, pid),
                await kept_session("HttpTools, HTTP (JSON answers), kept session",
                                   HttpTools(json_url), calls, pid),
                await session_per_call("FastMCPClientTools, HTTP, new session per call",
                                       FastMCPClientTools(url), session_calls, pid),
                await session_per_call("HttpTools, HTTP (SSE answers), new session per call",
                                       HttpTools(url), session_calls, pid),
            ]
        finally:
            server.stop()


def report(results: list[Measure], load: float) -> str:
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("fastmcp", "mcp", "aiohttp")
    )
    lines = [
        "# Tool-call latency and client CPU per provider",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; {versions}",
        f"- load average when the run started: {load:.2f} (1 min)",
        f"- one call in flight, `multiply(12, 8)`, after {WARM_UP} warm-up calls; the HTTP server"
        " (FastMCP streamable HTTP, uvicorn) runs in its own process on 127.0.0.1",
        "",
        "| provider / mode | calls | p50 ms | p99 ms | client CPU ms/call | server CPU ms/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        server = f"{r.server_cpu_ms:.2f}" if r.server_cpu_ms is not None else "(in client)"
        lines.append(f"| {r.mode} | {r.calls} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.cpu_ms:.2f} | {server} |")
    by_mode = {r.mode: r for r in results}
    lean = by_mode["HttpTools, HTTP (SSE answers), kept session"]
    full = by_mode["FastMCPClientTools, HTTP, kept session"]
    js = by_mode["HttpTools, HTTP (JSON answers), kept session"]
    json_saving = (lean.server_cpu_ms or 0.0) - (js.server_cpu_ms or 0.0)
    local = by_mode["InProcessTools"]
    memory = by_mode["FastMCPClientTools, in memory"]
    lines += [
        "",
        "Client CPU is `time.process_time()` of the benchmark process over all calls of a mode;",
        "server CPU is the server process's user + system time from /proc. In-process and",
        "in-memory modes run the tool server's code in the client process, so their client CPU",
        "includes it.",
        "",
        f"HttpTools spends {full.cpu_ms / lean.cpu_ms:.1f}x less client CPU per call than "
        f"FastMCP's Client over HTTP; InProcessTools is {memory.p50_ms / local.p50_ms:.1f}x "
        "faster (p50) than FastMCP's in-memory Client.",
        "",
        "Server CPU depends on the protocol revision and answer format: FastMCP's Client",
        "negotiates the stateless 2026-07-28 revision, HttpTools the 2025-11-25 `initialize`",
        "handshake with a session. A server started with `json_response=True` answers with JSON",
        f"bodies instead of SSE streams and spends {json_saving:.2f} ms "
        "less server CPU per call here.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode (default 2000)")
    parser.add_argument("--session-calls", type=int, default=200,
                        help="calls in the new-session-per-call modes (default 200)")
    parser.add_argument("--quick", action="store_true", help="200/50 calls, no file")
    args = parser.parse_args()
    calls, session_calls = (200, 50) if args.quick else (args.calls, args.session_calls)
    logging.disable(logging.WARNING)
    load = os.getloadavg()[0]
    results = asyncio.run(run(calls, session_calls))
    text = report(results, load)
    print(text)
    if not args.quick:
        out = ROOT / "bench" / "results" / "tool_calls.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
