"""One classification of failed model calls, shared by the litellm and the lean HTTP client.

Each client first reduces what went wrong to a `Failure` (what kind, which HTTP status, the
endpoint's own words); `to_provider_error` then decides, in one place, whether the whole batch
must stop (`SystemicProviderError`), whether the call may be retried, and what the message says.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import aiohttp

from rollout_operator.runtime.errors import ProviderError, SystemicProviderError

FailureKind = Literal[
    "http",  # the endpoint answered with an error status
    "timeout",  # no complete answer within the request timeout
    "connect",  # no connection at all: refused, DNS failure, unreachable
    "disconnect",  # the connection broke before the reply was complete
    "budget",  # litellm's own budget limit
    "no_provider",  # litellm cannot tell which provider the model belongs to
    "context_window",  # the conversation no longer fits the model
    "invalid_reply",  # a 2xx answer that is not a chat completion
    "unexpected",  # anything else
]

_DETAIL_LIMIT = 300
OUTAGE_STATUSES = frozenset({502, 503, 504})
"""Answers that say the endpoint is unavailable (a proxy or load balancer in front of it)."""


@dataclass(frozen=True, slots=True)
class Failure:
    kind: FailureKind
    status: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CallSite:
    """Which call failed, for the message; the key is only used to scrub it from the text."""

    model: str
    endpoint: str
    api_key: str | None = None


def to_provider_error(failure: Failure, site: CallSite) -> ProviderError:
    """The error the agent loop sees for a failed call."""
    detail = _scrub(failure.detail, site.api_key)
    where = f"model '{site.model}' at {site.endpoint}"
    status = failure.status
    suffix = f": {detail}" if detail else ""

    match failure.kind:
        case "connect":
            return SystemicProviderError(
                f"Cannot connect to {site.endpoint} for model '{site.model}'{suffix}. "
                "Check the base URL and that the server is running.",
                outage=True,
            )
        case "budget":
            return SystemicProviderError(
                f"Budget exceeded for {where}{suffix}. Check the account's credits or limits.",
                status=status,
            )
        case "no_provider":
            return SystemicProviderError(
                f"LLM provider not provided for {where}{suffix}. "
                "Use 'provider/model' (for example: openai/gpt-5-mini) or pass --base-url."
            )
        case "timeout":
            return ProviderError(
                f"Request to {where} timed out{suffix}", status=status, retryable=True
            )
        case "disconnect":
            return ProviderError(
                f"Connection to {site.endpoint} for model '{site.model}' dropped before the "
                f"reply was complete{suffix}",
                retryable=True,
                outage=True,
            )
        case "context_window":
            return ProviderError(
                f"Context window exceeded for {where}{suffix}. "
                "Reduce max_turns, max_tokens or the prompt.",
                status=status,
            )
        case "invalid_reply":
            return ProviderError(
                f"Invalid reply from {where}{suffix}", status=status
            )
        case "http" if status is not None:
            return _http_error(status, where, suffix)
        case _:
            return ProviderError(f"Model call to {where} failed{suffix}", status=status)


def _http_error(status: int, where: str, suffix: str) -> ProviderError:
    if status == 401:
        return SystemicProviderError(
            f"Authentication failed (HTTP 401) for {where}{suffix}. Check the API key.",
            status=status,
        )
    if status in (402, 403):
        return SystemicProviderError(
            f"Permission denied or quota exhausted (HTTP {status}) for {where}{suffix}. "
            "Check the key's permissions and the account's credits.",
            status=status,
        )
    if status == 404:
        return SystemicProviderError(
            f"Not found (HTTP 404) for {where}{suffix}. "
            "Check the model name and the base URL (it usually ends in /v1).",
            status=status,
        )
    if status == 429:
        return ProviderError(f"Rate limited (HTTP 429) by {where}{suffix}",
                             status=status, retryable=True)
    if status >= 500 or status in (408, 409, 425):
        return ProviderError(f"Server error (HTTP {status}) from {where}{suffix}",
                             status=status, retryable=True, outage=status in OUTAGE_STATUSES)
    return ProviderError(f"Request rejected (HTTP {status}) by {where}{suffix}", status=status)


def failure_from_exception(exc: BaseException) -> Failure:
    """Reduce an exception from aiohttp, httpx, the openai SDK or litellm to a `Failure`.

    Transport errors are looked for along the whole cause chain first, because litellm reports
    a refused connection as an HTTP 500 and a read timeout as a generic API error.
    """
    chain = list(_causes(exc))
    transport = [(error, _transport_kind(error)) for error in chain]
    found = [(error, kind) for error, kind in transport if kind is not None]
    if found:
        kind = found[0][1]
        assert kind is not None
        # The innermost error of that kind names the cause best ("Connect call failed").
        deepest = [error for error, other in found if other == kind][-1]
        return Failure(kind, None, _describe(deepest))
    for error in chain:
        names = {cls.__name__ for cls in type(error).__mro__}
        text = provider_text(error)
        status = getattr(error, "status_code", None)
        status = status if isinstance(status, int) else None
        if "BudgetExceededError" in names:
            return Failure("budget", status, text)
        if "ContextWindowExceededError" in names:
            return Failure("context_window", status, text)
        if "llm provider not provided" in text.lower():
            return Failure("no_provider", status, text)
        if "Timeout" in names or "APITimeoutError" in names:
            return Failure("timeout", status, text)
        if status is not None:
            return Failure("http", status, text)
        if "APIConnectionError" in names:
            return Failure("connect", None, text)
    return Failure("unexpected", None, _describe(exc))


def _transport_kind(error: BaseException) -> FailureKind | None:
    if isinstance(error, aiohttp.ClientConnectorError | ConnectionRefusedError | socket.gaierror):
        return "connect"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(
        error,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | ConnectionResetError
        | BrokenPipeError,
    ):
        return "disconnect"
    cls = type(error)
    if cls.__module__.split(".")[0] == "httpx":
        names = {base.__name__ for base in cls.__mro__}
        if "ConnectError" in names:
            return "connect"
        if "TimeoutException" in names:
            return "timeout"
        if names & {"RemoteProtocolError", "ReadError", "WriteError"}:
            return "disconnect"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_LITELLM_NOISE = ("\nReceived Model Group=", "\nTraceback", "\nRequest to ", "\nPass model as")


def provider_text(error: BaseException) -> str:
    """The provider's own message, without litellm's class-name prefixes and trailing hints."""
    text = str(getattr(error, "message", None) or error)
    for marker in _LITELLM_NOISE:
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    text = text.strip()
    if text.startswith("litellm."):
        text = text.partition(": ")[2] or text
    name = type(error).__name__
    text = text.removeprefix(f"{name}: ")
    for prefix in ("OpenAIException - ", "Hosted_vllmException - "):
        text = text.removeprefix(prefix)
    return _clip(text)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return _clip(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."


def _scrub(text: str, api_key: str | None) -> str:
    if api_key and len(api_key) >= 4 and api_key in text:
        return text.replace(api_key, "***")
    return text
