"""Peak memory of `rolloutctl test` streaming a 1,000,000-row dataset.

A 1,000,000-row JSONL file (about 190 MB) is generated once under /tmp. `rolloutctl test` runs
against the scripted model server (a separate process) with `-o` so per-row results are written
too. Three windows: the first 20,000 rows, the last 20,000 rows (the reader streams through the
980,000 rows before them), and a CSV copy of the last window. Peak RSS of the `rolloutctl`
process is read from `getrusage(RUSAGE_CHILDREN)`.

Run: `.venv/bin/python bench/dataset_memory.py`; results go to bench/results/dataset_memory.md.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.scripted_model import start_process  # noqa: E402

ROWS = 1_000_000
WINDOW = 20_000
SYSTEM = ("You are a calculator assistant. Use the provided tools to compute the answer, then "
          "respond with #### followed by the numeric result.")


def make_datasets(directory: Path) -> tuple[Path, Path]:
    jsonl, csv_path = directory / "big.jsonl", directory / "big.csv"
    if not jsonl.exists():
        with jsonl.open("w") as handle:
            for i in range(ROWS):
                a, b = 2 + i % 97, 3 + i % 89
                handle.write(json.dumps({"system_prompt": SYSTEM,
                                         "user_prompt": f"What is {a} * {b}?",
                                         "ground_truth": str(a * b), "id": i}) + "\n")
    if not csv_path.exists():
        with jsonl.open() as src, csv_path.open("w", newline="") as dst:
            writer = csv.DictWriter(dst, ["system_prompt", "user_prompt", "ground_truth", "id"])
            writer.writeheader()
            for line in src:
                writer.writerow(json.loads(line))
    return jsonl, csv_path


def run_test(dataset: Path, offset: int, base_url: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one `rolloutctl test` process."""
    argv = [sys.executable, "-m", "rollout_operator.cli.main", "test", "--mcp",
            str(ROOT / "examples" / "calculator" / "mcp"), "-d", str(dataset), "--model",
            "scripted", "--base-url", base_url, "--offset", str(offset), "--limit", str(WINDOW),
            "-q", "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"), LITELLM_LOCAL_MODEL_COST_MAP="True")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(out.read_text())["summary"]
    assert summary["total"] == WINDOW and summary["passed"] == WINDOW, summary
    # RUSAGE_CHILDREN keeps the largest child so far; runs go from smallest expected upwards.
    return seconds, max(peak, before) / 1024


def main() -> None:
    work = Path(tempfile.gettempdir()) / "rollout-operator-bench"
    work.mkdir(exist_ok=True)
    jsonl, csv_path = make_datasets(work)
    server, base_url = start_process()
    results = []
    try:
        for label, dataset, offset in (
            ("JSONL, first 20k rows", jsonl, 0),
            ("JSONL, last 20k rows", jsonl, ROWS - WINDOW),
            ("CSV, last 20k rows", csv_path, ROWS - WINDOW),
        ):
            seconds, rss = run_test(dataset, offset, base_url, work / "out.json")
            results.append((label, seconds, rss))
            print(f"{label}: {seconds:.1f} s, peak RSS {rss:.0f} MB (max so far)")
    finally:
        server.terminate()
        server.wait()
    lines = [
        "# Peak memory streaming a 1,000,000-row dataset through `rolloutctl test`",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores; Python {platform.python_version()}",
        f"- dataset: {ROWS:,} rows, JSONL {jsonl.stat().st_size / 1e6:.0f} MB, "
        f"CSV {csv_path.stat().st_size / 1e6:.0f} MB; scripted model server in its own process",
        "- each run: validate the window, then run 20,000 rows one at a time with `-o` "
        "(2 model calls + 1 tool call per row)",
        "",
        "| run | seconds | peak RSS (MB, highest child so far) |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {seconds:.1f} | {rss:.0f} |" for label, seconds, rss in results]
    lines += ["", "Target: under 300 MB RSS."]
    out = ROOT / "bench" / "results" / "dataset_memory.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
