"""`osmosis eval` 0.2.17 and `rolloutctl eval`, whole process, side by side on the calculator task.

    .venv/bin/python bench/eval_vs_osmosis.py [--osmosis /tmp/ref/venv/bin/osmosis] [--quick]

Both commands get the same flags (examples/calculator, its `####` reward, `--n` runs per row of
its 20 rows) against the scripted OpenAI-compatible model of tests/support, which runs in its own
process so its CPU is not counted. Each command is a fresh process with a fresh OSMOSIS_CACHE_DIR
(nothing resumes), timed as a whole: wall clock, user+sys CPU and peak RSS from `os.wait4`.
The two tools alternate (ABAB) within each case, so a busy shared machine slows both alike; the
ratios are the figures that count. Cases:

- start-up: `--help`;
- 0 ms model latency, 5,000 rollouts (20 rows x --n 250), --batch-size 64;
- 0 ms, 1,000 rollouts: with the case above, the marginal CPU per rollout
  ((cpu_5000 - cpu_1000) / 4000), which leaves out start-up and set-up;
- 200 ms latency, 2,000 rollouts (20 rows x --n 100), --batch-size 256;
- `rolloutctl run` (one worker, concurrency 64) on the same 5,000 rollouts at 0 ms: the same
  runtime driven by the local backend, next to `rolloutctl eval`.

Without the reference only our side is measured. Results: bench/results/eval_vs_osmosis.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model  # noqa: E402
from tests.support.scripted_model import start_process  # noqa: E402

EXAMPLE = ROOT / "examples" / "calculator"
REWARD = "reward_fn.compute_reward:numbers_match_reward"
ROWS = 20
RESULTS = ROOT / "bench" / "results" / "eval_vs_osmosis.md"
RUN_SPEC = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata:
  name: bench
spec:
  repo:
    url: {repo}
  dataset:
    path: test_data.jsonl
    samplesPerPrompt: {samples}
  model:
    name: openai/scripted
    baseURL: {base_url}
  agent:
    maxTurns: 10
  scoring:
    functions:
      - {reward}
  workers:
    shards: 1
    concurrency: {batch}
"""


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    rss_mb: float


@dataclass
class Measured:
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(s, attribute) for s in self.samples)


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> Sample:
    """Run one command to its end; wall, user+sys CPU and peak RSS of it and its children."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            out.seek(0)
            tail = out.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{argv[0]} exited {process.returncode}:\n{tail}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def eval_flags(base_url: str, n: int, batch: int) -> list[str]:
    return ["eval", "--mcp", "./mcp", "-d", "test_data.jsonl", "--model", "scripted",
            "--base-url", base_url, "--api-key", "EMPTY", "--eval-fn", REWARD, "--n", str(n),
            "--batch-size", str(batch)]


def environment(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_API_KEY") and k not in ("OPENAI_BASE_URL", "OPENAI_API_BASE")}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_COLOR": "1", "COLUMNS": "200",
                "OSMOSIS_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "0"})
    return env


class Bench:
    def __init__(self, tools: dict[str, list[str]], work: Path, repeats: int) -> None:
        self.tools = tools
        self.work = work
        self.repeats = repeats
        self.repo = work / "calculator"
        shutil.copytree(EXAMPLE, self.repo, ignore=shutil.ignore_patterns("__pycache__"))
        self.runs = 0

    def fresh_cache(self) -> Path:
        self.runs += 1
        return self.work / f"cache-{self.runs}"

    def side_by_side(self, args: list[str]) -> dict[str, Measured]:
        """Each tool `repeats` times, alternating, the order flipped every round (ABBA...)."""
        measured = {name: Measured() for name in self.tools}
        names = list(self.tools)
        for round_ in range(self.repeats):
            for name in (names if round_ % 2 == 0 else names[::-1]):
                sample = timed([*self.tools[name], *args], self.repo,
                               environment(self.fresh_cache()))
                measured[name].samples.append(sample)
                print(f"  {name} {' '.join(args[:1])}: wall {sample.wall_s:.2f}s cpu "
                      f"{sample.cpu_s:.2f}s rss {sample.rss_mb:.0f}MB", flush=True)
        return measured

    def run_local(self, base_url: str, samples: int, batch: int) -> Sample:
        self.runs += 1
        spec = self.work / f"run-{self.runs}.yaml"
        spec.write_text(RUN_SPEC.format(repo=self.repo, samples=samples, base_url=base_url,
                                        reward=REWARD, batch=batch), encoding="utf-8")
        argv = [*self.tools["rolloutctl"], "run", "-f", str(spec), "--output",
                str(self.work / f"run-out-{self.runs}")]
        env = environment(self.fresh_cache())
        env["ROLLOUT_MODEL_API_KEY"] = "EMPTY"
        sample = timed(argv, self.repo, env)
        print(f"  rolloutctl run: wall {sample.wall_s:.2f}s cpu {sample.cpu_s:.2f}s "
              f"rss {sample.rss_mb:.0f}MB", flush=True)
        return sample


def _ratio(ref: float | None, ours: float) -> str:
    return f"{ref / ours:.1f}x" if ref is not None and ours > 0 else "-"


def _row(label: str, measured: dict[str, Measured]) -> str:
    ours = measured["rolloutctl"]
    ref = measured.get("osmosis")
    cells = [label]
    for attribute, unit in (("wall_s", "s"), ("cpu_s", "s"), ("rss_mb", " MB")):
        theirs = ref.median(attribute) if ref else None
        mine = ours.median(attribute)
        digits = 0 if unit == " MB" else 2
        cells.append(f"{theirs:.{digits}f}{unit}" if theirs is not None else "-")
        cells.append(f"{mine:.{digits}f}{unit}")
        if attribute != "rss_mb":
            cells.append(_ratio(theirs, mine))
    return "| " + " | ".join(cells) + " |"


def _targets(large: dict[str, Measured], latent: dict[str, Measured],
             startup: dict[str, Measured], marginal_ms: float, run_over_eval: float) -> list[str]:
    """Each goal beside what was measured (wall ratios depend on the machine's load)."""

    def ratio(case: dict[str, Measured], attribute: str) -> float:
        return case["osmosis"].median(attribute) / case["rolloutctl"].median(attribute)

    checks = [
        ("wall, 0 ms, 5,000 rollouts, batch 64", ">= 10x", f"{ratio(large, 'wall_s'):.1f}x "
         f"(CPU {ratio(large, 'cpu_s'):.1f}x)", ratio(large, "wall_s") >= 10),
        ("marginal CPU per rollout", "<= 1.5 ms", f"{marginal_ms:.2f} ms", marginal_ms <= 1.5),
        ("wall, 200 ms, 2,000 rollouts, batch 256", ">= 6x", f"{ratio(latent, 'wall_s'):.1f}x "
         f"(CPU {ratio(latent, 'cpu_s'):.1f}x)", ratio(latent, "wall_s") >= 6),
        ("start-up (`--help`)", "<= 0.3 s", f"{startup['rolloutctl'].median('wall_s'):.2f} s wall, "
         f"{startup['rolloutctl'].median('cpu_s'):.2f} s CPU",
         startup["rolloutctl"].median("wall_s") <= 0.3),
        ("peak RSS at 5,000 rollouts", "<= 150 MB",
         f"{large['rolloutctl'].median('rss_mb'):.0f} MB",
         large["rolloutctl"].median("rss_mb") <= 150),
        ("`rolloutctl run` wall / `rolloutctl eval` wall", "<= 1.2", f"{run_over_eval:.2f}",
         run_over_eval <= 1.2),
    ]
    return ["| goal | target | measured | met |", "|---|---|---|---|",
            *[f"| {goal} | {target} | {value} | {'yes' if met else 'no'} |"
              for goal, target, value, met in checks], ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osmosis", default="/tmp/ref/venv/bin/osmosis",
                        help="the reference's osmosis executable (skipped when absent)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each tool per case")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the rollouts, one run each, printed only (a smoke test)")
    args = parser.parse_args()
    rolloutctl = Path(sys.executable).parent / "rolloutctl"
    tools: dict[str, list[str]] = {}
    if Path(args.osmosis).exists():
        tools["osmosis"] = [args.osmosis]
    tools["rolloutctl"] = [str(rolloutctl)]
    repeats = 1 if args.quick else args.repeats
    scale = 10 if args.quick else 1
    big, small, slow = 5000 // scale, 1000 // scale, 2000 // scale
    load_before = os.getloadavg()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(tools, Path(tmp), repeats)
        print("start-up (--help)", flush=True)
        startup = bench.side_by_side(["--help"])
        startup = bench.side_by_side(["--help"]) if not args.quick else startup
        rows.append(_row("start-up (`--help`)", startup))
        fast_process, fast_url = start_process(0.0, lean=True)
        try:
            print(f"0 ms, {big} rollouts, batch 64", flush=True)
            large = bench.side_by_side(eval_flags(fast_url, big // ROWS, 64))
            print(f"0 ms, {small} rollouts, batch 64", flush=True)
            little = bench.side_by_side(eval_flags(fast_url, small // ROWS, 64))
            print(f"rolloutctl run, {big} rollouts, concurrency 64", flush=True)
            local = [bench.run_local(fast_url, big // ROWS, 64) for _ in range(repeats)]
        finally:
            fast_process.terminate()
            fast_process.wait()
        slow_process, slow_url = start_process(200.0, lean=True)
        try:
            print(f"200 ms, {slow} rollouts, batch 256", flush=True)
            latent = bench.side_by_side(eval_flags(slow_url, slow // ROWS, 256))
        finally:
            slow_process.terminate()
            slow_process.wait()
    load_after = os.getloadavg()
    rows.append(_row(f"0 ms, {big:,} rollouts, batch 64", large))
    rows.append(_row(f"0 ms, {small:,} rollouts, batch 64", little))
    rows.append(_row(f"200 ms, {slow:,} rollouts, batch 256", latent))

    def marginal_ms(name: str) -> float:
        return ((large[name].median("cpu_s") - little[name].median("cpu_s"))
                / (big - small) * 1000)

    ours_marginal = marginal_ms("rolloutctl")
    ref_marginal = marginal_ms("osmosis") if "osmosis" in tools else None
    local_wall = statistics.median(s.wall_s for s in local)
    local_cpu = statistics.median(s.cpu_s for s in local)
    local_rss = statistics.median(s.rss_mb for s in local)
    eval_wall = large["rolloutctl"].median("wall_s")
    targets = _targets(large, latent, startup, ours_marginal, local_wall / eval_wall) \
        if "osmosis" in tools and not args.quick else []
    report = "\n".join([
        "# `osmosis eval` 0.2.17 vs `rolloutctl eval`, whole process",
        "",
        "Produced by `bench/eval_vs_osmosis.py`"
        + (" --quick" if args.quick else "") + " (the reference built by",
        "`bench/reference/osmosis_0217.sh`). examples/calculator (20 rows, `--n` runs per row,",
        "reward `numbers_match_reward`), the scripted OpenAI-compatible model (lean server) in its",
        "own process. Every command is a fresh process with a fresh OSMOSIS_CACHE_DIR, output to a",
        "file; the two tools alternate within each case and the figures are medians of "
        f"{repeats} run(s) each.",
        "CPU is user+sys of the command and its children; RSS is its peak.",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f}; after: {load_after[0]:.2f} / {load_after[1]:.2f} / "
        f"{load_after[2]:.2f}",
        "",
        "| case | osmosis wall | rolloutctl wall | wall ratio | osmosis CPU | rolloutctl CPU "
        "| CPU ratio | osmosis RSS | rolloutctl RSS |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Marginal CPU per rollout ((CPU at {big:,} - CPU at {small:,}) / {big - small:,}): "
        f"osmosis {f'{ref_marginal:.2f} ms' if ref_marginal is not None else '-'}, "
        f"rolloutctl {ours_marginal:.2f} ms ({_ratio(ref_marginal, ours_marginal)}).",
        "",
        f"`rolloutctl run` (local backend, one worker, concurrency 64) on the same {big:,} "
        f"rollouts at 0 ms: wall {local_wall:.2f}s, CPU {local_cpu:.2f}s, peak RSS "
        f"{local_rss:.0f} MB; {local_wall / eval_wall:.2f}x the wall of `rolloutctl eval`.",
        "",
        *targets,
    ])
    if not args.quick:
        RESULTS.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
