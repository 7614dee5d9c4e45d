"""`rolloutctl eval` / `test` print what `osmosis eval` / `rollout test` 0.2.17 print.

golden/<scenario>.txt was recorded from the reference CLI by bench/reference/record_golden.py;
here the same scenario runs through our CLI against the same scripted model and the masked
output must be identical (tests/conformance/masking.py says what is masked). The commands run
in this process (click's runner, in the scenario's folder) so the suite pays Python's and
litellm's start-up once; tests/e2e runs the same commands as real processes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rollout_operator.cli.main import cli
from tests.conformance.scenarios import SCENARIOS, Scenario, render
from tests.support.cli import EXAMPLE
from tests.support.scripted_model import ScriptedModelServer

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(record=False) as server:
        yield server


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_output_matches_the_reference(
    scenario: Scenario,
    model: ScriptedModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(repo)
    env = {"OSMOSIS_CACHE_DIR": str(tmp_path / "cache"), "NO_COLOR": "1", "COLUMNS": "200"}
    result = None
    for args in scenario.argv(model.base_url):
        result = CliRunner().invoke(cli, [scenario.command, *args], env=env)
    assert result is not None
    ours = render(result.stdout, result.stderr, result.exit_code)
    assert ours == (GOLDEN / f"{scenario.name}.txt").read_text(encoding="utf-8")
