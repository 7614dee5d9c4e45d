"""Gateway CPU per proxied chat call.

Three processes: the scripted OpenAI-compatible model (lean server), the model gateway
(`python -m rollout_operator.gateway`, forwarding to the model) and this driver, which sends
the calculator conversation after one tool round (system, user, assistant tool call, tool result,
with the `multiply` tool) through the gateway with `LeanHttp`. The gateway's CPU is read from
/proc before and after, so the figure is only the gateway's work per call: reading the request,
checking bearer, fields and rollout, forcing the model, the upstream call, reading and accounting
the reply, answering. Calls run one after another and then 32 in flight, plain and with
`stream: true` (SSE); each figure is the median of three rounds.

Run: `.venv/bin/python bench/gateway_overhead.py [--calls N] [--quick]`; results go to
bench/results/gateway.md. Target: at most 0.3 ms of gateway CPU per proxied call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model, process_cpu_s  # noqa: E402
from tests.support.scripted_model import start_process  # noqa: E402

from rollout_operator.runtime.lean_http import LeanHttp  # noqa: E402

TARGET_MS = 0.3
CONCURRENCY = 32
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a calculator. Use the tools, then answer with ####."},
    {"role": "user", "content": "What is 12 * 17?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "multiply", "arguments": '{"first_val": 12, "second_val": 17}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "204.0"},
]
TOOLS = [{"type": "function", "function": {
    "name": "multiply", "description": "Calculate the product of two numbers",
    "parameters": {"type": "object", "properties": {
        "first_val": {"type": "number"}, "second_val": {"type": "number"}},
        "required": ["first_val", "second_val"]}}}]


def start_gateway(base_url: str, token: str, admin: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator"), "ROLLOUT_MODEL": "openai/scripted",
           "ROLLOUT_MODEL_BASE_URL": base_url, "ROLLOUT_MODEL_API_KEY": "sk-" + "x" * 24,
           "ROLLOUT_GATEWAY_TOKEN": token, "ROLLOUT_GATEWAY_ADMIN_TOKEN": admin}
    process = subprocess.Popen([sys.executable, "-m", "rollout_operator.gateway"], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if line[:1] != ["PORT"]:
        process.kill()
        raise RuntimeError(f"the gateway did not start: {line}")
    return process, f"http://127.0.0.1:{line[1]}"


async def _open(url: str, admin: str, rollout: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.put(
        f"{url}/v1/rollouts/{rollout}", headers={"Authorization": f"Bearer {admin}"}
    ) as reply:
        assert reply.status == 200, await reply.text()


async def _round(url: str, token: str, calls: int, in_flight: int, stream: bool,
                 pid: int) -> float:
    """Gateway CPU ms per call over `calls` calls with `in_flight` concurrent."""
    client = LeanHttp(f"{url}/v1/rollouts/bench", keep=in_flight,
                      headers={"Authorization": f"Bearer {token}"})
    body = json.dumps({"model": "agent-model", "messages": MESSAGES, "tools": TOOLS,
                       **({"stream": True} if stream else {})}).encode()
    # warm the connections
    await asyncio.gather(*(client.post("/chat/completions", body) for _ in range(in_flight)))
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status, data = await client.post("/chat/completions", body)
            assert status == 200 and (b"[DONE]" in data if stream else b"choices" in data), data

    before = process_cpu_s(pid)
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    used = process_cpu_s(pid) - before
    await client.close()
    return used * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="500 calls, results not written")
    args = parser.parse_args()
    calls = 500 if args.quick else args.calls
    token, admin = secrets.token_hex(16), secrets.token_hex(16)
    model, base_url = start_process(lean=True)
    gateway, url = start_gateway(base_url, token, admin)
    rows: list[tuple[str, int, float]] = []
    try:
        asyncio.run(_open(url, admin, "bench"))
        for stream in (False, True):
            for in_flight in (1, CONCURRENCY):
                figures = [asyncio.run(_round(url, token, calls, in_flight, stream, gateway.pid))
                           for _ in range(3)]
                rows.append(("SSE" if stream else "JSON", in_flight, statistics.median(figures)))
                print(f"{rows[-1][0]:5} in flight {in_flight:3}: {rows[-1][2]:.3f} ms CPU/call",
                      flush=True)
    finally:
        for process in (gateway, model):
            process.terminate()
            process.wait(timeout=10)
    if args.quick:
        return
    worst = max(row[2] for row in rows)
    lines = [
        "# Model gateway: CPU per proxied call", "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; {calls} calls per round, median of 3 rounds",
        "- the gateway, the scripted model (lean server) and the driver are separate processes; "
        "the figure is the gateway process's user + system CPU (from /proc) per call",
        "", "| answer | in flight | gateway CPU ms per call |", "|---|---:|---:|",
        *(f"| {kind} | {in_flight} | {ms:.3f} |" for kind, in_flight, ms in rows), "",
        f"Target: at most {TARGET_MS} ms per proxied call; worst case measured {worst:.3f} ms "
        f"({'within' if worst <= TARGET_MS else 'OVER'} the target). /proc counts CPU in "
        "clock ticks (10 ms), so each figure is good to about 10 ms / calls.",
    ]
    out = ROOT / "bench" / "results" / "gateway.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
