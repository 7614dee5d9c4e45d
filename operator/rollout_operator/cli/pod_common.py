"""What the pod entrypoints (`sync`, `serve-tools`, `work`, `aggregate`) share.

Each entrypoint reports its outcome as one JSON object in the container's termination message,
which Kubernetes copies into the pod's status for the operator to read (at most 4 KiB). The
same JSON is printed as the last line on stdout, for local runs and logs. `run_pod_command`
wraps an entrypoint: logging, the run config, the termination message on success and on
failure, and the exit code. Secrets the pod holds (its environment's known secret variables and
the run's judge keys) are scrubbed from its log lines and its termination message.

Exit codes: 0 done; 1 failed in a way a retry may fix (the Job retries the pod); 2 the
configuration is wrong and a retry cannot help; 143 stopped by SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from rollout_operator.cli.process_exit import exit_now
from rollout_operator.runtime.errors import LocalExecutionError
from rollout_operator.runtime.run_config import RunConfig, RunConfigError
from rollout_operator.runtime.scrub import (
    Scrubber,
    install_log_scrubbing,
    process_scrubber,
    use_process_scrubber,
)

logger = logging.getLogger(__name__)

TERMINATION_MESSAGE_ENV = "ROLLOUT_TERMINATION_MESSAGE_PATH"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
MAX_TERMINATION_MESSAGE_BYTES = 4096
LOG_LEVEL_ENV = "ROLLOUT_LOG_LEVEL"
JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"

EXIT_OK = 0
EXIT_RETRY = 1
EXIT_CONFIG = 2
EXIT_TERMINATED = 143

_MIN_STRING = 16
NOT_LOGGED = frozenset({"bundleFetchURL"})


class PodFailure(Exception):
    """An entrypoint cannot finish; `exit_code` says whether a retry may help.

    `result` is merged into the termination message beside `error`.
    """

    def __init__(
        self, message: str, *, exit_code: int = EXIT_RETRY, result: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = dict(result or {})


def configure_pod_logging() -> None:
    """Plain timestamped lines on stderr (collected by the cluster's log pipeline)."""
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "LiteLLM", "litellm", "mcp", "fastmcp", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def termination_message_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(TERMINATION_MESSAGE_ENV) or DEFAULT_TERMINATION_MESSAGE_PATH)


def fit_json(payload: Mapping[str, Any], limit: int = MAX_TERMINATION_MESSAGE_BYTES) -> str:
    """`payload` as compact JSON of at most `limit` bytes.

    When it is too long, long strings are cut (with "...") and long lists shortened, more and
    more, until it fits; counts and numbers are never changed.
    """
    text = _dumps(payload)
    if len(text.encode()) <= limit:
        return text
    max_string, max_items = 1024, 64
    while max_string >= _MIN_STRING:
        text = _dumps(_shrink(payload, max_string, max_items))
        if len(text.encode()) <= limit:
            return text
        max_string //= 2
        max_items = max(1, max_items // 2)
    keys = ", ".join(sorted(str(k) for k in payload))[: limit // 2]
    return _dumps({"truncated": True, "keys": keys})


def write_termination_message(
    payload: Mapping[str, Any], *, environ: Mapping[str, str] = os.environ
) -> str:
    """Write `payload` (scrubbed, made to fit 4 KiB) to the termination-message file and
    stdout; fields in `NOT_LOGGED` (signed URLs) go to the file only, never to the log."""
    scrubbed = process_scrubber().scrub_data(payload)
    text = fit_json(scrubbed)
    path = termination_message_path(environ)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        logger.warning("Could not write the termination message to %s: %s", path, exc)
    hidden = {k: ("(not logged)" if k in NOT_LOGGED and v else v) for k, v in scrubbed.items()}
    print(fit_json(hidden), flush=True)
    return text


def job_index(environ: Mapping[str, str] = os.environ, *, count: int | None = None) -> int:
    """`$JOB_COMPLETION_INDEX` (0 when unset and `count` is 1 or unknown)."""
    raw = environ.get(JOB_INDEX_ENV)
    if raw is None or raw == "":
        if count is not None and count > 1:
            raise PodFailure(
                f"{JOB_INDEX_ENV} is not set; with {count} shards each worker needs its index "
                "(it runs as a pod of an Indexed Job)",
                exit_code=EXIT_CONFIG,
            )
        return 0
    try:
        index = int(raw)
    except ValueError:
        message = f"{JOB_INDEX_ENV}={raw!r} is not a number"
        raise PodFailure(message, exit_code=EXIT_CONFIG) from None
    if index < 0 or (count is not None and index >= count):
        bound = f" (the run has {count} shards)" if count is not None else ""
        raise PodFailure(f"{JOB_INDEX_ENV}={index} is out of range{bound}", exit_code=EXIT_CONFIG)
    return index


def load_run_config(environ: Mapping[str, str] = os.environ) -> RunConfig:
    """The `RunConfig` from `ROLLOUT_RUN_CONFIG`; a `PodFailure` (exit 2) if it is unusable.

    The process's scrubber learns the run's judge keys (`spec.scoring.secrets`) from it.
    """
    try:
        config = RunConfig.from_env(environ)
    except RunConfigError as exc:
        raise PodFailure(str(exc), exit_code=EXIT_CONFIG) from None
    use_process_scrubber(Scrubber.for_run(config.spec, environ))
    return config


def run_pod_command(body: Callable[[], Mapping[str, Any]]) -> NoReturn:
    """Run an entrypoint's body and exit: its result, or the error, is the termination message.

    `PodFailure` exits with its code; configuration errors of the runtime (a bad dataset, an
    unknown scorer, a storage URL that cannot work) exit 2; anything else exits 1 so that the
    Job retries.
    """
    configure_pod_logging()
    use_process_scrubber(Scrubber.from_environ(os.environ))
    install_log_scrubbing()
    try:
        result = body()
    except PodFailure as exc:
        logger.error("%s", exc)
        _finish({**exc.result, "error": str(exc)}, exc.exit_code)
    except KeyboardInterrupt:
        _finish({"error": "interrupted"}, EXIT_TERMINATED)
    except LocalExecutionError as exc:
        logger.error("%s", exc)
        _finish({"error": str(exc)}, EXIT_CONFIG if _is_config_error(exc) else EXIT_RETRY)
    except Exception as exc:
        logger.exception("Failed")
        _finish({"error": f"{type(exc).__name__}: {exc}"}, EXIT_RETRY)
    _finish(dict(result), EXIT_OK)


def _is_config_error(exc: LocalExecutionError) -> bool:
    from rollout_operator.runtime.errors import (
        DatasetParseError,
        DatasetValidationError,
        EvalFnError,
        MCPLoadError,
        ProviderError,
    )
    from rollout_operator.runtime.models.naming import ModelConfigError
    from rollout_operator.runtime.storage import StorageConfigError

    if isinstance(exc, ProviderError):
        return False
    return isinstance(
        exc,
        DatasetParseError | DatasetValidationError | EvalFnError | MCPLoadError
        | ModelConfigError | StorageConfigError,
    )


def _finish(payload: Mapping[str, Any], code: int) -> NoReturn:
    write_termination_message(payload)
    exit_now(code)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _shrink(value: Any, max_string: int, max_items: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= max_string else value[: max_string - 3] + "..."
    if isinstance(value, Mapping):
        return {k: _shrink(v, max_string, max_items) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shrink(v, max_string, max_items) for v in list(value)[:max_items]]
    return value


T = TypeVar("T")


async def answer_within(ask: Callable[[], Awaitable[T]], *, wait_s: float,
                        retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
                        waiting: Callable[[Exception], None] | None = None) -> T:
    """`ask()`'s answer, asked again after 0.5, 1, 2 ... (at most 10) s while it raises
    `retry_on`, for up to `wait_s` (a server still starting); past that its last error is
    raised. `waiting` hears each error that is waited out."""
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            return await ask()
        except retry_on as exc:
            if time.monotonic() + delay > deadline:
                raise
            if waiting is not None:
                waiting(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
