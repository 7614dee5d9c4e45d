"""`rolloutctl run` through 60 s outages mid-run: tests/local/test_run_outages.py at length.

50 prompts x 4 samples (the calculator example with 50 products), 2 shards of 8 rollouts at
once, against the scripted model server (150 ms a reply) and moto's S3 server, each behind a
fault proxy of its own. Once 40 model requests were answered, one dependency goes away:

- the model endpoint for 60 s (connections refused);
- object storage for 60 s (connections refused);
- the model endpoint answering 503 to everything for 10 s (a burst);
- the model endpoint, and storage, for 60 s with `outageBudgetSeconds: 0`: what a run did
  before outages were waited out (shards fail and are retried, 3 times with 1, 2, 4 s between).

All runs go at once. For each: exit code and state, records in storage (read with boto3),
duplicates, records masked, and the seconds waited (`outageSeconds` of the --json result).

Run: `.venv/bin/python bench/faults.py`; results go to bench/results/faults.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_model  # noqa: E402
from tests.local.support import EXAMPLE  # noqa: E402
from tests.local.test_run_outages import Outcome, run_through  # noqa: E402
from tests.support.s3 import S3Server  # noqa: E402
from tests.support.scripted_model import ScriptedModelServer  # noqa: E402

ROWS, SAMPLES = 50, 4
SCENARIOS: dict[str, dict[str, Any]] = {
    "model endpoint gone 60 s": {"model_outage": "refuse", "outage_s": 60},
    "object storage gone 60 s": {"storage_outage": "refuse", "outage_s": 60},
    "model 503 burst 10 s": {"model_outage": "503", "outage_s": 10},
    "model endpoint gone 60 s, budget 0": {"model_outage": "refuse", "outage_s": 60,
                                          "faults": {"outageBudgetSeconds": 0}},
    "object storage gone 60 s, budget 0": {"storage_outage": "refuse", "outage_s": 60,
                                          "faults": {"outageBudgetSeconds": 0}},
}


def row(name: str, outcome: Outcome, seconds: float) -> str:
    records = outcome.records
    keys = Counter((r["row_index"], r["sample_index"], r["attempt"]) for r in records)
    items = {(r["row_index"], r["sample_index"]) for r in records}
    duplicates = sum(count - 1 for count in keys.values())
    masked = sum(r["status"] == "masked" for r in records)
    waited = ", ".join(f"{k} {v:g}" for k, v in (outcome.result.get("outageSeconds") or {}
                                                  ).items()) or "-"
    error = (outcome.result.get("error") or "").splitlines()[0][:90] if not \
        outcome.result.get("ok") else ""
    return (f"| {name} | {outcome.done.returncode} {outcome.result.get('state')} | "
            f"{len(items)} of {ROWS * SAMPLES} | {len(records)} | {duplicates} | {masked} | "
            f"{waited} | {seconds:.0f} | {error} |")


def fifty_products(directory: Path) -> Path:
    """The calculator example as a git repo whose dataset has 50 products."""
    repo = directory / "calculator"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    first = json.loads((EXAMPLE / "test_data.jsonl").read_text().splitlines()[0])
    lines = [json.dumps({**first, "user_prompt": f"What is {a} * {b}?",
                         "ground_truth": str(a * b)})
             for a, b in ((3 + i, 7 + i % 11) for i in range(ROWS))]
    (repo / "test_data.jsonl").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "fifty products"]):
        subprocess.run(argv, cwd=repo, env=env, check=True)
    return repo


def main() -> None:
    started = datetime.now(UTC)
    lines: list[str] = []
    repo = fifty_products(Path(tempfile.mkdtemp(prefix="faults-repo-")))
    with S3Server() as s3, ScriptedModelServer(latency_ms=150, record=False) as model, \
            ThreadPoolExecutor(len(SCENARIOS)) as pool:

        def one(name: str, options: dict[str, Any]) -> tuple[str, Outcome, float]:
            t0 = time.monotonic()
            outcome = run_through(Path(tempfile.mkdtemp(prefix="faults-")), s3, model,
                                  rows=ROWS, samples=SAMPLES, concurrency=8,
                                  started_after=40, repo=repo, **options)
            return name, outcome, time.monotonic() - t0

        futures = [pool.submit(one, name, options) for name, options in SCENARIOS.items()]
        for future in futures:
            name, outcome, seconds = future.result()
            lines.append(row(name, outcome, seconds))
            print(lines[-1], flush=True)
    report = [
        "# Runs through outages mid-run",
        "",
        f"`bench/faults.py`, {started:%Y-%m-%d %H:%M} UTC, {cpu_model()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}, {len(SCENARIOS)} runs "
        "at once on a machine shared with other work. Each run: `rolloutctl run --no-sandbox` "
        "of the calculator example, "
        f"{ROWS} prompts x {SAMPLES} samples, 2 shards x 8 rollouts at once, scripted model "
        "(150 ms a reply) and moto S3 each behind a fault proxy; the outage starts once 40 "
        "model requests were answered. Records are read from storage with boto3; duplicates "
        "are records with the same (row, sample, attempt) beyond the first.",
        "",
        "| outage | exit, state | items stored | records | duplicates | masked | seconds "
        "waited (outageSeconds) | wall s | error |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        "With `outageBudgetSeconds: 0` an outage fails calls at once, as before: a shard that "
        "cannot reach the model endpoint or cannot commit exits, and `rolloutctl run` retries "
        "it up to 3 times (1, 2 and 4 s apart, plus the start of a process on this loaded "
        "machine); whether the run survives depends on whether those retries outlast the "
        "outage. With the default budget (300 s) the shards wait: the outage costs its own "
        "length and no retry. `outageSeconds` sums the waits of both shards and the aggregate.",
        "",
    ]
    out = ROOT / "bench" / "results" / "faults.md"
    out.write_text("\n".join(report), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
