"""The report page: the static template, stylesheet and script (`assets/`) with the run's
summary, charts and data put in, as one HTML file that needs no network.

The summary and the charts are HTML and SVG written here, every value escaped, so they show
before any script runs; the table and the trajectory viewer are drawn by the page's own script
from the embedded data (`payload`). A Content-Security-Policy allows no request at all and only
the page's own script (by its hash), so text from a trajectory can never run.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape
from importlib import resources

from rollout_operator import __version__
from rollout_operator.report import plots
from rollout_operator.report.model import ReportInput
from rollout_operator.report.payload import compressed_trajectories, script_json, table_columns
from rollout_operator.report.summary import (
    ScorerStats,
    failure_counts,
    score_values,
    scorer_stats,
    status_counts,
)

_SLOT = re.compile(r"\{\{(\w+)\}\}")


def asset(name: str) -> str:
    return resources.files("rollout_operator.report").joinpath("assets", name).read_text(
        encoding="utf-8")


def build_page(report: ReportInput) -> str:
    """The whole report as one HTML document."""
    style, script = asset("report.css"), asset("report.js")
    stats = scorer_stats(report)
    slots = {
        "csp": _csp(script, style),
        "title": escape(f"Report: {report.model or report.source}"),
        "style": style,
        "script": script,
        "header": _header(report),
        "summary": _summary(report, stats),
        "plots": _plots(report, stats),
        "data": script_json({
            "scorers": report.scorers,
            "count": len(report.rollouts),
            "columns": table_columns(report),
        }),
        "trajectories": compressed_trajectories(report),
    }
    template = asset("report.html")
    return _SLOT.sub(lambda m: slots[m.group(1)], template)


def _csp(script: str, style: str) -> str:
    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")

    return (f"default-src 'none'; script-src 'sha256-{digest(script)}'; "
            f"style-src 'sha256-{digest(style)}'; img-src data:; base-uri 'none'; "
            "form-action 'none'")


def _header(report: ReportInput) -> str:
    facts = [
        ("model", report.model or "unknown"),
        ("commit", report.commit or "not recorded"),
        ("source", report.source),
        ("status", report.status or "unknown"),
        ("created", report.created_at or "unknown"),
        ("samples per row", str(report.n_runs)),
        ("pass threshold", f"{report.pass_threshold:g}"),
    ]
    items = "".join(f'<div><dt>{escape(k)}</dt><dd data-fact="{escape(k)}">{escape(v)}</dd></div>'
                    for k, v in facts)
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in report.notes)
    generated = escape(f"rolloutctl report {__version__}")
    return f'<dl class="facts">{items}</dl>{notes}<p class="generated">{generated}</p>'


def _summary(report: ReportInput, stats: list[ScorerStats]) -> str:
    tagged = any(s.tag for s in stats)
    ks = sorted({k for s in stats for k in s.pass_at_k})
    head = "".join(f"<th>{h}</th>" for h in (
        *(("model",) if tagged else ()), "scorer", "mean", "median", "std", "min", "max",
        *(f"pass@{k}" for k in ks)))
    rows = []
    for s in stats:
        cells = [escape(s.tag or "primary")] if tagged else []
        cells.append(f'<span title="{escape(s.name)}">{escape(_short(s.name))}</span>')
        for key in ("mean", "median", "std", "min", "max"):
            value = float(s.stats.get(key, 0.0))
            attrs = (f' data-stat="{key}" data-scorer="{escape(s.name)}"'
                     f' data-tag="{escape(s.tag or "")}" data-value="{value!r}"')
            cells.append(f"<span{attrs}>{value:.4f}</span>")
        cells += [f"{s.pass_at_k[k]:.1%}" if k in s.pass_at_k else "" for k in ks]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    counts = status_counts(report)
    total = sum(counts.values())
    chips = "".join(f'<span class="chip {escape(k)}" data-count="{escape(k)}">{escape(k)} '
                    f"<b>{n}</b></span>" for k, n in counts.items())
    tokens = sum(r.total_tokens for r in report.rollouts)
    prompts = len({r.row_index for r in report.rollouts})
    return (
        f'<p class="counts"><span class="chip" data-count="total">rollouts <b>{total}</b></span>'
        f'<span class="chip" data-count="rows">rows <b>{prompts}</b></span>{chips}'
        f'<span class="chip">tokens <b>{tokens}</b></span></p>'
        f'<table class="stats"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )


def _plots(report: ReportInput, stats: list[ScorerStats]) -> str:
    charts = []
    for s in stats:
        label = _short(s.name) + (f" ({s.tag})" if s.tag else "")
        charts.append(plots.histogram(
            "scores", f"Scores: {label}", score_values(report, s.name, s.tag), "score",
            low=0.0, high=1.0))
    series = {_short(s.name) + (f" ({s.tag})" if s.tag else ""): s.pass_at_k
              for s in stats if s.pass_at_k}
    charts.append(plots.pass_at_k("pass-at-k", "pass@k", series))
    ran = [r for r in report.rollouts if r.status in ("completed", "failed")]
    charts.append(plots.histogram("latency", "Latency per rollout",
                                  [r.total_ms / 1000 for r in ran], "seconds"))
    charts.append(plots.histogram("tokens", "Tokens per rollout",
                                  [float(r.total_tokens) for r in ran], "tokens"))
    charts.append(plots.bars("failures", "Failures by category", failure_counts(report),
                             "no failures"))
    return "".join(f'<figure class="chart">{chart}</figure>' for chart in charts)


def _short(name: str) -> str:
    return name.rsplit(":", 1)[-1]
