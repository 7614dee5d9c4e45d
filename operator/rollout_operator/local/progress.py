"""Progress of a local run: committed records counted as they land, shown with rich.

The tracker reads what the workers commit (each part is written once, so each is read once),
the same records `aggregate` reads later: counts by status and a running mean per scorer, one
record per (row, sample) as `aggregate` keeps them (a masked rollout run again counts once, by
its best record), with failures by category and finish reasons. The view draws a live panel on
a terminal; otherwise (CI logs, pipes) it prints one plain line each time another
`PLAIN_PERCENT_STEP` percent of the work is done, and never a carriage return. The summary table
comes at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from rollout_operator.runtime.storage import ObjectStore

PLAIN_PERCENT_STEP = 10


@dataclass
class ProgressState:
    """What is known about the run's work items."""

    total: int = 0
    completed: int = 0
    failed: int = 0
    masked: int = 0
    invalid: int = 0
    resumed: int = 0
    """Items already committed when this invocation started its workers."""
    score_sums: dict[str, float] = field(default_factory=dict)
    score_counts: dict[str, int] = field(default_factory=dict)
    failure_categories: dict[str, int] = field(default_factory=dict)
    """Failed, masked and invalid items by their error's category (`model`, `tool`, ...)."""
    finish_reasons: dict[str, int] = field(default_factory=dict)
    """Items by the finish reason of their last model turn (`stop`, `length`, ...)."""
    started: float | None = None

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.masked + self.invalid

    def means(self) -> dict[str, float]:
        return {name: self.score_sums[name] / count
                for name, count in self.score_counts.items() if count}

    def rate(self, now: float | None = None) -> float | None:
        """Items per second committed by this invocation."""
        if self.started is None:
            return None
        elapsed = (now or time.monotonic()) - self.started
        fresh = self.done - self.resumed
        return fresh / elapsed if elapsed > 1 and fresh > 0 else None

    def eta_s(self) -> float | None:
        rate = self.rate()
        left = self.total - self.done
        return left / rate if rate and left > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "completed": self.completed,
                "failed": self.failed, "masked": self.masked, "invalid": self.invalid,
                "resumed": self.resumed,
                "scoreMeans": self.means(), "failures": dict(self.failure_categories),
                "finishReasons": dict(self.finish_reasons)}


class CommitTracker:
    """Reads newly committed parts of a run and folds their records into a `ProgressState`."""

    def __init__(self, store: ObjectStore, state: ProgressState) -> None:
        self.store = store
        self.state = state
        self._read: set[str] = set()
        self._items: dict[tuple[int, int], int] = {}
        """Items counted, with the attempt of their record when it is masked (else -1)."""
        self._masked_category: dict[tuple[int, int], str] = {}

    async def poll(self) -> None:
        from rollout_operator.runtime.shards import list_all_parts

        for _, _, key in await list_all_parts(self.store, ""):
            if key in self._read:
                continue
            data = await self.store.get(key)
            self._read.add(key)
            for line in data.splitlines():
                if line.strip():
                    self._add(json.loads(line))

    def _add(self, record: Mapping[str, Any]) -> None:
        item = (int(record["row_index"]), int(record.get("sample_index", 0)))
        status = record.get("status")
        attempt = int(record.get("attempt") or 0)
        before = self._items.get(item)
        if before is not None:
            if before < 0 or (status == "masked" and attempt <= before):
                return  # the kept record stays: non-masked, or a later masked attempt
            self.state.masked -= 1
            _bump(self.state.failure_categories, self._masked_category.pop(item, None), -1)
        self._items[item] = attempt if status == "masked" else -1
        reason = record.get("finish_reason")
        if isinstance(reason, str) and reason and status != "masked":
            _bump(self.state.finish_reasons, reason, 1)
        if status != "completed":
            error = record.get("error")
            category = str(error.get("category") or "unknown") if isinstance(error, Mapping) \
                else "unknown"
            _bump(self.state.failure_categories, category, 1)
            if status == "masked":
                self._masked_category[item] = category
        if status == "completed":
            self.state.completed += 1
            for name, value in (record.get("scores") or {}).items():
                if isinstance(value, int | float):
                    self.state.score_sums[name] = self.state.score_sums.get(name, 0.0) + value
                    self.state.score_counts[name] = self.state.score_counts.get(name, 0) + 1
        elif status == "masked":
            self.state.masked += 1
        elif status == "invalid":
            self.state.invalid += 1
        else:
            self.state.failed += 1


def _bump(counts: dict[str, int], key: str | None, by: int) -> None:
    if key is None:
        return
    counts[key] = counts.get(key, 0) + by
    if counts[key] <= 0:
        del counts[key]


def _counts(counts: Mapping[str, int]) -> str:
    """`model 2, tool 1`: largest first."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _short(name: str) -> str:
    return name.rsplit(":", 1)[-1]


class ProgressView:
    """The terminal side of a run: phase lines, a live panel, the summary table."""

    def __init__(self, console: Console, *, title: str, live: bool | None = None) -> None:
        self.console = console
        self.title = title
        self.phase = "starting"
        self.state: ProgressState | None = None
        self.live_enabled = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._plain_step = -1
        """The last percent step a plain line was printed for."""
        self._printed_done = -1

    def set_phase(self, phase: str, message: str = "", *, current: bool = True) -> None:
        """Print a phase line; `current=False` for news of a phase running beside another."""
        from rich.markup import escape

        if current:
            self.phase = phase
        text = f"[bold]{phase:<9}[/bold]" + (f" {escape(message)}" if message else "")
        self.console.print(text, highlight=False, soft_wrap=True)

    def note(self, message: str, *, style: str = "yellow") -> None:
        from rich.markup import escape

        self.console.print(f"[{style}]{escape(message)}[/{style}]", highlight=False,
                           soft_wrap=True)

    def start_work(self, state: ProgressState) -> None:
        from rich.live import Live

        self.state = state
        if self.live_enabled:
            self._live = Live(get_renderable=self._panel, console=self.console,
                              refresh_per_second=4, transient=False)
            self._live.start()
        else:
            self._plain_step = -1
            self.refresh()

    def refresh(self) -> None:
        """Without a live panel: a line when the work reaches the next percent step."""
        if self.state is None or self._live is not None:
            return
        step = self._step()
        if step > self._plain_step:
            self._plain_step = step
            self._print_line()

    def _print_line(self) -> None:
        assert self.state is not None
        self._printed_done = self.state.done
        self.console.print(self._line(), highlight=False, soft_wrap=True, markup=False)

    def _step(self) -> int:
        state = self.state
        assert state is not None
        if not state.total:
            return 0
        percent = 100 * min(state.done, state.total) // state.total
        return percent // PLAIN_PERCENT_STEP

    def stop_work(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self.state is not None and self.state.done != self._printed_done:
            self._print_line()  # where the work stopped, when no step line said it

    def _line(self) -> str:
        """`40/120 (33%) done, 2.5 rollouts/s, ETA 0:00:32, mean numbers_match_reward 0.950,
        failed 2 (model 2), masked 1 (sandbox 1), finish stop 36, length 1`."""
        state = self.state
        assert state is not None
        rate = state.rate()
        percent = f" ({100 * state.done // state.total}%)" if state.total else ""
        means = ", ".join(f"{_short(k)} {v:.3f}" for k, v in state.means().items())
        failures = _counts(state.failure_categories)
        return (f"{state.done}/{state.total}{percent} done"
                + (f", {rate:.1f} rollouts/s" if rate else "")
                + (f", ETA {_duration(eta)}" if (eta := state.eta_s()) is not None else "")
                + (f", mean {means}" if means else "")
                + f", {state.failed} failed, {state.masked} masked"
                + (f", {state.invalid} invalid" if state.invalid else "")
                + (f" ({failures})" if failures else "")
                + (f", finish {_counts(state.finish_reasons)}" if state.finish_reasons else ""))

    def _panel(self) -> RenderableType:
        from rich.console import Group
        from rich.markup import escape
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        state = self.state
        assert state is not None
        rate = state.rate()
        grid = Table.grid(padding=(0, 2))
        grid.add_row(f"[bold]{escape(self.title)}[/bold]", f"[cyan]{self.phase}[/cyan]")
        bar = ProgressBar(total=max(state.total, 1), completed=state.done, width=40)
        percent = 100 * state.done / state.total if state.total else 100.0
        grid.add_row(bar, f"{state.done}/{state.total} ({percent:.0f}%)")
        grid.add_row(
            f"failed {state.failed}  masked {state.masked}  invalid {state.invalid}  "
            f"resumed {state.resumed}",
            f"{rate:.1f} rollouts/s  ETA {_duration(state.eta_s())}" if rate else "",
        )
        if state.failure_categories:
            grid.add_row(f"  failures by category: {escape(_counts(state.failure_categories))}",
                         "")
        if state.finish_reasons:
            grid.add_row(f"  finish reasons: {escape(_counts(state.finish_reasons))}", "")
        for name, mean in state.means().items():
            grid.add_row(f"  {escape(name)}", f"mean {mean:.3f}")
        return Group(grid)

    def summary(self, result: Mapping[str, Any]) -> None:
        """The end-of-run table: scorers, counts and where the files are."""
        from rich.table import Table

        summary = result.get("summary") or {}
        table = Table(title=f"{self.title}: {result.get('state')}", title_justify="left")
        table.add_column("scorer", overflow="fold")
        for column in ("mean", "std", "min", "max"):
            table.add_column(column, justify="right")
        table.add_column("pass@k", justify="left")
        table.add_column("over", justify="left")
        for name, stats in (summary.get("summary") or {}).items():
            passes = stats.get("pass_at_k") or {}
            over = (f"{stats['prompts']} prompts, {stats.get('rollouts', 0)} rollouts"
                    if stats.get("prompts") is not None else "")
            table.add_row(
                name, *("-" if stats.get(key) is None else f"{stats[key]:.3f}"
                        for key in ("mean", "std", "min", "max")),
                "  ".join(f"@{k} {v:.2f}" for k, v in passes.items()), over,
            )
        if table.row_count:
            self.console.print(table)
        progress = summary.get("progress") or result.get("progress") or {}
        if progress:
            self.console.print(
                f"records {progress.get('total', 0)}: {progress.get('completed', 0)} completed,"
                f" {progress.get('failed', 0)} failed, {progress.get('masked', 0)} masked,"
                f" {progress.get('invalid', 0)} invalid",
                highlight=False, soft_wrap=True)
        for label, url in (summary.get("artifacts") or {}).items():
            self.console.print(f"{label:>13}  {url}", highlight=False, soft_wrap=True)
