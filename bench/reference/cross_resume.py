"""Show `osmosis eval` 0.2.17 and `rolloutctl eval` resuming each other's interrupted runs.

    .venv/bin/python bench/reference/cross_resume.py --osmosis /tmp/ref/venv/bin/osmosis

For each direction, in a fresh copy of examples/calculator with its own OSMOSIS_CACHE_DIR and
the scripted OpenAI-compatible model of tests/support (300 ms per request): the first tool runs
`eval --limit 6` and gets SIGINT once two runs are printed (exit 130, progress saved); the second
tool runs the same command and must resume (`Resuming eval (k/6 runs completed)`), run only the
rest and finish with exit 0 and the same mean. Also checks that a finished task is reported as
cached by the other tool. Writes bench/results/osmosis_cross_resume.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "operator")]

from tests.support.cli import EXAMPLE, cli_env, rolloutctl_argv  # noqa: E402
from tests.support.scripted_model import ScriptedModelServer  # noqa: E402

REWARD = "reward_fn.compute_reward:numbers_match_reward"


def _flags(base_url: str) -> list[str]:
    return ["--mcp", "./mcp", "-d", "test_data.jsonl", "--model", "scripted:sleep-300",
            "--base-url", base_url, "--api-key", "EMPTY", "--eval-fn", REWARD, "--limit", "6"]


def _interrupted(argv: list[str], cwd: Path, env: dict[str, str], after: int) -> tuple[int, str]:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(f"[{after}/"):
            process.send_signal(signal.SIGINT)
    return process.wait(), "".join(lines)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout


def _mean(text: str) -> str:
    found = re.search(r"mean=(\d\.\d+)", text)
    return found.group(1) if found else "?"


def direction(first: list[str], second: list[str], label: str, base_url: str,
              work: Path) -> list[str]:
    repo = work / label
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    env = cli_env({"OSMOSIS_CACHE_DIR": str(work / f"{label}-cache")})
    code1, _ = _interrupted([*first, *_flags(base_url)], repo, env, after=2)
    cache_files = sorted((work / f"{label}-cache").rglob("*_*.json"))
    saved = len(json.loads(cache_files[-1].read_text())["runs"]) if cache_files else 0
    code2, out2 = _run([*second, *_flags(base_url)], repo, env)
    resumed = re.search(r"Resuming eval \((\d+)/(\d+) runs completed\)", out2)
    code3, out3 = _run([*first, *_flags(base_url)], repo, env)
    cached = "Evaluation already completed (cached)." in out3
    ok = (code1 == 130 and code2 == 0 and resumed is not None
          and int(resumed.group(1)) == saved and code3 == 0 and cached)
    return [
        f"| {label} | {code1} | {saved}/6 | {resumed.group(0) if resumed else 'not resumed'} "
        f"| {code2} | {_mean(out2)} | {'yes' if cached else 'no'} | {'ok' if ok else 'FAILED'} |"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osmosis", required=True, help="the reference's osmosis executable")
    args = parser.parse_args()
    osmosis = [args.osmosis, "eval"]
    ours = [*rolloutctl_argv(["eval"])]
    rows = [
        "| first tool, then second | first exit | runs saved | second tool says | second exit "
        "| mean | first tool then sees it cached | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with ScriptedModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        rows += direction(osmosis, ours, "osmosis eval -> rolloutctl eval", server.base_url,
                          Path(tmp))
        rows += direction(ours, osmosis, "rolloutctl eval -> osmosis eval", server.base_url,
                          Path(tmp))
    report = "\n".join([
        "# Cross-tool resume: osmosis eval 0.2.17 and rolloutctl eval",
        "",
        "Produced by `bench/reference/cross_resume.py` (the reference built by",
        "`bench/reference/osmosis_0217.sh`; examples/calculator, `--limit 6`, scripted model at",
        "300 ms per request, SIGINT after the second progress line).",
        "",
        *rows,
        "",
    ])
    out = REPO_ROOT / "bench" / "results" / "osmosis_cross_resume.md"
    out.write_text(report, encoding="utf-8")
    print(report)
    return 0 if "FAILED" not in report else 1


if __name__ == "__main__":
    raise SystemExit(main())
