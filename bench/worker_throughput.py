"""Throughput of one rollout worker (`rolloutctl work`) as the operator runs it.

The worker is `run_shard`, the body of `rolloutctl work`, in this process: it streams the shard's
items from a dataset in object storage (`file://`), runs them with the pool, calls the tools of
a separate `rolloutctl serve-tools` process over streamable HTTP (the default lean engine; the
worker's HttpTools finds at `list_tools` that it speaks the stateless MCP revision, so each tool
call is one POST), scores them and commits the records in parts to `file://` storage. The model
is the scripted OpenAI-compatible server in its own process, with a fixed latency.

Efficiency is achieved model calls/s over the ideal `concurrency / latency` (each slot always
waiting on the model). Each calculator rollout makes two model calls and one tool call.

Run: `.venv/bin/python bench/worker_throughput.py [--quick]`; results go to
bench/results/worker_throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from bench._machine import cpu_model, process_cpu_s  # noqa: E402
from tests.support.scripted_model import start_process  # noqa: E402

from rollout_operator.api.spec import RolloutRunSpec  # noqa: E402
from rollout_operator.cli.pod_work import run_shard  # noqa: E402
from rollout_operator.runtime.run_config import RunConfig  # noqa: E402
from rollout_operator.runtime.run_layout import run_prefix  # noqa: E402
from rollout_operator.runtime.shards import ReadStats, read_all_records  # noqa: E402
from rollout_operator.runtime.storage import open_store  # noqa: E402

EXAMPLE = ROOT / "examples" / "calculator"
REWARD = "reward_fn.compute_reward:numbers_match_reward"
UID = "0b0e5c11-0000-4000-8000-000000000000"


@dataclass
class Result:
    concurrency: int
    latency_ms: float
    rollouts: int
    seconds: float
    worker_cpu_s: float
    tool_cpu_s: float
    model_calls: int
    tool_calls: int
    parts: int

    @property
    def efficiency(self) -> float:
        ideal = self.concurrency / (self.latency_ms / 1000)
        return (self.model_calls / self.seconds) / ideal


def write_dataset(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            a, b = 2 + i % 97, 3 + i % 89
            handle.write(json.dumps({
                "system_prompt": "You are a calculator assistant. Use the tools, answer with ####.",
                "user_prompt": f"What is {a} * {b}?",
                "ground_truth": str(a * b),
            }) + "\n")


def start_tool_server() -> tuple[subprocess.Popen[str], str]:
    """`rolloutctl serve-tools` for the calculator example, on a free loopback port."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
           "ROLLOUT_TERMINATION_MESSAGE_PATH": os.devnull, "ROLLOUT_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout_operator.cli.main", "serve-tools",
         "--repo", str(EXAMPLE), "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if line[:1] != ["READY"]:
        process.kill()
        raise RuntimeError(f"serve-tools did not start: {line}")
    return process, line[1]


def config_for(output: Path, dataset: Path, model_url: str, tool_url: str,
               concurrency: int, rows: int, name: str) -> RunConfig:
    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://git.example.com/team/calculator.git"},
        "dataset": {"url": dataset.as_uri(), "limit": rows},
        "model": {"name": "openai/scripted", "baseURL": model_url},
        "scoring": {"functions": [REWARD]},
        "workers": {"shards": 1, "concurrency": concurrency},
    })
    return RunConfig(
        spec=spec, namespace="bench", name=name, uid=UID,
        run_prefix=run_prefix(output.as_uri(), "bench", name, UID),
        repo_dir=str(EXAMPLE), tool_url=tool_url,
    )


async def measure(output: Path, dataset: Path, model_url: str, tool: subprocess.Popen[str],
                  tool_url: str, latency_ms: float, concurrency: int, rows: int) -> Result:
    # Warm up the tool server, the model server and this process's code paths first.
    warm = config_for(output, dataset, model_url, tool_url, concurrency, concurrency, "warm")
    await run_shard(warm, 0, environ={})
    config = config_for(output, dataset, model_url, tool_url, concurrency, rows, "measured")
    tool0, cpu0, t0 = process_cpu_s(tool.pid), time.process_time(), time.perf_counter()
    result = await run_shard(config, 0, environ={})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tool_cpu = process_cpu_s(tool.pid) - tool0
    stats = ReadStats()
    model_calls = tool_calls = 0
    async for record in read_all_records(open_store(config.run_prefix), "", stats=stats):
        assert record.status == "completed" and record.reward == 1.0, record.error
        model_calls += record.usage.num_llm_calls
        tool_calls += record.usage.num_tool_calls
    assert result.done == rows == stats.records, (result, stats)
    return Result(concurrency, latency_ms, rows, seconds, cpu, tool_cpu, model_calls,
                  tool_calls, stats.parts)


PLAN: tuple[tuple[int, int], ...] = ((32, 640), (64, 1280), (256, 5120))
"""(concurrency, rollouts) at the chosen latency; 256 is the target case."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rollouts, no report")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = []
    model, model_url = start_process(args.latency_ms)
    tool, tool_url = start_tool_server()
    try:
        for concurrency, rows in PLAN:
            rows = rows // 4 if args.quick else rows
            with tempfile.TemporaryDirectory(prefix="worker-bench-") as scratch:
                dataset = Path(scratch) / "rows.jsonl"
                write_dataset(dataset, rows)
                result = asyncio.run(measure(Path(scratch) / "out", dataset, model_url, tool,
                                             tool_url, args.latency_ms, concurrency, rows))
            results.append(result)
            print(f"c={result.concurrency} latency={result.latency_ms:.0f} ms: "
                  f"{result.rollouts / result.seconds:.0f} rollouts/s, "
                  f"{result.model_calls / result.seconds:.0f} model calls/s, efficiency "
                  f"{result.efficiency:.2f}; worker {result.worker_cpu_s / result.seconds:.2f} "
                  f"cores ({result.worker_cpu_s / result.rollouts * 1000:.2f} ms/rollout), "
                  f"tool server {result.tool_cpu_s / result.seconds:.2f} cores "
                  f"({result.tool_cpu_s / result.rollouts * 1000:.2f} ms/rollout)", flush=True)
    finally:
        tool.terminate()
        model.terminate()
        tool.wait()
        model.wait()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.quick:
        write_report(results, rss_mb, load)


def write_report(results: list[Result], rss_mb: float, load: float) -> None:
    import fastmcp

    lines = [
        "# Worker throughput (`rolloutctl work`)",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"fastmcp {fastmcp.__version__}",
        "- worker: `run_shard` (the body of `rolloutctl work`) on one event loop, one shard; "
        "dataset read from `file://` storage, records committed in parts to `file://` storage",
        "- rollout: calculator task, 2 model calls + 1 tool call + `####` reward; tools from "
        "one separate `rolloutctl serve-tools` process (lean engine) over streamable HTTP, "
        "each tool call one POST at the stateless MCP revision (no session to open or end); "
        "model: the scripted server in its own process",
        f"- peak RSS of the worker process: {rss_mb:.0f} MB; load average when the run "
        f"started: {load:.2f} (1 min; other work on the machine shares its 2 cores)",
        "",
        "| concurrency | latency | rollouts | seconds | rollouts/s | model calls/s | "
        "efficiency | worker CPU (cores) | worker CPU ms / rollout | tool server CPU (cores) "
        "| tool server CPU ms / rollout |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.concurrency} | {r.latency_ms:.0f} ms | {r.rollouts} | {r.seconds:.1f} | "
            f"{r.rollouts / r.seconds:.0f} | {r.model_calls / r.seconds:.0f} | "
            f"**{r.efficiency:.2f}** | {r.worker_cpu_s / r.seconds:.2f} | "
            f"{r.worker_cpu_s / r.rollouts * 1000:.2f} | {r.tool_cpu_s / r.seconds:.2f} | "
            f"{r.tool_cpu_s / r.rollouts * 1000:.2f} |"
        )
    target = results[-1]
    worker_ms = target.worker_cpu_s / target.rollouts * 1000
    tool_ms = target.tool_cpu_s / target.rollouts * 1000
    ideal_rollouts = target.concurrency / (target.latency_ms / 1000) / 2
    bound = "the worker" if worker_ms >= tool_ms else "the tool server"
    lines += [
        "",
        "Efficiency = achieved model calls/s over concurrency / latency. Target: >= 0.8 at "
        "concurrency 256 and 200 ms on one worker core.",
        "",
        f"At concurrency {target.concurrency} the ideal is {ideal_rollouts:.0f} rollouts/s. "
        f"The worker spends {worker_ms:.2f} ms of CPU per rollout, so one worker core could "
        f"drive about {1000 / worker_ms:.0f} rollouts/s (efficiency "
        f"{min(1.0, 1000 / worker_ms / ideal_rollouts):.2f}); the tool server spends "
        f"{tool_ms:.2f} ms per rollout, so one tool server process could serve about "
        f"{1000 / tool_ms:.0f} rollouts/s ({ideal_rollouts * tool_ms / 1000:.2f} cores at the "
        f"ideal rate). Of the two, {bound} would saturate first. On this 2-core machine the "
        "worker, the tool server and the model server share the cores (with whatever else "
        "runs), so wall-clock rates here also depend on that sharing.",
    ]
    out = ROOT / "bench" / "results" / "worker_throughput.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
