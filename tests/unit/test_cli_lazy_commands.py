"""`rolloutctl` imports a subcommand only when it runs; its help listing matches the commands."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rollout_operator.cli.eval_cmd import eval_group
from rollout_operator.cli.lazy_group import LazyCommand, LazyGroup
from rollout_operator.cli.main import COMMANDS, cli
from tests.support.cli import cli_env

GROUPS: list[tuple[str, LazyGroup]] = [("rolloutctl", cli), ("eval", eval_group)]  # type: ignore[list-item]


@pytest.mark.parametrize(("label", "group"), GROUPS)
def test_each_entry_names_its_command_and_lists_it_as_the_command_itself_would(
    label: str, group: LazyGroup
) -> None:
    for name, entry in group.lazy.items():
        command = entry.load()
        assert command.name == name, f"{label} {name}: {entry.target} is named {command.name}"
        assert command.hidden == entry.hidden, f"{label} {name}: hidden differs"
        if not command.hidden:
            for limit in (30, 45, 80, 500):
                assert entry.stand_in(name).get_short_help_str(limit) == \
                    command.get_short_help_str(limit), f"{label} {name}: help differs"


def test_help_lists_the_visible_commands_without_importing_them() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from rollout_operator.cli.main import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.startswith('rollout_operator.cli.')"
        " and m.endswith(('_cmd', '_group')) or m.startswith('rollout_operator.cli.pod_')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True,
                          text=True, timeout=60, check=True)
    listing, _, imported = done.stdout.rpartition("IMPORTED")
    assert imported.strip() == "['rollout_operator.cli.lazy_group']"
    visible = sorted(name for name, entry in COMMANDS.items() if not entry.hidden)
    listed = [line.split()[0] for line in listing.split("Commands:")[1].splitlines()
              if line.startswith("  ")]
    assert listed == visible
    assert "work" not in listed and "describe" in listed


def test_every_command_is_reachable_and_the_full_table_is_loaded_on_request() -> None:
    assert set(cli.commands) == set(COMMANDS)
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0
    assert "cache" in result.output and "--batch-size" in result.output


def test_an_entry_that_is_not_a_command_is_refused() -> None:
    with pytest.raises(TypeError, match="not a click command"):
        LazyCommand("rollout_operator.cli.main:COMMANDS", "").load()


def test_an_added_command_replaces_the_lazy_entry() -> None:
    group = LazyGroup("g", lazy={"x": LazyCommand("rollout_operator.cli.main:cli", "lazy")})
    replacement = click.Command("x", help="direct")
    group.add_command(replacement)
    assert group.get_command(click.Context(group), "x") is replacement
    assert group.list_commands(click.Context(group)) == ["x"]
