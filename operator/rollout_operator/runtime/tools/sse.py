"""Incremental decoding of a server-sent-events body into the `data` of each event.

MCP servers answer a POST with either one JSON body or such a stream; only the `data` field
matters to a client that does not resume streams (`event`, `id` and `retry` are skipped).
"""

from __future__ import annotations


class SseDecoder:
    """Feed it the body in chunks as they arrive; it returns the events completed so far."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The `data` of every event that ended in this chunk; events without data are dropped."""
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        events: list[str] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data:
                    data = "\n".join(self._data)
                    self._data = []
                    if data:
                        events.append(data)
                continue
            field, _, value = line.partition(b":")
            if field == b"data":
                self._data.append(value[1:].decode() if value.startswith(b" ") else value.decode())
        return events
