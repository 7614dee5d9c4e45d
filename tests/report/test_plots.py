"""The report's charts as SVG: what each draws, and labels that stay text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from rollout_operator.report import plots

SVG = "{http://www.w3.org/2000/svg}"


def _bars(svg: str) -> list[str]:
    return [title.text or "" for rect in ET.fromstring(svg).iter(f"{SVG}rect")
            for title in rect.iter(f"{SVG}title")]


def test_histogram_counts_every_value_once_in_its_bin() -> None:
    values = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    svg = plots.histogram("scores", "Scores", values, "score", bins=4, low=0.0, high=1.0)
    root = ET.fromstring(svg)
    assert root.get("data-plot") == "scores" and root.get("data-points") == "6"
    assert _bars(svg) == ["0 to 0.25: 2", "0.5 to 0.75: 1", "0.75 to 1: 3"]


def test_an_empty_or_flat_series_still_draws() -> None:
    assert "no values" in plots.histogram("latency", "Latency", [], "s")
    assert _bars(plots.histogram("tokens", "Tokens", [5.0, 5.0], "tokens", bins=2)) == [
        "5 to 5.5: 2"]


def test_pass_at_k_needs_two_ks_and_draws_a_dot_per_k() -> None:
    assert "needs more than one sample" in plots.pass_at_k("p", "pass@k", {"r": {1: 0.5}})
    svg = plots.pass_at_k("p", "pass@k", {"r": {1: 0.5, 2: 0.75, 4: 0.875}})
    titles = [t.text for t in ET.fromstring(svg).iter(f"{SVG}title")]
    assert titles == ["r pass@1: 0.500", "r pass@2: 0.750", "r pass@4: 0.875"]


def test_labels_are_escaped() -> None:
    label = '<script>alert(1)</script>"&'
    svg = plots.bars("failures", f"Failures {label}", {label: 3, "tool": 1}, "none")
    assert "<script>" not in svg
    root = ET.fromstring(svg)
    assert root.get("aria-label") == f"Failures {label}"
    assert [t.text for t in root.iter(f"{SVG}title")] == [f"{label}: 3", "tool: 1"]
    assert re.search(r'data-points="4"', svg)
