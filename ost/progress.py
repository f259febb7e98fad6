"""Progress of a backfill in the terminal: one rich progress bar per stream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ost.backfill import StreamProgress
from ost.intervals import Interval, Stream, Symbol


@contextlib.contextmanager
def terminal_progress(
    streams: list[Stream], *, quiet: bool = False
) -> Iterator[StreamProgress | None]:
    """A ``progress(symbol, interval, done, total)`` callback that drives rich bars."""
    if quiet:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    tasks = {stream: bars.add_task(f"{stream[0]} {stream[1]}", total=None) for stream in streams}

    def progress(symbol: Symbol, interval: Interval, done: int, total: int) -> None:
        # A stream with nothing missing is complete, not at 0 of 1.
        task = tasks[Stream(symbol, interval)]
        bars.update(task, completed=done if total else 1, total=max(total, 1))

    with bars:
        yield progress
