"""Reading a user's RolloutRun YAML within fixed bounds, so a hostile file is refused cheaply.

A RolloutRun manifest is a few kilobytes and a few hundred YAML nodes, nested about six levels.
The loader refuses, before building any Python object, a file larger than `MAX_MANIFEST_BYTES`,
nesting deeper than `MAX_DEPTH`, and more than `MAX_NODES` nodes once aliases are expanded (an
alias "bomb" is a few lines whose aliases expand to billions of nodes: PyYAML builds it as shared
objects, but everything that later walks or copies it, validation included, pays for every one).
Recursive aliases are refused too. Ordinary anchors and aliases load as before.

The limits are checked while composing, one node at a time, in Python; the events come from
libyaml when PyYAML has it (about ten times faster) and from PyYAML's own parser otherwise.
Neither parser recurses, so the depth limit is met here before Python's recursion limit.
Every refusal is a `ManifestYAMLError` with a one-line message that says what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, NodeEvent
from yaml.nodes import Node
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_MANIFEST_BYTES = 1 << 20
MAX_DEPTH = 100
MAX_NODES = 20_000


_TOO_LARGE = (
    f"larger than {MAX_MANIFEST_BYTES >> 20} MiB; a RolloutRun manifest is a few kilobytes: "
    "give a file with the RolloutRun alone"
)


class ManifestYAMLError(ValueError):
    """The text is not YAML this loader accepts; the message is one line."""


def read_manifest(file: IO[str] | IO[bytes]) -> str:
    """The text of `file`, of which no more than `MAX_MANIFEST_BYTES` (+1) is read."""
    try:
        data = file.read(MAX_MANIFEST_BYTES + 1)
    except UnicodeDecodeError as exc:  # a text stream in the locale's encoding
        raise ManifestYAMLError(f"not {exc.encoding} text; save the manifest as UTF-8") from None
    if _size(data) > MAX_MANIFEST_BYTES:
        raise ManifestYAMLError(_TOO_LARGE)
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestYAMLError(
            f"not UTF-8 text (byte {exc.start}); save the manifest as UTF-8"
        ) from None


def load_manifest_documents(text: str) -> list[Any]:
    """The non-empty documents of the YAML stream `text`, built with safe tags only."""
    if _size(text) > MAX_MANIFEST_BYTES:
        raise ManifestYAMLError(_TOO_LARGE)
    loader = BoundedLoader(text)
    try:
        documents = []
        while loader.check_node():
            document = loader.construct_document(loader.get_node())
            if document is not None:
                documents.append(document)
        return documents
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem):  # libyaml's own limit, met while scanning ahead
            line = exc.problem_mark.line + 1 if exc.problem_mark else 0
            raise ManifestYAMLError(_too_deep(line)) from None
        raise ManifestYAMLError(f"not valid YAML: {_one_line(exc)}") from None
    except yaml.YAMLError as exc:
        raise ManifestYAMLError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def _size(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))


def _too_deep(line: int) -> str:
    return (f"nested more than {MAX_DEPTH} levels deep (line {line}); a RolloutRun needs fewer "
            "than ten: remove the extra brackets or indentation")


def _one_line(exc: yaml.MarkedYAMLError) -> str:
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            parts.append(f"{' '.join(str(text).split())}{where}")
    return ": ".join(parts) or exc.__class__.__name__


class _BudgetComposer(Composer):
    """PyYAML's composer, counting nodes (aliases by their expanded size) and nesting depth."""

    peek_event: Callable[[], Event]  # from the parser the loader class mixes in

    def __init__(self) -> None:
        super().__init__()
        self._nodes = 0  # with each alias counted as the nodes it stands for
        self._from_aliases = 0
        self._depth = 0
        self._expanded: dict[str, int] = {}  # anchor -> nodes it stands for, once complete
        self._open: set[str] = set()  # anchors of collections still being composed

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        self._expanded.clear()
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, AliasEvent):
            alias = str(event.anchor)
            if alias in self._open:
                raise ManifestYAMLError(
                    f"alias *{alias} (line {line}) refers to a collection that contains it; "
                    "a manifest cannot be recursive: write the value out instead"
                )
            self._count(self._expanded.get(alias, 1), line, alias=True)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise ManifestYAMLError(_too_deep(line))
        anchor = event.anchor if isinstance(event, NodeEvent) else None
        before = self._nodes
        self._count(1, line)
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if anchor is not None:
            self._expanded[anchor] = self._nodes - before
        return node

    def _count(self, nodes: int, line: int, *, alias: bool = False) -> None:
        self._nodes += nodes
        self._from_aliases += nodes if alias else 0
        if self._nodes <= MAX_NODES:
            return
        if self._from_aliases:
            raise ManifestYAMLError(
                f"more than {MAX_NODES} YAML nodes once aliases are expanded (line {line}); "
                "a RolloutRun has a few hundred: write values out instead of nesting aliases"
            )
        raise ManifestYAMLError(
            f"more than {MAX_NODES} YAML nodes (line {line}); a RolloutRun has a few hundred: "
            "give a file with the RolloutRun alone"
        )


class PythonBoundedLoader(Reader, Scanner, Parser, _BudgetComposer, SafeConstructor, Resolver):
    """The bounded safe loader over PyYAML's own (pure Python) parser."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BudgetComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


BoundedLoader: type[PythonBoundedLoader | LibyamlBoundedLoader] = PythonBoundedLoader

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class LibyamlBoundedLoader(_BudgetComposer, CParser, SafeConstructor, Resolver):
        """The bounded safe loader over libyaml's parser (about ten times faster)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BudgetComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    BoundedLoader = LibyamlBoundedLoader
