"""Where a record stream stands: per shard, the next part to read and how many of its records
were already yielded. A cursor is a short string a trainer can save with its checkpoint."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CURSOR_VERSION = "c1"
_ENTRY = re.compile(r"^(\d+)=(\d+)\.(\d+)$")


class CursorError(ValueError):
    """A cursor string that `Cursor.parse` cannot read."""


@dataclass(frozen=True, slots=True)
class Position:
    """In one shard: the next part number, and the records of that part already yielded."""

    part: int = 0
    line: int = 0


@dataclass(slots=True)
class Cursor:
    """Per shard index, the `Position` to go on from; a shard not named starts at its first
    part."""

    shards: dict[int, Position] = field(default_factory=dict)

    def at(self, shard: int) -> Position:
        return self.shards.get(shard, Position())

    def advance(self, shard: int, part: int, line: int) -> None:
        """`line` records of `part` are now yielded."""
        self.shards[shard] = Position(part, line)

    def copy(self) -> Cursor:
        return Cursor(dict(self.shards))

    def __str__(self) -> str:
        entries = ";".join(f"{shard}={pos.part}.{pos.line}"
                           for shard, pos in sorted(self.shards.items()))
        return f"{CURSOR_VERSION}:{entries}"

    @classmethod
    def parse(cls, text: str | Cursor | None) -> Cursor:
        """A cursor from its string (or a copy of a cursor; None: the start)."""
        if text is None:
            return cls()
        if isinstance(text, Cursor):
            return text.copy()
        version, sep, body = text.strip().partition(":")
        if not sep or version != CURSOR_VERSION:
            raise CursorError(f"{text!r} is not a record stream cursor (it starts with "
                              f"{CURSOR_VERSION}:, as str(stream.cursor) gives)")
        shards: dict[int, Position] = {}
        for entry in filter(None, body.split(";")):
            match = _ENTRY.match(entry)
            if match is None:
                raise CursorError(f"cursor {text!r}: {entry!r} is not shard=part.line")
            shards[int(match.group(1))] = Position(int(match.group(2)), int(match.group(3)))
        return cls(shards)
