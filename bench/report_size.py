"""`rolloutctl report` at 1,000 and 10,000 trajectories: file size, build time, and how soon
headless Chromium shows the page.

The trajectories are calculator conversations (system, user, a `multiply` tool call, its
result, the answer) with varied numbers, about a tenth answered wrong and a few failed (tool
errors, timeouts) or masked, written as a records file. For each size it measures:

- build: `rolloutctl report records.jsonl -o report.html` as a process (start-up included);
- the page's size, and the part of it that is the compressed trajectories;
- in headless Chromium (Debian's `chromium`, over the DevTools protocol), median of 3 loads:
  first contentful paint, the table drawn (the page's own `performance.now()` mark, taken on
  the first frame after the first 100 rows are in the DOM), opening the first trajectory
  (decompressing and parsing all of them, then drawing one), and sorting the whole table by
  tokens.

Run: `.venv/bin/python bench/report_size.py [--sizes 1000 10000]`; results go to
bench/results/report.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model  # noqa: E402
from tests.report.chromium import NOT_FOUND, Browser, find_chromium  # noqa: E402

from rollout_operator.runtime.records import (  # noqa: E402
    JsonlRecordWriter,
    RecordError,
    TrajectoryRecord,
    Usage,
)

REWARD = "reward_fn.compute_reward:numbers_match_reward"
SYSTEM = ("You are a calculator assistant. Use the provided tools to compute the answer, then "
          "respond with #### followed by the numeric result.")
LOADS = 3
WORDS = ("alpha", "beta", "gamma", "delta", "tool", "result", "value", "error", "row", "sum",
         "product", "matrix", "vector", "token", "model", "answer", "check", "retry")


def filler(index: int, words: int) -> str:
    """`words` words drawn at random (seeded by `index`): text that compresses like prose."""
    pick = random.Random(index)
    return " ".join(pick.choice(WORDS) + str(pick.randrange(100)) for _ in range(words))


def make_record(index: int, words: int = 0, samples: int = 4) -> TrajectoryRecord:
    row, sample = divmod(index, samples)
    a, b = 3 + row * 7 % 97, 2 + row * 13 % 89
    wrong = index % 10 == 3
    answer = a * b + (1 if wrong else 0)
    arguments = json.dumps({"first_val": float(a), "second_val": float(b)})
    call = {"id": f"call_{index}_1", "type": "function",
            "function": {"name": "multiply", "arguments": arguments}}
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"What is {a} * {b}?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"],
         "content": f"{float(a * b)}" + (f"\n{filler(index, words)}" if words else "")},
        {"role": "assistant", "content": f"The result is {float(a * b)}\n#### {answer}"},
    ]
    status, error = "completed", None
    if index % 50 == 7:
        status, error = "failed", RecordError(category="timeout", message="rollout timed out")
    elif index % 50 == 19:
        status, error = "failed", RecordError(category="tool", message="multiply raised")
    elif index % 200 == 31:
        status, error = "masked", RecordError(category="inference", message="HTTP 503")
    score = 0.0 if wrong or status != "completed" else 1.0
    tokens = 150 + index % 40
    return TrajectoryRecord(
        rollout_id=f"bench-{row}-{sample}", row_index=row, sample_index=sample, status=status,
        finish_reason="stop" if status == "completed" else "error", error=error,
        messages=messages, scores={REWARD: score} if status == "completed" else {},
        reward=score, ground_truth=str(a * b),
        usage=Usage(prompt_tokens=tokens - 30, completion_tokens=30, total_tokens=tokens,
                    num_llm_calls=2, num_tool_calls=1),
    )


async def measure_page(binary: str, page: Path) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    async with Browser(binary) as browser:
        for _ in range(LOADS):
            await browser.send("Page.navigate", url="about:blank")
            await browser.open(page.as_uri())
            figures = await browser.evaluate("""(async () => {
                const paint = await new Promise((resolve) => new PerformanceObserver(
                    (list, observer) => {
                        const entry = list.getEntriesByName('first-contentful-paint')[0];
                        if (entry) { observer.disconnect(); resolve(entry); }
                    }).observe({type: 'paint', buffered: true}));
                const table = Number(document.body.dataset.renderedMs);
                let start = performance.now();
                location.hash = 't=0';
                await new Promise((resolve) => { const check = () =>
                    document.body.dataset.trajectory === '0' ? resolve() : setTimeout(check, 1);
                    check(); });
                const open = performance.now() - start;
                start = performance.now();
                document.querySelector('#table-head th[data-key="tokens"]').click();
                const sort = performance.now() - start;
                return {paint: paint.startTime, table, open, sort};
            })()""")
            for key, value in figures.items():
                found.setdefault(key, []).append(float(value))
    return {key: statistics.median(values) for key, values in found.items()}


def build(records: Path, page: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rollout_operator.cli.main", "report", str(records),
                    "-o", str(page)], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--words", type=int, default=300,
                        help="Random words in each tool result of the last, varied input.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "report.md")
    args = parser.parse_args()
    binary = find_chromium()
    if binary is None:
        raise SystemExit(NOT_FOUND)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="report-bench-") as folder:
        inputs = [(size, 0) for size in args.sizes] + [(max(args.sizes), args.words)]
        for size, words in inputs:
            records = Path(folder) / f"records-{size}-{words}.jsonl"
            page = records.with_suffix(".html")
            with JsonlRecordWriter(records) as writer:
                writer.write_many(make_record(i, words) for i in range(size))
            seconds = build(records, page)
            html = page.read_text(encoding="utf-8")
            blob = re.search(r'id="report-trajectories">([^<]*)<', html)
            packed = len(blob.group(1)) if blob else 0
            figures = asyncio.run(measure_page(binary, page))
            rows.append((size, words, records.stat().st_size, len(html.encode()), packed, seconds,
                         figures))
            print(size, figures, flush=True)
    lines = [
        "# `rolloutctl report`: page size and time to first paint",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; {version}, headless; median of {LOADS} loads",
        f"- load average when it ran: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(the machine is shared)",
        "- input: calculator trajectories (5 messages, one tool call each), as a records file;",
        f"  the last row's tool results also hold {args.words} random words each (text that",
        "  compresses like real tool output rather than like the repeated calculator lines)",
        "",
        "| trajectories | words per tool result | records MB | page MB "
        "| of it compressed trajectories MB | build s "
        "| first paint ms | table drawn ms | first trajectory opened ms | sort all ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, words, source, total, packed, seconds, f in rows:
        lines.append(f"| {size} | {words} | {source / 1e6:.2f} | {total / 1e6:.2f} | "
                     f"{packed / 1e6:.2f} | "
                     f"{seconds:.2f} | {f['paint']:.0f} | {f['table']:.0f} | {f['open']:.0f} | "
                     f"{f['sort']:.0f} |")
    lines += [
        "",
        "First paint and the table are timed from navigation start. The summary and charts are",
        "static HTML and SVG, so they paint before the script runs; the table shows 100 rows a",
        "page. The trajectories come after the page's script, so the table is drawn before the",
        "browser reads them; they are decompressed and parsed once, when the first row is",
        "opened, and later rows open without that cost.",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
