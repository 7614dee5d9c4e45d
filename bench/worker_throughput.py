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

Scoring crosses the user-code boundary: the worker sends finished trajectories to a separate
`rolloutctl serve-scorers` process (the scorer Service's pods), placed with the other servers.
`--before REV` also measures, side by side in the same runs, the worker of an earlier revision
(extracted with `git archive`), for instance the last one that scored in-process; both workers
run as child processes of this script, pinned alike, against the same servers.

Run: `.venv/bin/python bench/worker_throughput.py [--quick] [--repeat N] [--no-pin]
[--aiohttp-model] [--before REV]`; results go to bench/results/worker_throughput.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _code_root(argv: list[str]) -> Path:
    """The `operator/` folder whose `rollout_operator` to measure (`--code`, for the worker
    of another revision), chosen before anything imports it."""
    for index, arg in enumerate(argv):
        if arg == "--code" and index + 1 < len(argv):
            return Path(argv[index + 1]).resolve()
    return ROOT / "operator"


sys.path[:0] = [str(_code_root(sys.argv)), str(ROOT)]
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
    variant: str
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
    scorer_cpu_s: float = 0.0

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


def start_scorer_server() -> tuple[subprocess.Popen[str], str]:
    """`rolloutctl serve-scorers` for the calculator example on a loopback socket."""
    import socket

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
           "ROLLOUT_LOG_LEVEL": "WARNING"}
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout_operator.cli.main", "serve-scorers", "--repo",
         str(EXAMPLE), "--scorer", REWARD, "--listen-fd", str(listener.fileno())],
        cwd=ROOT, env=env, pass_fds=[listener.fileno()], text=True,
    )
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("serve-scorers did not start") from None
            time.sleep(0.1)


def config_for(output: Path, dataset: Path, model_url: str, tool_url: str,
               scorer_url: str | None, concurrency: int, rows: int, name: str) -> RunConfig:
    spec = RolloutRunSpec.model_validate({
        "repo": {"url": "https://git.example.com/team/calculator.git"},
        "dataset": {"url": dataset.as_uri(), "limit": rows},
        "model": {"name": "openai/scripted", "baseURL": model_url},
        "scoring": {"functions": [REWARD]},
        "workers": {"shards": 1, "concurrency": concurrency},
    })
    extra: dict[str, Any] = {"scorer_url": scorer_url} if scorer_url else {}  # none before
    return RunConfig(
        spec=spec, namespace="bench", name=name, uid=UID,
        run_prefix=run_prefix(output.as_uri(), "bench", name, UID),
        repo_dir=str(EXAMPLE), tool_url=tool_url, **extra,
    )


async def measure(output: Path, dataset: Path, model_url: str, model_pid: int,
                  tool_pid: int, tool_url: str, scorer_pid: int, scorer_url: str | None,
                  latency_ms: float, concurrency: int, rows: int, variant: str) -> Result:
    # Warm up the servers and this process's code paths first.
    warm = config_for(output, dataset, model_url, tool_url, scorer_url, concurrency,
                      concurrency, "warm")
    await run_shard(warm, 0, environ={})
    config = config_for(output, dataset, model_url, tool_url, scorer_url, concurrency, rows,
                        "measured")
    load = os.getloadavg()[0]
    busy0, tool0, model0 = machine_busy_s(), process_cpu_s(tool_pid), process_cpu_s(model_pid)
    scorer0 = tree_cpu_s(scorer_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = await run_shard(config, 0, environ={})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    tool_cpu = process_cpu_s(tool_pid) - tool0
    model_cpu = process_cpu_s(model_pid) - model0
    scorer_cpu = tree_cpu_s(scorer_pid) - scorer0
    other_cpu = max(0.0, machine_busy_s() - busy0 - cpu - tool_cpu - model_cpu - scorer_cpu)
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
    return Result(variant, concurrency, latency_ms, rows, seconds, cpu, tool_cpu, model_cpu,
                  other_cpu, load, model_calls, tool_calls, stats.parts, llm_ms / model_calls,
                  tool_ms / tool_calls, scoring_ms / rows, scorer_cpu)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the scorer supervisor and its server)."""
    total = process_cpu_s(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += tree_cpu_s(int(child))
    return total


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
    parser.add_argument("--before", default=None, metavar="REV",
                        help="also measure the worker of this git revision, side by side")
    parser.add_argument("--code", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure_one(json.loads(args.one)).__dict__), flush=True)
        return
    load = os.getloadavg()[0]
    cpus = placement(args.pin)
    variants = {"after": ROOT / "operator"}
    with contextlib.ExitStack() as stack:
        if args.before:
            variants["before"] = _extract(args.before, stack)
        runs: dict[tuple[str, int], list[Result]] = {
            (variant, concurrency): [] for variant in variants for concurrency, _ in PLAN}
        model, model_url = start_process(args.latency_ms, lean=args.lean_model)
        tool, tool_url = start_tool_server()
        scorer, scorer_url = start_scorer_server()
        servers = [model, tool, scorer]
        if cpus is not None:
            for server in servers:
                pin_tree(server.pid, cpus[1])
        try:
            for _ in range(max(1, args.repeat)):
                for concurrency, rows in PLAN:
                    for variant, code in variants.items():
                        job = {"rows": rows // 4 if args.quick else rows,
                               "concurrency": concurrency, "latency_ms": args.latency_ms,
                               "model": [model.pid, model_url], "tool": [tool.pid, tool_url],
                               "scorer": [scorer.pid, scorer_url if variant == "after" else None],
                               "variant": variant,
                               "cpus": sorted(cpus[0]) if cpus is not None else None}
                        result = _run_child(code, job)
                        runs[(variant, concurrency)].append(result)
                        print(describe(result), flush=True)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait()
    if not args.quick:
        write_report(runs, load, cpus, args.lean_model, args.before)


def _extract(revision: str, stack: contextlib.ExitStack) -> Path:
    """`operator/` of `revision`, from `git archive`, in a folder removed at the end."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="worker-before-")))
    archive = subprocess.run(["git", "archive", revision, "operator"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "operator"


def _run_child(code: Path, job: dict[str, object]) -> Result:
    """One measurement in a fresh process whose `rollout_operator` is the one in `code`."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--code", str(code),
         "--one", json.dumps(job)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {job['variant']} worker failed:\n{done.stderr[-3000:]}")
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def _measure_one(job: dict[str, Any]) -> Result:
    if job["cpus"] is not None:
        pin(os.getpid(), set(job["cpus"]))
    rows, concurrency = int(job["rows"]), int(job["concurrency"])
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as scratch:
        dataset = Path(scratch) / "rows.jsonl"
        write_dataset(dataset, rows)
        result = asyncio.run(measure(
            Path(scratch) / "out", dataset, job["model"][1], job["model"][0], job["tool"][0],
            job["tool"][1], job["scorer"][0], job["scorer"][1], float(job["latency_ms"]),
            concurrency, rows, str(job["variant"]),
        ))
    return result


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Pin a process and its children (started before this call) to `cpus`."""
    pin(pid, cpus)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pin_tree(int(child), cpus)


def describe(r: Result) -> str:
    return (
        f"{r.variant}: c={r.concurrency} latency={r.latency_ms:.0f} ms: "
        f"{r.rollouts / r.seconds:.0f} "
        f"rollouts/s, {r.model_calls / r.seconds:.0f} model calls/s, efficiency "
        f"{r.efficiency:.2f}; worker {r.cores(r.worker_cpu_s):.2f} cores "
        f"({r.ms_per_rollout(r.worker_cpu_s):.2f} ms/rollout), tool server "
        f"{r.cores(r.tool_cpu_s):.2f} cores, scorer server {r.cores(r.scorer_cpu_s):.2f} "
        f"cores, model server {r.cores(r.model_cpu_s):.2f} cores, "
        f"other processes {r.cores(r.other_cpu_s):.2f} cores (load {r.load:.2f}); model call "
        f"{r.model_call_ms:.0f} ms, tool call {r.tool_call_ms:.1f} ms, scoring "
        f"{r.scoring_ms:.1f} ms"
    )


def _layout(cpus: tuple[set[int], set[int]] | None) -> str:
    if cpus is None:
        return ("not pinned: the worker, the tool server and the model server share the "
                "machine's CPUs as the scheduler places them")
    return (f"the worker (all its threads) pinned to CPU {_cpu_list(cpus[0])}; the tool, scorer "
            f"and model servers pinned to CPU {_cpu_list(cpus[1])}")


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def write_report(runs: dict[tuple[str, int], list[Result]], load: float,
                 cpus: tuple[set[int], set[int]] | None, lean_model: bool,
                 before: str | None) -> None:
    import fastmcp

    cases = [runs[("after", concurrency)] for concurrency, _ in PLAN]
    repeats = len(cases[0])
    lines = [
        "# Worker throughput (`rolloutctl work`)",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"fastmcp {fastmcp.__version__}",
        "- worker: `run_shard` (the body of `rolloutctl work`) on one event loop, one shard, in a "
        "process of its own; dataset read from `file://` storage, records committed in parts "
        "to `file://` storage",
        "- rollout: calculator task, 2 model calls + 1 tool call + `####` reward; tools from "
        "one separate `rolloutctl serve-tools` process (lean engine) over streamable HTTP, "
        "each tool call one POST at the stateless MCP revision; scoring by one separate "
        "`rolloutctl serve-scorers` process over the scoring API (the worker imports no repo "
        "code); model: the scripted server in its own process, served by "
        + ("its lean HTTP server (`--lean`)" if lean_model else "aiohttp"),
        f"- placement: {_layout(cpus)}",
        f"- runs: each case {repeats} times, interleaved; the tables show the run with the "
        "median efficiency, and the range over all runs",
        f"- load average when the benchmark started: {load:.2f} (1 min; other work on the "
        "machine shares its cores)",
        "",
        "| concurrency | latency | rollouts | seconds | rollouts/s | model calls/s | "
        "efficiency | range | worker CPU (cores) | worker CPU ms / rollout | tool server CPU "
        "ms / rollout | scorer server CPU ms / rollout | model server CPU (cores) | other "
        "processes' CPU (cores) | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        r = median_run(case)
        low = min(x.efficiency for x in case)
        high = max(x.efficiency for x in case)
        lines.append(
            f"| {r.concurrency} | {r.latency_ms:.0f} ms | {r.rollouts} | {r.seconds:.1f} | "
            f"{r.rollouts / r.seconds:.0f} | {r.model_calls / r.seconds:.0f} | "
            f"**{r.efficiency:.2f}** | {low:.2f}-{high:.2f} | {r.cores(r.worker_cpu_s):.2f} | "
            f"{r.ms_per_rollout(r.worker_cpu_s):.2f} | {r.ms_per_rollout(r.tool_cpu_s):.2f} | "
            f"{r.ms_per_rollout(r.scorer_cpu_s):.2f} | {r.cores(r.model_cpu_s):.2f} | "
            f"{r.cores(r.other_cpu_s):.2f} | {r.load:.2f} |"
        )
    lines += [
        "",
        "Where a slot's time goes per rollout, in ms (the median runs): the model calls' "
        "latency, what the model calls took beyond it, the tool call as the worker sees it, "
        "scoring (the scoring API's round trip, batching included), and the rest (start-up, "
        "the drain at the end, the worker's own turns). Slot ms is concurrency over "
        "rollouts/s.",
        "",
        "| concurrency | slot ms per rollout | model latency | model calls beyond it | tool call "
        "| scoring | rest |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        r = median_run(case)
        slot_ms = r.concurrency / (r.rollouts / r.seconds) * 1000
        calls, tools = r.model_calls / r.rollouts, r.tool_calls / r.rollouts
        beyond = calls * (r.model_call_ms - r.latency_ms)
        tool = tools * r.tool_call_ms
        rest = slot_ms - calls * r.latency_ms - beyond - tool - r.scoring_ms
        lines.append(
            f"| {r.concurrency} | {slot_ms:.0f} | {calls * r.latency_ms:.0f} | {beyond:.1f} | "
            f"{tool:.1f} | {r.scoring_ms:.1f} | {rest:.1f} |"
        )
    if before:
        lines += [
            "",
            f"## Side by side: this worker and the worker of `{before}`",
            "",
            f"Both workers ran in the same benchmark, case after case, against the same "
            f"servers; the `{before}` worker imports the repo's scorers and scores in its own "
            "process, this one sends trajectories to the scorer server. Rollouts/s per worker "
            "core is 1000 over the worker's CPU ms per rollout. The machine's speed drifts "
            "from one minute to the next, so each run of this worker is compared with the run "
            "of the other made right beside it: the ratio column is the median of those "
            "paired ratios (range over the pairs); the CPU columns are the median runs.",
            "",
            "| concurrency | efficiency before | efficiency after | worker CPU ms / rollout "
            "before | after | rollouts/s per worker core before | after | after / before "
            "(paired) | range | scorer server CPU ms / rollout |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for concurrency, _ in PLAN:
            olds, news = runs[("before", concurrency)], runs[("after", concurrency)]
            ratios = sorted(o.ms_per_rollout(o.worker_cpu_s) / n.ms_per_rollout(n.worker_cpu_s)
                            for o, n in zip(olds, news, strict=True))
            old, new = median_run(olds), median_run(news)
            old_ms = old.ms_per_rollout(old.worker_cpu_s)
            new_ms = new.ms_per_rollout(new.worker_cpu_s)
            lines.append(
                f"| {concurrency} | {old.efficiency:.2f} | {new.efficiency:.2f} | "
                f"{old_ms:.2f} | {new_ms:.2f} | {1000 / old_ms:.0f} | {1000 / new_ms:.0f} | "
                f"**{ratios[(len(ratios) - 1) // 2]:.2f}** | {ratios[0]:.2f}-{ratios[-1]:.2f} | "
                f"{new.ms_per_rollout(new.scorer_cpu_s):.2f} |"
            )
    target = median_run(cases[-1])
    worker_ms = target.ms_per_rollout(target.worker_cpu_s)
    lines += [
        "",
        "Efficiency = achieved model calls/s over concurrency / latency. Target: >= 0.8 at "
        "concurrency 256 and 200 ms on one worker core.",
        "",
        f"At concurrency {target.concurrency} the worker spends {worker_ms:.2f} ms of CPU per "
        f"rollout, so one worker core could drive about {1000 / worker_ms:.0f} rollouts/s.",
    ]
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
