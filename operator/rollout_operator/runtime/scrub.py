"""Known secret values, replaced by `***` in what a process writes.

A second line of defence: user code never gets the model key, storage or git credentials in the
first place (docs/security.md), but the trusted processes hold them, and a value can still end
up in a message: a provider echoing the key in an error, a scorer printing its judge key, a
library logging a request. So every process that holds secrets scrubs them from its records,
its log lines, its termination message and its results before they are written.

The values come from the environment, under the names the pods receive them as: the policy
model key (`ROLLOUT_MODEL_API_KEY`, or any provider's `*_API_KEY`), the judge keys
(`spec.scoring.secrets[].env`, passed as extra names), the storage credentials (`AWS_*`,
`GOOGLE_SERVICE_ACCOUNT_KEY`) and the git credentials (`ROLLOUT_GIT_TOKEN`,
`ROLLOUT_GIT_SSH_KEY`). Values shorter than `MIN_SECRET_CHARS` are ignored, so that a
placeholder such as `EMPTY` does not turn every `EMPTY` into `***`. Besides the value itself,
the forms it takes when it is quoted (JSON and `repr` escaping, URL encoding) are scrubbed; a
multi-line value (a PEM key) is also scrubbed line by line, and a JSON credential (a service
account key) by its key, secret and token fields.

`Scrubber.finds` is the cheap check (a plain substring search per form, a few microseconds over
a record of a few KB); scrubbing proper runs only when it finds something. The process-wide
scrubber (`use_process_scrubber`) is what the log filter (`install_log_scrubbing`) and the pod
entrypoints' termination messages use.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from rollout_operator.api.spec import RolloutRunSpec

MASK = "***"
MIN_SECRET_CHARS = 8

SECRET_ENV_NAMES = (
    "ROLLOUT_MODEL_API_KEY",
    "ROLLOUT_GIT_TOKEN",
    "ROLLOUT_GIT_SSH_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)
"""Variables that hold a secret in every pod that has them (the model key, storage and git)."""
SECRET_ENV_SUFFIXES = ("_API_KEY",)
"""Provider keys the model client may use instead (OPENAI_API_KEY, LITELLM_API_KEY, ...)."""

_JSON_SECRET_FIELD = re.compile(r"key|secret|token|password", re.IGNORECASE)


def secret_env_names(
    environ: Mapping[str, str], extra_names: Iterable[str] = ()
) -> list[str]:
    """The names in `environ` whose values are secrets: the known ones and `extra_names`."""
    extra = set(extra_names)
    return [
        name for name in environ
        if name in SECRET_ENV_NAMES or name in extra or name.endswith(SECRET_ENV_SUFFIXES)
    ]


class Scrubber:
    """Replaces known secret values (and their quoted forms) by `***`.

    An empty scrubber (no values, or none long enough) costs nothing: every method returns its
    argument at once.
    """

    __slots__ = ("_needles", "_probes")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        needles: set[str] = set()
        for value in secrets:
            needles.update(_forms(value))
        self._needles = tuple(sorted(needles, key=lambda s: (-len(s), s)))
        # A text holds a form only if it holds every shorter form inside it (the stripped value
        # inside the raw one, a PEM key's lines inside the key): `finds` looks for these only.
        self._probes = tuple(
            n for n in self._needles if not any(m in n for m in needles if len(m) < len(n))
        )

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] = os.environ, extra_names: Iterable[str] = ()
    ) -> Scrubber:
        """The secrets among `environ`'s values: see `secret_env_names`."""
        return cls(environ[name] for name in secret_env_names(environ, extra_names))

    @classmethod
    def for_run(cls, spec: RolloutRunSpec, environ: Mapping[str, str] = os.environ) -> Scrubber:
        """The secrets a run's process holds: the known ones and the spec's judge keys."""
        return cls.from_environ(environ, [item.env for item in spec.scoring.secrets])

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __len__(self) -> int:
        """How many substring searches `finds` makes (forms inside longer ones are enough)."""
        return len(self._probes)

    def finds(self, text: str) -> bool:
        """Whether `text` holds any secret (in any of its forms).

        One substring search per form: over a few KB, well under a microsecond each, where a
        regex alternation of the same forms takes several times as long.
        """
        return any(probe in text for probe in self._probes)

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by `***` (`text` itself when there is none).

        Secrets that overlap in the text are replaced together, by one `***`.
        """
        if not self.finds(text):
            return text
        spans = sorted(_occurrences(text, self._needles))
        return _splice(text, spans)

    def scrub_data(self, value: Any) -> Any:
        """`value` with secrets scrubbed from every string in it, dict keys included.

        Dicts, lists and tuples are rebuilt only when something in them changed; other values
        are returned as they are.
        """
        if not self._needles:
            return value
        return self._walk(value)

    def scrub_json(self, text: str, **dumps: Any) -> str:
        """JSON `text` with secrets scrubbed from its strings, still valid JSON.

        When `text` holds no secret it is returned as it is; otherwise it is parsed, scrubbed
        with `scrub_data` and written again with `json.dumps(**dumps)`.
        """
        if not self.finds(text):
            return text
        return json.dumps(self._walk(json.loads(text)), **dumps)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            items = [(self._walk(k), self._walk(v)) for k, v in value.items()]
            if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(),
                                                                   strict=True)):
                return value
            return dict(items)
        if isinstance(value, list | tuple):
            walked = [self._walk(v) for v in value]
            if all(new is old for new, old in zip(walked, value, strict=True)):
                return value
            return walked if isinstance(value, list) else tuple(walked)
        return value


def _occurrences(text: str, needles: Iterable[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of every occurrence of every needle, overlapping ones included."""
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            yield at, at + len(needle)
            at = text.find(needle, at + 1)


def _splice(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each run of overlapping or touching `spans` (sorted) replaced by `***`."""
    parts: list[str] = []
    kept = 0
    current: tuple[int, int] | None = None
    for start, end in spans:
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            parts.append(text[kept:current[0]])
            parts.append(MASK)
            kept = current[1]
        current = (start, end)
    if current is not None:
        parts.append(text[kept:current[0]])
        parts.append(MASK)
        kept = current[1]
    parts.append(text[kept:])
    return "".join(parts)


def _forms(value: str) -> set[str]:
    """The strings to search for to find `value`: its parts, each as it may appear quoted."""
    forms: set[str] = set()
    for part in _parts(value):
        as_repr = repr(part)[1:-1]
        for form in (
            part,
            json.dumps(part, ensure_ascii=False)[1:-1],
            json.dumps(part)[1:-1],
            as_repr,
            repr(as_repr)[1:-1],
            json.dumps(as_repr, ensure_ascii=False)[1:-1],
            quote(part, safe=""),
            quote(part),
            quote_plus(part, safe=""),
        ):
            if len(form) >= MIN_SECRET_CHARS:
                forms.add(form)
    return forms


def _parts(value: str) -> set[str]:
    """`value`, stripped, its lines when it has several, and a JSON credential's secret fields."""
    parts = {value, value.strip()}
    stripped = value.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except ValueError:
            document = None
        if isinstance(document, dict):
            for key, field in document.items():
                if isinstance(field, str) and _JSON_SECRET_FIELD.search(str(key)):
                    parts |= _parts(field)
            return {p for p in parts if len(p) >= MIN_SECRET_CHARS}
    if "\n" in stripped:
        parts.update(line.strip() for line in stripped.splitlines())
    return {p for p in parts if len(p) >= MIN_SECRET_CHARS}


# --- the process's scrubber: logs and termination messages ----------------------------------

_process_scrubber = Scrubber()


def process_scrubber() -> Scrubber:
    """The scrubber of this process (empty until `use_process_scrubber` sets one)."""
    return _process_scrubber


def use_process_scrubber(scrubber: Scrubber) -> Scrubber:
    """Make `scrubber` the one log lines and termination messages are scrubbed with."""
    global _process_scrubber
    _process_scrubber = scrubber
    return scrubber


class ScrubLogFilter(logging.Filter):
    """Scrubs a log record's message, traceback and stack with the process's scrubber.

    Attach it to handlers (`install_log_scrubbing`): a filter on a logger sees only the records
    logged on that very logger, not those its children pass up to its handlers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scrubber = _process_scrubber
        if not scrubber:
            return True
        message = record.getMessage()
        scrubbed = scrubber.scrub(message)
        if scrubbed is not message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrubber.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrubber.scrub(record.stack_info)
        return True


_FORMATTER = logging.Formatter()


def install_log_scrubbing(logger: logging.Logger | None = None) -> ScrubLogFilter:
    """Attach a `ScrubLogFilter` to every handler of `logger` (the root logger) and to it."""
    logger = logger or logging.getLogger()
    log_filter = next((f for f in logger.filters if isinstance(f, ScrubLogFilter)), None)
    if log_filter is None:
        log_filter = ScrubLogFilter()
        logger.addFilter(log_filter)
    for handler in logger.handlers:
        if not any(isinstance(f, ScrubLogFilter) for f in handler.filters):
            handler.addFilter(log_filter)
    return log_filter
