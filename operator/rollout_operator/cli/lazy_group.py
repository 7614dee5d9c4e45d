"""A click group whose subcommands are imported when used, so `rolloutctl --help` stays fast.

Each subcommand is named with the module and attribute that define it and the first paragraph of
its help; `--help` lists the commands from that text without importing them, and a command's
module is imported only when that command runs (or its own help is asked for).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a subcommand lives, and what `--help` says of it before it is imported."""

    target: str
    """`module:attribute` of the click command."""
    help: str
    """The first paragraph of the command's help, as its docstring starts."""
    hidden: bool = False

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command

    def stand_in(self, name: str) -> click.Command:
        """A command that only carries the help text, for listing."""
        return click.Command(name, help=self.help, hidden=self.hidden)


class LazyGroup(click.Group):
    """`click.Group` over `LazyCommand`s; `commands` loads every one of them when read."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand] | None = None,
                 **kwargs: Any) -> None:
        self.lazy: dict[str, LazyCommand] = dict(lazy or {})
        self._loaded: dict[str, click.Command] = {}
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> MutableMapping[str, click.Command]:
        for name in list(self.lazy):
            self._load(name)
        return self._loaded

    @commands.setter
    def commands(self, value: MutableMapping[str, click.Command]) -> None:
        self._loaded = dict(value)

    def add_lazy(self, name: str, entry: LazyCommand) -> None:
        self.lazy[name] = entry

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self.lazy.pop(name, None)
        self._loaded[name] = cmd

    def _load(self, name: str) -> click.Command | None:
        if name in self._loaded:
            return self._loaded[name]
        entry = self.lazy.get(name)
        if entry is None:
            return None
        command = entry.load()
        self._loaded[name] = command
        return command

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self._loaded, *self.lazy})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self._loaded.get(name) or self.lazy[name].stand_in(name)
            if not command.hidden:
                rows.append((name, command))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit))
                                for name, command in rows])
