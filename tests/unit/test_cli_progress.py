"""`BatchProgress` (test and eval): the bar on a terminal, only the caller's lines off one."""

from __future__ import annotations

import io

from rich.console import Console

from rollout_operator.cli.progress import BatchProgress


def test_off_a_terminal_only_the_callers_lines_whole_and_without_control_codes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=50)
    long_line = "[1/40] OK (12ms, 5 tokens) " + "x" * 80 + " row 0 run 1"
    with BatchProgress(40, "eval", console=console) as progress:
        assert progress.plain
        for n in range(40):
            failed = n % 10 == 9
            if n == 0:
                progress.line(long_line)
            progress.advance(not failed, None if failed else 1.0,
                             "model" if failed else None)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [long_line]  # never wrapped at the console's width
    assert progress.failures == {"model": 4} and progress.done == 40


def test_quiet_prints_nothing_and_still_counts() -> None:
    out = io.StringIO()
    with BatchProgress(3, "eval", quiet=True, console=Console(file=out)) as progress:
        progress.line("not shown")
        for _ in range(3):
            progress.advance(False, category="tool")
    assert out.getvalue() == ""
    assert progress.failures == {"tool": 3} and progress.failed == 3


def test_on_a_terminal_the_bar_names_failure_categories() -> None:
    console = Console(record=True, force_terminal=True, width=160)
    with BatchProgress(4, "eval", console=console) as progress:
        assert not progress.plain
        progress.advance(False, category="model")
        progress.advance(True, 0.5)
        progress.console.print(progress._progress.get_renderable())
    text = console.export_text()
    assert "failed 1 (model 1)" in text and "mean 0.500" in text
