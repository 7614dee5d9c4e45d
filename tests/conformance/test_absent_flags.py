"""Osmosis flags we do not implement say so and what to use instead, with exit code 1."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rollout_operator.cli.main import cli


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "-m", "agent:loop", "-d", "data.jsonl", "--model", "m", "--eval-fn", "r:f"],
        ["test", "--module", "agent:loop", "-d", "data.jsonl"],
        ["test", "--agent", "agent:loop", "-d", "data.jsonl"],
    ],
    ids=["eval -m", "test --module", "test --agent"],
)
def test_module_agent_loops_point_to_mcp(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "--module agent loops (RolloutAgentLoop classes) are not supported yet" in result.stderr
    assert "pass --mcp DIR" in result.stderr
