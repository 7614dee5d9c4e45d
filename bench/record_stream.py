"""What reading a run's records costs a trainer: the client's stream and each export.

A run of `--records` calculator trajectories (about 1.3 KB of JSON each, with per-turn token
ids) is committed to a `file://` folder in parts of 256 records over 4 shards, as workers commit
them. Then, each timed on its own:

- stream: `open_run(...)` over every part, records parsed into `TrajectoryRecord`s;
- resume: the same from a cursor saved half way (the second half only);
- exports `sft`, `dpo`, `tokens`, `atif` through `rolloutctl export`'s code (`export_run`).

Run: `.venv/bin/python bench/record_stream.py [--records N]`; results go to
bench/results/record_stream.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model  # noqa: E402
from tests.exports.records import record  # noqa: E402

from rollout_operator.client import open_run  # noqa: E402
from rollout_operator.exports.source import RunOutput  # noqa: E402
from rollout_operator.exports.write import ExportFormat, export_run  # noqa: E402
from rollout_operator.runtime.shards import ShardWriter  # noqa: E402
from rollout_operator.runtime.storage import open_store  # noqa: E402

SHARDS = 4
PART_SIZE = 256
SAMPLES = 4


def commit(folder: Path, count: int) -> None:
    async def main() -> None:
        store = open_store(str(folder))
        for shard in range(SHARDS):
            async with ShardWriter(store, "", shard, part_size=PART_SIZE) as writer:
                for index in range(shard, count, SHARDS):
                    row, sample = divmod(index, SAMPLES)
                    await writer.add(record(row, sample, float(sample % 2)))

    asyncio.run(main())


def timed(action: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    count = action()
    return count, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as scratch:
        folder = Path(scratch) / "run"
        start = time.perf_counter()
        commit(folder, args.records)
        commit_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in folder.rglob("part-*.jsonl"))

        rows.append(("stream all", *timed(lambda: sum(1 for _ in open_run(str(folder))))))
        first = open_run(str(folder))
        for seen, _ in enumerate(first, start=1):
            if seen == args.records // 2:
                break
        cursor = str(first.cursor)
        rows.append(("resume from half way", *timed(
            lambda: sum(1 for _ in open_run(str(folder), cursor=cursor)))))
        for fmt, name in (("sft", "sft.jsonl"), ("dpo", "dpo.jsonl"),
                          ("tokens", "tokens.parquet"), ("atif", "atif")):
            async def export(fmt: str = fmt, name: str = name) -> int:
                output = await RunOutput.open(str(folder))
                result = await export_run(output, cast(ExportFormat, fmt), Path(scratch) / name)
                return result.written

            rows.append((f"export {fmt}", *timed(lambda export=export: asyncio.run(export()))))

    lines = [
        "# Reading a run's records: the client's stream and the exports",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {cpu_model()}, {platform.python_version()}, "
        f"{args.records} records ({size / 1e6:.1f} MB of JSONL) in parts of {PART_SIZE} over "
        f"{SHARDS} shards on a local folder (committed in {commit_s:.1f} s). "
        "Produced by `bench/record_stream.py`.",
        "",
        "Every export reads all the records (one per row and sample) and writes the items it",
        "makes of them: SFT rows of the passing half, one DPO pair per prompt, one token row",
        "or ATIF file per record. Wall-clock time on a machine shared with other work.",
        "",
        "| what | records read | items written | seconds | records read/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for what, count, seconds in rows:
        read = count if not what.startswith("export") else args.records
        lines.append(f"| {what} | {read} | {count} | {seconds:.2f} | {read / seconds:,.0f} |")
    report = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "record_stream.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
