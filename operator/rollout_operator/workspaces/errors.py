"""The one error a workspace command reports: a message saying what to fix, and a code."""

from __future__ import annotations


class WorkspaceError(Exception):
    """Bad input or a refused operation; `code` goes into the `--json` error envelope."""

    def __init__(self, message: str, code: str = "VALIDATION") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
