"""Client CPU per chat call: our two model clients beside the raw openai SDK and httpx.

The scripted OpenAI-compatible server runs in its own process, so `time.process_time()` in this
process counts only the client's work: building the request, HTTP, parsing the reply. Every call
sends the calculator conversation after one tool round (system, user, assistant tool call, tool
result) with the `multiply` tool, and gets the final answer back. Each client runs the calls one
after another, then with 64 in flight; each figure is the median of three rounds.

Run: `.venv/bin/python bench/model_calls.py [--calls N] [--quick]`; results go to
bench/results/model_calls.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._machine import cpu_model, process_cpu_s  # noqa: E402
from tests.support.scripted_model import start_process  # noqa: E402

from rollout_operator.runtime.models import (  # noqa: E402
    LiteLLMChat,
    OpenAIHttpChat,
    resolve_model,
)

MODEL = "scripted"
TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {
        "name": "multiply",
        "description": "Calculate the product of two numbers",
        "parameters": {
            "type": "object",
            "properties": {"first_val": {"type": "number"}, "second_val": {"type": "number"}},
            "required": ["first_val", "second_val"],
        },
    },
}]
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a calculator assistant. Use the provided tools to "
     "compute the answer, then respond with #### followed by the numeric result."},
    {"role": "user", "content": "What is 12 * 8?"},
    {"role": "assistant", "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "multiply", "arguments": '{"first_val": 12.0, "second_val": 8.0}'},
    }]},
    {"role": "tool", "content": "96.0", "tool_call_id": "call_1"},
]
CONCURRENCY = 64
ROUNDS = 3

Call = Callable[[], Awaitable[str]]


@dataclass
class Client:
    name: str
    call: Call
    close: Callable[[], Awaitable[None]]


async def make_clients(base_url: str) -> list[Client]:
    import httpx
    import openai

    lean = OpenAIHttpChat(base_url, MODEL)
    full = LiteLLMChat(resolve_model(MODEL, base_url), "EMPTY")
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    raw = httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": "Bearer EMPTY"},
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256), timeout=60,
    )

    async def call_lean() -> str:
        return str((await lean.chat(MESSAGES, TOOLS)).message.get("content"))

    async def call_litellm() -> str:
        return str((await full.chat(MESSAGES, TOOLS)).message.get("content"))

    async def call_sdk() -> str:
        reply = await sdk.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=TOOLS  # type: ignore[arg-type]
        )
        return str(reply.choices[0].message.content)

    async def call_httpx() -> str:
        response = await raw.post(
            "/chat/completions", json={"model": MODEL, "messages": MESSAGES, "tools": TOOLS}
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    async def nothing() -> None:
        return None

    return [
        Client("OpenAIHttpChat (ours, aiohttp)", call_lean, lean.aclose),
        Client("LiteLLMChat (ours, litellm)", call_litellm, full.aclose),
        Client("openai SDK (AsyncOpenAI, httpx)", call_sdk, sdk.close),
        Client("httpx (AsyncClient, json)", call_httpx, raw.aclose),
    ]


@dataclass
class Measure:
    client: str
    in_flight: int
    calls: int
    cpu_ms: float
    wall_ms: float
    server_cpu_ms: float

    @property
    def calls_per_s(self) -> float:
        return 1000.0 / self.wall_ms


async def measure(client: Client, calls: int, in_flight: int, server_pid: int) -> Measure:
    for _ in range(20):
        assert "#### 96" in await client.call()
    semaphore = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with semaphore:
            answer = await client.call()
        assert "#### 96" in answer, answer

    rounds = []
    for _ in range(ROUNDS):
        gc.collect()
        server0, cpu0, wall0 = process_cpu_s(server_pid), time.process_time(), time.perf_counter()
        if in_flight == 1:
            for _ in range(calls):
                await one()
        else:
            await asyncio.gather(*(one() for _ in range(calls)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server = process_cpu_s(server_pid) - server0
        rounds.append((cpu * 1000 / calls, wall * 1000 / calls, server * 1000 / calls))
    cpu_ms, wall_ms, server_ms = (statistics.median(r[i] for r in rounds) for i in range(3))
    return Measure(client.name, in_flight, calls, cpu_ms, wall_ms, server_ms)


async def run(calls: int) -> list[Measure]:
    server, base_url = start_process()
    try:
        clients = await make_clients(base_url)
        results = []
        for client in clients:
            for in_flight in (1, CONCURRENCY):
                result = await measure(client, calls, in_flight, server.pid)
                print(f"{result.client:34} in flight {in_flight:3}: "
                      f"{result.cpu_ms:6.2f} ms CPU/call {result.calls_per_s:7.0f} calls/s",
                      flush=True)
                results.append(result)
            await client.close()
        return results
    finally:
        server.terminate()
        server.wait(10)


def report(results: list[Measure], calls: int, load: float) -> str:
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("litellm", "openai", "httpx", "aiohttp")
    )
    lines = [
        "# Model client CPU per call",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; {versions}",
        f"- {calls} calls per round, median of {ROUNDS} rounds, after 20 warm-up calls; the "
        "scripted server runs in its own process with no added latency",
        f"- load average when the run started: {load:.2f} (1 min)",
        "- request: the calculator conversation after one tool round, with the `multiply` tool",
        "",
        "| client | in flight | client CPU ms/call | calls/s | server CPU ms/call |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.client} | {r.in_flight} | {r.cpu_ms:.2f} | {r.calls_per_s:.0f} | "
                     f"{r.server_cpu_ms:.2f} |")
    lean = {r.in_flight: r.cpu_ms for r in results if r.client.startswith("OpenAIHttpChat")}
    full = {r.in_flight: r.cpu_ms for r in results if r.client.startswith("LiteLLMChat")}
    lines += [
        "",
        "Client CPU is `time.process_time()` of the benchmark process over the round; calls/s is",
        "wall-clock throughput and on 2 shared cores is bounded by both processes together.",
        "",
        f"OpenAIHttpChat spends {full[1] / lean[1]:.0f}x less client CPU than LiteLLMChat "
        f"sequentially and {full[CONCURRENCY] / lean[CONCURRENCY]:.0f}x less with "
        f"{CONCURRENCY} in flight.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=500, help="calls per round (default 500)")
    parser.add_argument("--quick", action="store_true", help="100 calls per round, no file")
    args = parser.parse_args()
    calls = 100 if args.quick else args.calls
    load = os.getloadavg()[0]
    results = asyncio.run(run(calls))
    text = report(results, calls, load)
    print(text)
    if not args.quick:
        out = ROOT / "bench" / "results" / "model_calls.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
