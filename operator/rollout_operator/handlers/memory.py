"""What this operator process wrote and its watches may not show yet.

The indexes follow the API server a little behind. A pass right after another one would read
the run without the status just written (its patch would then meet a 409) and its children
without the ones just created (it would try to create them again). So each run remembers the
run as its last status patch returned it, with the version that patch was made onto, and the
children created since; what the watch has caught up with is forgotten.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EXPECTATION_SECONDS = 900.0
"""How long a created child counts as present while the watch neither shows it nor has shown
anything of its kind made after it. Under load a watch may run minutes behind; a child is
forgotten early only once its kind's watch has passed it (see `RunMemory.not_yet_seen`)."""


def _version(obj: Mapping[str, Any] | None) -> str | None:
    value = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    return str(value) if value is not None else None


def _number(version: str | None) -> int | None:
    """A resourceVersion as a number, when it is one (the API server's are, in practice)."""
    try:
        return int(version) if version is not None else None
    except ValueError:
        return None


@dataclass
class RunMemory:
    """One run's: whether a pass over it is under way, its last written version, its children
    created but not yet seen."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards `busy` and `pending`."""
    busy: bool = False
    """A pass over the run is under way."""
    pending: bool = False
    """A trigger came during that pass: it passes once more."""
    written: dict[str, Any] | None = None
    written_onto: str | None = None
    """resourceVersion the last status patch was made onto."""
    created: dict[tuple[str, str], tuple[float, int | None]] = field(default_factory=dict)
    """(kind, name) -> when this process created it, and the resourceVersion the create
    returned (None when the create found it existing)."""

    def begin(self) -> bool:
        """True when the caller may pass over the run now; False when a pass is under way (it
        is asked to pass once more)."""
        with self.lock:
            if self.busy:
                self.pending = True
                return False
            self.busy = True
            return True

    def again(self) -> bool:
        """After a pass: True to pass once more (a trigger came meanwhile), else the pass is
        over (in one step, so no trigger falls between)."""
        with self.lock:
            if self.pending:
                self.pending = False
                return True
            self.busy = False
            return False

    def end(self) -> None:
        """The pass is over, whatever happened (a pass that failed is retried by Kopf)."""
        with self.lock:
            self.busy = self.pending = False

    def latest(self, indexed: dict[str, Any] | None) -> dict[str, Any] | None:
        """The run as the index has it, or as this process last wrote it while the index still
        has the version that write replaced (any other version is newer than both)."""
        if indexed is None or self.written is None:
            return indexed
        if _version(indexed) == self.written_onto:
            return self.written
        self.written = self.written_onto = None  # the watch has caught up (or moved past)
        return indexed

    def wrote(self, onto: str | None, result: dict[str, Any] | None) -> None:
        self.written, self.written_onto = (result, onto) if result and onto else (None, None)

    def created_now(self, kind: str, name: str, version: str | None = None) -> None:
        self.created[(kind, name)] = (time.monotonic(), _number(version))

    def deleted(self, kind: str, name: str) -> None:
        self.created.pop((kind, name), None)

    def not_yet_seen(self, seen: Iterable[tuple[str, str, str | None]],
                     ) -> frozenset[tuple[str, str]]:
        """Children created here that the index does not show yet, from what it shows:
        (kind, name, resourceVersion). A remembered child is forgotten once the index shows
        it, or shows a child of its kind at a later version (that watch has passed the create,
        so the child was deleted since), or after `EXPECTATION_SECONDS`."""
        now = time.monotonic()
        names: set[tuple[str, str]] = set()
        newest: dict[str, int] = {}
        for kind, name, version in seen:
            names.add((kind, name))
            number = _number(version)
            if number is not None:
                newest[kind] = max(newest.get(kind, number), number)
        for key, (when, created_at) in list(self.created.items()):
            passed = created_at is not None and newest.get(key[0], -1) > created_at
            if key in names or passed or now - when > EXPECTATION_SECONDS:
                del self.created[key]
        return frozenset(self.created)


class Memories:
    """RunMemory by run uid, for the whole operator process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunMemory] = {}

    def of(self, uid: str) -> RunMemory:
        with self._lock:
            return self._runs.setdefault(uid, RunMemory())

    def forget(self, uid: str) -> None:
        with self._lock:
            self._runs.pop(uid, None)
