"""Rollout throughput of the local runtime against a scripted OpenAI-compatible server.

Each rollout is the calculator task: two model calls and one tool call, scored by the example's
`####` reward. The model server runs in its own process, so the figures are the runtime's own
cost on one core. Two measurements:

- rollouts/s at 0 ms model latency (CPU-bound: the runtime's overhead per rollout);
- efficiency at 200 ms latency: achieved model calls/s over the ideal concurrency / latency.

Run: `.venv/bin/python bench/rollout_throughput.py [--quick]`; results go to
bench/results/rollout_throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._machine import cpu_model  # noqa: E402
from tests.support.scripted_model import start_process  # noqa: E402

from rollout_operator.runtime.agent_loop import AgentConfig  # noqa: E402
from rollout_operator.runtime.dataset import DatasetRow  # noqa: E402
from rollout_operator.runtime.models import make_chat_model  # noqa: E402
from rollout_operator.runtime.pool import run_pool  # noqa: E402
from rollout_operator.runtime.repo_loader import load_mcp_server  # noqa: E402
from rollout_operator.runtime.rollout import RolloutRunner, WorkItem  # noqa: E402
from rollout_operator.runtime.scoring import load_scorers  # noqa: E402
from rollout_operator.runtime.tools import make_tool_provider  # noqa: E402

EXAMPLE = ROOT / "examples" / "calculator"
REWARD = "reward_fn.compute_reward:numbers_match_reward"


@dataclass
class Result:
    label: str
    concurrency: int
    latency_ms: float
    rollouts: int
    seconds: float
    cpu_s: float
    model_calls: int

    @property
    def rate(self) -> float:
        return self.rollouts / self.seconds

    @property
    def efficiency(self) -> float | None:
        if not self.latency_ms:
            return None
        ideal = self.concurrency / (self.latency_ms / 1000)
        return (self.model_calls / self.seconds) / ideal


def rows(n: int) -> list[DatasetRow]:
    made = []
    for i in range(n):
        a, b = 2 + i % 97, 3 + i % 89
        made.append(DatasetRow(
            row_index=i,
            system_prompt="You are a calculator assistant. Use the tools, answer with ####.",
            user_prompt=f"What is {a} * {b}?",
            ground_truth=str(a * b),
            extra={},
        ))
    return made


async def measure(label: str, base_url: str, latency_ms: float, concurrency: int,
                  count: int) -> Result:
    server = load_mcp_server(EXAMPLE / "mcp")
    tools = make_tool_provider(server)
    chat = make_chat_model("scripted", base_url=base_url)
    scorers = load_scorers(EXAMPLE, [REWARD])
    runner = RolloutRunner(chat, tools, await tools.list_tools(), scorers, AgentConfig())
    items = [WorkItem(f"b-{r.row_index}", r) for r in rows(count)]
    # warm up connections and code paths
    async for _ in run_pool(items[: concurrency], runner.run, concurrency):
        pass
    cpu0, t0 = time.process_time(), time.perf_counter()
    done = calls = 0
    async for record in run_pool(items, runner.run, concurrency):
        assert record.status == "completed" and record.reward == 1.0, record.error
        done += 1
        calls += record.usage.num_llm_calls
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await chat.aclose()
    await tools.aclose()
    return Result(label, concurrency, latency_ms, done, seconds, cpu, calls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rollouts (smoke run)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    plan = [
        ("0 ms latency", 0.0, 64, int(4000 * scale)),
        ("200 ms latency", 200.0, 64, int(1280 * scale)),
        ("200 ms latency", 200.0, 256, int(3840 * scale)),
    ]
    results = []
    for label, latency, concurrency, count in plan:
        proc, base_url = start_process(latency)
        try:
            results.append(asyncio.run(measure(label, base_url, latency, concurrency, count)))
        finally:
            proc.terminate()
            proc.wait()
        r = results[-1]
        eff = "" if r.efficiency is None else f", efficiency {r.efficiency:.2f}"
        print(f"{r.label} c={r.concurrency}: {r.rate:.0f} rollouts/s, "
              f"{r.cpu_s / r.rollouts * 1000:.2f} ms CPU/rollout{eff}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(results, rss_mb)


def write_report(results: list[Result], rss_mb: float) -> None:
    import fastmcp

    lines = [
        "# Rollout throughput (local runtime)",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"fastmcp {fastmcp.__version__}",
        "- rollout: calculator task, 2 model calls + 1 tool call + `####` reward; model server "
        "in a separate process; runtime on one event loop (one core)",
        f"- peak RSS of the benchmark process: {rss_mb:.0f} MB",
        "",
        "| case | concurrency | rollouts | rollouts/s | CPU ms / rollout | efficiency |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        eff = "—" if r.efficiency is None else f"{r.efficiency:.2f}"
        lines.append(f"| {r.label} | {r.concurrency} | {r.rollouts} | {r.rate:.0f} | "
                     f"{r.cpu_s / r.rollouts * 1000:.2f} | {eff} |")
    lines += [
        "",
        "Reference (same kind of machine): the Osmosis SDK 0.2.17 `eval --mcp` runner does "
        "45-70 rollouts/s at 0 ms and reaches efficiency 0.36 at batch 64 with 200 ms latency "
        "(waves). Targets: >= 300 rollouts/s at 0 ms; efficiency >= 0.9 at 64 and >= 0.8 at 256.",
    ]
    out = ROOT / "bench" / "results" / "rollout_throughput.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
