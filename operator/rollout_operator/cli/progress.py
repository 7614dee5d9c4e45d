"""Terminal progress for long batches: a live bar plus one line per finished item.

On a terminal the bar shows done/total, failures (by category when the caller names them),
rollouts/s, the mean score so far, elapsed time and ETA. Off a terminal (a CI log, a pipe) there
is no bar and no carriage return: the per-item lines, as `osmosis eval` prints them, are the
progress, and the summary block at the end has the rest.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class BatchProgress:
    """Items done/failed, rate, elapsed, ETA and the running mean score; silent when quiet."""

    def __init__(self, total: int, label: str, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.quiet = quiet
        self.plain = not quiet and not self.console.is_terminal
        """Off a terminal: no bar, only the lines the caller prints."""
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self.failures: dict[str, int] = {}
        """Failed items by category, when `advance` is told it."""
        self._score_sum = 0.0
        self._scored = 0
        self._start = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=quiet or self.plain,
        )
        self._task = self._progress.add_task(label, total=total, stats="")

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def line(self, text: str) -> None:
        """Print a line above the bar (nothing when quiet)."""
        if self.quiet:
            return
        if self.plain:
            # Nothing to draw around it: the line goes out as it is, without Rich's rendering.
            out = self.console.file
            out.write((text.expandtabs(8) if "\t" in text else text) + "\n")
            out.flush()
            return
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def advance(self, ok: bool, score: float | None = None, category: str | None = None) -> None:
        """One item finished; `category` is a failed item's error category (`model`, ...)."""
        self.done += 1
        if not ok:
            self.failed += 1
            if category:
                self.failures[category] = self.failures.get(category, 0) + 1
        if score is not None:
            self._score_sum += score
            self._scored += 1
        if self.quiet or self.plain:
            return
        elapsed = max(time.monotonic() - self._start, 1e-9)
        stats = f"failed {self.failed}{self._categories()}  {self.done / elapsed:.1f}/s"
        if self._scored:
            stats += f"  mean {self._score_sum / self._scored:.3f}"
        self._progress.update(self._task, advance=1, stats=stats)

    def _categories(self) -> str:
        if not self.failures:
            return ""
        ranked = sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0]))
        return " (" + ", ".join(f"{name} {count}" for name, count in ranked) + ")"


def format_duration(ms: float) -> str:
    return f"{ms / 1000:.1f}s" if ms >= 1000 else f"{ms:.0f}ms"


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table
