"""What scrubbing secrets costs per trajectory record, on the worker's commit path.

`ShardWriter.add` serializes each record (`model_dump_json`) and, when the writer's scrubber
knows secrets, checks the JSON line for them (`Scrubber.finds`: one substring search per form
of each secret); only a line that holds one is parsed, scrubbed and written again. This measures,
for records of a few sizes (a calculator conversation padded with tool output):

- serialize only: the line, as without secrets configured (an empty scrubber adds one test);
- + check, typical worker: the secrets of a worker pod (model key, judge key, three storage
  credentials), none of them in the record;
- + check, with an SSH key: the same plus a PEM private key (scrubbed line by line; the sync pod
  holds one, not the workers);
- scrub a hit: a record whose tool output holds the model key (parse, scrub, write again).

Run: `.venv/bin/python bench/scrub_cost.py [--quick]`; results go to bench/results/scrub_cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from bench._machine import cpu_model  # noqa: E402

from rollout_operator.runtime.records import TrajectoryRecord  # noqa: E402
from rollout_operator.runtime.scrub import Scrubber  # noqa: E402

SIZES = (1_000, 4_000, 16_000)
SYSTEM = "You are a calculator assistant. Use the tools, then answer with #### and the number."


def make_record(size: int, leak: str = "") -> TrajectoryRecord:
    """A calculator trajectory whose JSON line is about `size` bytes."""
    messages: list[dict[str, object]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is 12 * 17?"},
    ]
    turn = 0
    while len(json.dumps(messages)) < size - 600:
        turn += 1
        messages.append({"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{turn}", "type": "function",
            "function": {"name": "multiply",
                         "arguments": json.dumps({"first_val": 12, "second_val": 17})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{turn}",
                         "content": "204.0 " + "lorem ipsum dolor sit amet, " * 8 + leak})
    messages.append({"role": "assistant", "content": "The result is 204.0\n#### 204"})
    return TrajectoryRecord(
        rollout_id="calc-7-0", row_index=7, status="completed", finish_reason="stop",
        messages=messages, scores={"reward_fn.compute_reward:numbers_match_reward": 1.0},
        reward=1.0, ground_truth="204", metadata={"topic": "math"},
        tools=["multiply"], fastmcp_version="2.12.0",
    )


def worker_environ() -> dict[str, str]:
    return {
        "ROLLOUT_MODEL_API_KEY": "sk-proj-" + secrets.token_urlsafe(36),
        "JUDGE_API_KEY": "sk-ant-api03-" + secrets.token_urlsafe(40),
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30).replace("_", "/"),
        "AWS_SESSION_TOKEN": secrets.token_urlsafe(300),
    }


def pem_key() -> str:
    body = "\n".join(secrets.token_urlsafe(48) for _ in range(26))
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def measure(size: int, environ: dict[str, str], empty: Scrubber, worker: Scrubber,
            with_ssh: Scrubber, number: int) -> tuple[int, float, float, float, float, float]:
    record = make_record(size)
    line = record.model_dump_json()
    leaked = make_record(size, leak=environ["ROLLOUT_MODEL_API_KEY"]).model_dump_json()
    assert not worker.finds(line) and worker.finds(leaked)
    return (
        len(line),
        per_call_us(record.model_dump_json, number),
        per_call_us(lambda: empty.finds(line), number),
        per_call_us(lambda: worker.finds(line), number),
        per_call_us(lambda: with_ssh.finds(line), number),
        per_call_us(lambda: worker.scrub_json(leaked, ensure_ascii=False, separators=(",", ":")),
                    max(number // 10, 100)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer calls per measurement.")
    args = parser.parse_args()
    number = 2_000 if args.quick else 20_000

    environ = worker_environ()
    empty = Scrubber.from_environ({})
    worker = Scrubber.from_environ(environ, ["JUDGE_API_KEY"])
    with_ssh = Scrubber.from_environ({**environ, "ROLLOUT_GIT_SSH_KEY": pem_key()},
                                     ["JUDGE_API_KEY"])

    rows = [measure(size, environ, empty, worker, with_ssh, number) for size in SIZES]

    lines = [
        "# Scrubbing secrets: cost per trajectory record",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu_model()}, nproc {os.cpu_count()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; best of 5 repeats of {number} calls",
        f"- substring searches per check: {len(worker)} for a typical worker (5 secrets), "
        f"{len(with_ssh)} with an SSH key",
        "",
        "| record bytes | serialize µs | empty scrubber µs | check, typical worker µs "
        "| check, with an SSH key µs | scrub a hit µs |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, serialize, none, typical, ssh, hit in rows:
        lines.append(f"| {size} | {serialize:.1f} | {none:.2f} | {typical:.1f} | {ssh:.1f} "
                     f"| {hit:.0f} |")
    lines += [
        "",
        "The check columns are what scrubbing adds to each record that holds no secret (the",
        "serialize column is paid anyway). A record that holds one is parsed, scrubbed field by",
        "field and written again: that is rare, and its cost is the last column.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results" / "scrub_cost.md"
    out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
