"""Errors raised by the runtime.

The names and the hierarchy follow the Osmosis SDK's local execution errors, so that messages and
`except` clauses written for `osmosis test` / `osmosis eval` carry over.
"""

from __future__ import annotations


class LocalExecutionError(Exception):
    """Base class of every error the runtime raises on purpose."""


class DatasetValidationError(LocalExecutionError):
    """A dataset row lacks a required column or holds a value of the wrong kind."""


class DatasetParseError(LocalExecutionError):
    """A dataset file cannot be read (bad JSON line, unsupported extension, malformed CSV)."""


class ToolValidationError(LocalExecutionError):
    """A tool's name or parameter schema cannot be sent to a model."""


class MCPLoadError(LocalExecutionError):
    """`mcp/main.py` cannot be imported or defines no FastMCP server."""


class EvalFnError(LocalExecutionError):
    """A `module:function` scorer reference cannot be loaded or its mode cannot be detected."""


class ProviderError(LocalExecutionError):
    """A model call failed; the rollout that made it fails, the batch goes on.

    `status` is the HTTP status when the endpoint answered; `retryable` says whether the same
    call may succeed later (rate limits, 5xx, timeouts, dropped connections); `outage` that the
    endpoint could not be reached or said it is unavailable (refused or dropped connections,
    502, 503, 504): a worker waits such an outage out before it gives up on the call.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 outage: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.outage = outage


class SystemicProviderError(ProviderError):
    """A model call failed in a way every later call will too (auth, budget, connection, 404)."""

    def __init__(self, message: str, *, status: int | None = None, outage: bool = False):
        super().__init__(message, status=status, retryable=False, outage=outage)
