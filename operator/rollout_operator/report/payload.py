"""The data a report page embeds, compact enough for 10,000 trajectories.

Two parts:

- the table, column by column (`columns`: one list per field, index-aligned), as plain JSON:
  the page draws its first rows from it at once;
- the trajectories (messages, full error, timings), one entry per table row, as gzip-compressed
  JSON in base64: decompressed by the browser (`DecompressionStream`) only when a row is
  first opened.

Both are written into `<script type="application/...">` elements, so `<`, `>` and `&` are
escaped as `\\u003c`, `\\u003e` and `\\u0026` inside JSON strings: no text of a trajectory can
close the element or start markup.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from typing import Any

from rollout_operator.report.model import ReportInput, Rollout

PREVIEW_CHARS = 160
GZIP_LEVEL = 3
"""For 32 MB of trajectories with varied text: 7.9 MB in 2 s, where level 6 gives 7.1 MB in
8 s and level 1 9.1 MB in 1 s (bench/report_size.py's last input)."""
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(value: Any) -> str:
    """`value` as JSON that can sit inside a `<script>` element as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).translate(_SCRIPT_SAFE)


def table_columns(report: ReportInput) -> dict[str, Any]:
    rollouts = report.rollouts
    columns: dict[str, Any] = {
        "row": [r.row_index for r in rollouts],
        "sample": [r.sample_index for r in rollouts],
        "status": [r.status for r in rollouts],
        "finish": [r.finish_reason for r in rollouts],
        "scores": [[_finite(r.scores.get(name)) for r in rollouts] for name in report.scorers],
        "reward": [_finite(r.reward) for r in rollouts],
        "tokens": [r.total_tokens for r in rollouts],
        "ms": [round(r.total_ms, 1) for r in rollouts],
        "tools": [r.tool_calls for r in rollouts],
        "category": [r.error_category for r in rollouts],
        "prompt": [_preview(prompt_text(r.messages)) for r in rollouts],
        "error": [_preview(r.error) for r in rollouts],
    }
    if any(r.model_tag for r in rollouts):
        columns["tag"] = [r.model_tag for r in rollouts]
    return columns


def trajectory(rollout: Rollout) -> dict[str, Any]:
    """What the page shows of one rollout when its row is opened."""
    return {
        "id": rollout.rollout_id,
        "attempt": rollout.attempt,
        "messages": rollout.messages,
        "error": rollout.error,
        "groundTruth": rollout.ground_truth,
        "scores": {k: _finite(v) for k, v in rollout.scores.items()},
        "advantage": _finite(rollout.advantage),
        "usage": {"prompt": rollout.prompt_tokens, "completion": rollout.completion_tokens,
                  "total": rollout.total_tokens, "llmCalls": rollout.llm_calls,
                  "toolCalls": rollout.tool_calls},
        "timing": {"total": rollout.total_ms, "llm": rollout.llm_ms, "tool": rollout.tool_ms,
                   "scoring": rollout.scoring_ms},
    }


def compressed_trajectories(report: ReportInput) -> str:
    """Every rollout's `trajectory`, as a JSON list, gzip-compressed, in base64."""
    data = json.dumps([trajectory(r) for r in report.rollouts], ensure_ascii=False,
                      separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64encode(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)).decode("ascii")


def prompt_text(messages: list[dict[str, Any]] | None) -> str:
    """The first user message's text (the dataset row's prompt)."""
    for message in messages or ():
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: object) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return "" if content is None else str(content)


def _preview(text: str | None) -> str | None:
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
