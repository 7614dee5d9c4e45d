"""Record `osmosis eval` 0.2.17's console output as golden text for tests/conformance.

    .venv/bin/python bench/reference/record_golden.py --osmosis /tmp/ref/venv/bin/osmosis

Runs the reference CLI (built by bench/reference/osmosis_0217.sh) on a copy of
examples/calculator against the scripted OpenAI-compatible model of tests/support, and writes
each scenario's stdout, stderr and exit code, masked by tests/conformance/masking.py, to
tests/conformance/golden/<scenario>.txt. tests/conformance/test_console_golden.py runs the same
scenarios through `rolloutctl eval` and compares.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "operator")]

from tests.conformance.scenarios import SCENARIOS, Scenario, render  # noqa: E402
from tests.support.cli import EXAMPLE, cli_env  # noqa: E402
from tests.support.scripted_model import ScriptedModelServer  # noqa: E402


def record(osmosis: str, scenario: Scenario, base_url: str, work: Path) -> str:
    repo = work / scenario.name
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    env = cli_env({"OSMOSIS_CACHE_DIR": str(work / f"{scenario.name}-cache")})
    result = None
    for args in scenario.argv(base_url):
        result = subprocess.run([osmosis, *scenario.upstream_command(), *args], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=300)
    assert result is not None
    return render(result.stdout, result.stderr, result.returncode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osmosis", required=True, help="the reference's osmosis executable")
    args = parser.parse_args()
    golden = REPO_ROOT / "tests" / "conformance" / "golden"
    golden.mkdir(parents=True, exist_ok=True)
    with ScriptedModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        for scenario in SCENARIOS:
            text = record(args.osmosis, scenario, server.base_url, Path(tmp))
            (golden / f"{scenario.name}.txt").write_text(text, encoding="utf-8")
            print(f"recorded {scenario.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
