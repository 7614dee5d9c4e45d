"""Throughput of one rollout worker (`rolloutctl work`) as the operator runs it.

The worker is `run_shard`, the body of `rolloutctl work`, in this process: it streams the shard's
items from a dataset in object storage (`file://`), runs them with the pool, calls the tools of
a separate `rolloutctl serve-tools` process over streamable HTTP (the default lean engine; the
worker's HttpTools finds at `list_tools` that it speaks the stateless MCP revision, so each tool
call is one POST), scores them and commits the records in parts to `file://` storage. The model
is the scripted OpenAI-compatible server in its own process, with a fixed latency, served by its
lean HTTP server (`--aiohttp-model` for aiohttp's, which costs the machine about twice the CPU
per call).

Efficiency is achieved model calls/s over the ideal `concurrency / latency` (each slot always
waiting on the model). Each calculator rollout makes two model calls and one tool call.

The target is per worker core, so by default this process (the worker, all its threads) is pinned
to one CPU and the tool server and the model server, which stand in for other machines, to the
others (`--no-pin` leaves placement to the scheduler). The machine may be shared: each run records
the load average when it started and the CPU time other processes took while it ran, and every
case runs `--repeat` times, interleaved; the report shows the run with the median efficiency and
the range.

Run: `.venv/bin/python bench/worker_throughput.py [--quick] [--repeat N] [--no-pin]
[--aiohttp-model]`; results go to bench/results/worker_throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
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
    model_cpu_s: float
    other_cpu_s: float
    load: float
    model_calls: int
    tool_calls: int
    parts: int
    model_call_ms: float
    tool_call_ms: float
    scoring_ms: float

    @property
    def efficiency(self) -> float:
        ideal = self.concurrency / (self.latency_ms / 1000)
        return (self.model_calls / self.seconds) / ideal

    def cores(self, cpu_s: float) -> float:
        return cpu_s / self.seconds

    def ms_per_rollout(self, cpu_s: float) -> float:
        return cpu_s / self.rollouts * 1000


def machine_busy_s() -> float:
    """CPU seconds all CPUs have spent not idle since boot, from /proc/stat (0 without it)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process `pid` to `cpus`; threads it starts later inherit that."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cpus)


def placement(pin_worker: bool) -> tuple[set[int], set[int]] | None:
    """(worker CPUs, server CPUs) when pinning is asked for and possible, else None."""
    if not pin_worker or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


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


async def measure(output: Path, dataset: Path, model_url: str, model: subprocess.Popen[str],
                  tool: subprocess.Popen[str], tool_url: str, latency_ms: float,
                  concurrency: int, rows: int) -> Result:
    # Warm up the tool server, the model server and this process's code paths first.
    warm = config_for(output, dataset, model_url, tool_url, concurrency, concurrency, "warm")
    await run_shard(warm, 0, environ={})
    config = config_for(output, dataset, model_url, tool_url, concurrency, rows, "measured")
    load = os.getloadavg()[0]
    busy0, tool0, model0 = machine_busy_s(), process_cpu_s(tool.pid), process_cpu_s(model.pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = await run_shard(config, 0, environ={})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tool_cpu = process_cpu_s(tool.pid) - tool0
    model_cpu = process_cpu_s(model.pid) - model0
    other_cpu = max(0.0, machine_busy_s() - busy0 - cpu - tool_cpu - model_cpu)
    stats = ReadStats()
    model_calls = tool_calls = 0
    llm_ms = tool_ms = scoring_ms = 0.0
    async for record in read_all_records(open_store(config.run_prefix), "", stats=stats):
        assert record.status == "completed" and record.reward == 1.0, record.error
        model_calls += record.usage.num_llm_calls
        tool_calls += record.usage.num_tool_calls
        llm_ms += record.timing.llm_ms
        tool_ms += record.timing.tool_ms
        scoring_ms += record.timing.scoring_ms or 0.0
    assert result.done == rows == stats.records, (result, stats)
    return Result(concurrency, latency_ms, rows, seconds, cpu, tool_cpu, model_cpu, other_cpu,
                  load, model_calls, tool_calls, stats.parts, llm_ms / model_calls,
                  tool_ms / tool_calls, scoring_ms / rows)


PLAN: tuple[tuple[int, int], ...] = ((32, 640), (64, 1280), (256, 5120))
"""(concurrency, rollouts) at the chosen latency; 256 is the target case."""


def median_run(runs: list[Result]) -> Result:
    """The run with the median efficiency (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r.efficiency)
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rollouts, no report")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave the worker and the servers where the scheduler puts them")
    parser.add_argument("--aiohttp-model", dest="lean_model", action="store_false",
                        help="serve the scripted model with aiohttp instead of its lean server")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    cpus = placement(args.pin)
    if cpus is not None:
        pin(os.getpid(), cpus[0])
    runs: dict[int, list[Result]] = {concurrency: [] for concurrency, _ in PLAN}
    model, model_url = start_process(args.latency_ms, lean=args.lean_model)
    tool, tool_url = start_tool_server()
    if cpus is not None:
        pin(model.pid, cpus[1])
        pin(tool.pid, cpus[1])
    try:
        for _ in range(max(1, args.repeat)):
            for concurrency, rows in PLAN:
                rows = rows // 4 if args.quick else rows
                with tempfile.TemporaryDirectory(prefix="worker-bench-") as scratch:
                    dataset = Path(scratch) / "rows.jsonl"
                    write_dataset(dataset, rows)
                    result = asyncio.run(measure(
                        Path(scratch) / "out", dataset, model_url, model, tool, tool_url,
                        args.latency_ms, concurrency, rows,
                    ))
                runs[concurrency].append(result)
                print(describe(result), flush=True)
    finally:
        tool.terminate()
        model.terminate()
        tool.wait()
        model.wait()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not args.quick:
        write_report(list(runs.values()), rss_mb, load, cpus, args.lean_model)


def describe(r: Result) -> str:
    return (
        f"c={r.concurrency} latency={r.latency_ms:.0f} ms: {r.rollouts / r.seconds:.0f} "
        f"rollouts/s, {r.model_calls / r.seconds:.0f} model calls/s, efficiency "
        f"{r.efficiency:.2f}; worker {r.cores(r.worker_cpu_s):.2f} cores "
        f"({r.ms_per_rollout(r.worker_cpu_s):.2f} ms/rollout), tool server "
        f"{r.cores(r.tool_cpu_s):.2f} cores, model server {r.cores(r.model_cpu_s):.2f} cores, "
        f"other processes {r.cores(r.other_cpu_s):.2f} cores (load {r.load:.2f}); model call "
        f"{r.model_call_ms:.0f} ms, tool call {r.tool_call_ms:.1f} ms, scoring "
        f"{r.scoring_ms:.1f} ms"
    )


def _layout(cpus: tuple[set[int], set[int]] | None) -> str:
    if cpus is None:
        return ("not pinned: the worker, the tool server and the model server share the "
                "machine's CPUs as the scheduler places them")
    return (f"the worker (all its threads) pinned to CPU {_cpu_list(cpus[0])}; the tool server "
            f"and the model server pinned to CPU {_cpu_list(cpus[1])}")


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def write_report(cases: list[list[Result]], rss_mb: float, load: float,
                 cpus: tuple[set[int], set[int]] | None, lean_model: bool) -> None:
    import fastmcp

    repeats = len(cases[0])
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
        "model: the scripted server in its own process, served by "
        + ("its lean HTTP server (`--lean`)" if lean_model else "aiohttp"),
        f"- placement: {_layout(cpus)}",
        f"- runs: each case {repeats} times, interleaved; the table shows the run with the "
        "median efficiency, and the range over all runs",
        f"- peak RSS of the worker process: {rss_mb:.0f} MB; load average when the benchmark "
        f"started: {load:.2f} (1 min; other work on the machine shares its cores)",
        "",
        "| concurrency | latency | rollouts | seconds | rollouts/s | model calls/s | "
        "efficiency | range | worker CPU (cores) | worker CPU ms / rollout | tool server CPU "
        "(cores) | tool server CPU ms / rollout | model server CPU (cores) | other processes' "
        "CPU (cores) | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in cases:
        r = median_run(runs)
        low = min(x.efficiency for x in runs)
        high = max(x.efficiency for x in runs)
        lines.append(
            f"| {r.concurrency} | {r.latency_ms:.0f} ms | {r.rollouts} | {r.seconds:.1f} | "
            f"{r.rollouts / r.seconds:.0f} | {r.model_calls / r.seconds:.0f} | "
            f"**{r.efficiency:.2f}** | {low:.2f}-{high:.2f} | {r.cores(r.worker_cpu_s):.2f} | "
            f"{r.ms_per_rollout(r.worker_cpu_s):.2f} | {r.cores(r.tool_cpu_s):.2f} | "
            f"{r.ms_per_rollout(r.tool_cpu_s):.2f} | {r.cores(r.model_cpu_s):.2f} | "
            f"{r.cores(r.other_cpu_s):.2f} | {r.load:.2f} |"
        )
    lines += [
        "",
        "Where a slot's time goes per rollout, in ms (the median runs): the model calls' "
        "latency, what the model calls took beyond it, the tool call as the worker sees it, "
        "scoring, and the rest (start-up, the drain at the end, the worker's own turns). Slot "
        "ms is concurrency over rollouts/s.",
        "",
        "| concurrency | slot ms per rollout | model latency | model calls beyond it | tool call "
        "| scoring | rest |",
        "|---|---|---|---|---|---|---|",
    ]
    for runs in cases:
        r = median_run(runs)
        slot_ms = r.concurrency / (r.rollouts / r.seconds) * 1000
        calls, tools = r.model_calls / r.rollouts, r.tool_calls / r.rollouts
        beyond = calls * (r.model_call_ms - r.latency_ms)
        tool = tools * r.tool_call_ms
        rest = slot_ms - calls * r.latency_ms - beyond - tool - r.scoring_ms
        lines.append(
            f"| {r.concurrency} | {slot_ms:.0f} | {calls * r.latency_ms:.0f} | {beyond:.1f} | "
            f"{tool:.1f} | {r.scoring_ms:.1f} | {rest:.1f} |"
        )
    target = median_run(cases[-1])
    worker_ms = target.ms_per_rollout(target.worker_cpu_s)
    tool_ms = target.ms_per_rollout(target.tool_cpu_s)
    model_ms = target.model_cpu_s / target.model_calls * 1000
    ideal_rollouts = target.concurrency / (target.latency_ms / 1000) / 2
    lines += [
        "",
        "Efficiency = achieved model calls/s over concurrency / latency. Target: >= 0.8 at "
        "concurrency 256 and 200 ms on one worker core.",
        "",
        f"At concurrency {target.concurrency} the ideal is {ideal_rollouts:.0f} rollouts/s. "
        f"The worker spends {worker_ms:.2f} ms of CPU per rollout, so one worker core could "
        f"drive about {1000 / worker_ms:.0f} rollouts/s; the tool server spends {tool_ms:.2f} "
        f"ms per rollout ({ideal_rollouts * tool_ms / 1000:.2f} cores at the ideal rate) and "
        f"the scripted model server {model_ms:.2f} ms per model call "
        f"({2 * ideal_rollouts * model_ms / 1000:.2f} cores at the ideal rate).",
    ]
    if cpus is not None:
        worker = target.cores(target.worker_cpu_s)
        servers = target.cores(target.tool_cpu_s + target.model_cpu_s)
        lines[-1] += (
            f" With the processes pinned, the worker kept its CPU {worker:.2f} busy and the two "
            f"servers theirs {servers:.2f}."
        )
    out = ROOT / "bench" / "results" / "worker_throughput.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n" + _kept_notes(out))
    print(f"wrote {out}")


NOTES = "## Notes"
"""The report's hand-written part: from this heading on, a rerun keeps it as it was."""


def _kept_notes(report: Path) -> str:
    try:
        text = report.read_text()
    except OSError:
        return ""
    start = text.find("\n" + NOTES + "\n")
    return "" if start < 0 else text[start:]


if __name__ == "__main__":
    main()
