"""Mask the parts of `osmosis eval` / `rolloutctl eval` output that change from run to run.

Used both to record golden text from the Osmosis 0.2.17 reference (bench/reference/
record_golden.py) and to compare our output with it, so the two are masked the same way.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # The tool and its version: `osmosis-eval v0.2.17` / `rolloutctl-eval v0.1.0`,
    # `osmosis-rollout-test v0.2.17` / `rolloutctl-test v0.1.0`.
    (re.compile(r"^(?:osmosis|rolloutctl)-(?:eval|rollout-test|test) v\S+", re.M),
     "<TOOL> v<VERSION>"),
    (re.compile(r"https?://127\.0\.0\.1:\d+"), "http://<HOST>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:ms|s)\b"), "<DUR>"),
    (re.compile(r"\b\d+m\d+\.\d+s\b"), "<DUR>"),
    (re.compile(r"\d[\d,]* tokens"), "<N> tokens"),
    (re.compile(r"Total tokens: [\d,]+"), "Total tokens: <N>"),
    (re.compile(r"(?:/[^\s/]+)+/\d+_[0-9a-f]{12}\.json"), "<CACHE_FILE>"),
    (re.compile(r"mcp:/\S+"), "mcp:<DIR>"),
    (re.compile(r"^[0-9a-f]{12}(?= )", re.M), "<TASK_ID>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b"), "<TIME>"),
)

_PROGRESS = re.compile(
    r"^(\[\d+/\d+\] (?:\[\w+\] )?(?:OK|FAILED) \(<DUR>, <N> tokens\)).*$", re.M
)
"""A progress line up to its cost: the rest (scores, row and run) is ours alone."""


def mask(text: str) -> str:
    """Volatile values replaced by placeholders, trailing spaces dropped, progress lines cut."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    text = _PROGRESS.sub(r"\1", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"
