"""`BatchProgress` (test and eval): the bar on a terminal, plain percent lines off one."""

from __future__ import annotations

import io

from rich.console import Console

from rollout_operator.cli.progress import BatchProgress


def test_off_a_terminal_one_plain_line_per_ten_percent() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=50)
    with BatchProgress(40, "eval", console=console) as progress:
        assert progress.plain
        for n in range(40):
            failed = n % 10 == 9
            progress.advance(not failed, None if failed else 1.0,
                             "model" if failed else None)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # the first item, then each 10%
    assert [line.split(" ")[1] for line in lines] == ["1/40"] + [f"{4 * i}/40"
                                                                for i in range(1, 11)]
    assert lines[-1].startswith("eval: 40/40 (100%) done, ")
    assert lines[-1].endswith(", mean 1.000, 4 failed (model 4)")  # whole, never wrapped


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
