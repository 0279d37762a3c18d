"""What `adjudicate run` shows while it works (issue 19.4): on a terminal, a Rich
progress display (batch n of N, its stage and rows; then the gate and the report);
otherwise one plain line per finished batch and per later stage, on stderr.

The steps come from claimsflow.progress. While the display is live, Prefect's own
console lines below WARNING are held back (they still reach the Prefect API and UI):
they would tear the display apart.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from claimsflow.progress import Step, listening
from claimsflow.text import shown_name

_STAGE_WORDS = {
    "reading": "reading",
    "validating": "validating",
    "deciding": "deciding",
    "recording": "recording",
}


_RUN_STAGES = {
    "catalog": "refreshing the catalog",
    "data-quality gate": "running the data-quality gate",
    "report": "writing the report",
}


def describe(event: Step) -> str:
    """One step in words: "b.jsonl: deciding 95 rows", "data-quality gate"."""
    if event.batch is None:
        return _RUN_STAGES.get(event.stage, event.stage)
    name = shown_name(event.batch)
    if event.done:
        rows = "" if event.rows is None else f", {event.rows:,} row(s)"
        return f"{name}: {event.status}{rows}"
    if event.stage == "batch":
        return f"{name}: starting"
    rows = "" if event.rows is None else f" {event.rows:,} row(s)"
    return f"{name}: {_STAGE_WORDS.get(event.stage, event.stage)}{rows}"


class PlainLines:
    """A line per finished batch and per run stage (logs, CI): nothing redrawn."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, event: Step) -> None:
        if event.batch is not None and not event.done:
            return  # a batch's inner stages: one line when it ends is enough
        place = f"batch {event.index}/{event.total} " if event.index is not None else ""
        self._stream.write(f"adjudicate: {place}{describe(event)}\n")
        self._stream.flush()


class LiveDisplay:
    """A Rich progress bar over the run's batches, its line saying what happens now;
    each finished batch printed above it."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self.progress.add_task("starting", total=None)

    def __call__(self, event: Step) -> None:
        if event.total is not None:
            self.progress.update(self._task, total=event.total)
        if event.batch is not None and event.done:
            self.progress.console.print(Text(f"  {describe(event)}"))
            self.progress.update(self._task, completed=event.index or 0)
        place = f"[{event.index}/{event.total}] " if event.index and not event.done else ""
        self.progress.update(self._task, description=Text(place + describe(event)).plain)


@contextmanager
def run_progress(console: Console | None = None, *, live: bool | None = None) -> Iterator[None]:
    """Show the run's progress until the block ends: live on a terminal (or when
    `live`), else plain lines on stderr."""
    live = sys.stdout.isatty() if live is None else live
    with ExitStack() as stack:
        if live:
            display = LiveDisplay(console or Console())
            stack.enter_context(display.progress)
            stack.enter_context(_prefect_console_quiet())
            stack.enter_context(listening(display))
        else:
            stack.enter_context(listening(PlainLines(sys.stderr)))
        yield


@contextmanager
def _prefect_console_quiet() -> Iterator[None]:
    """Prefect's console handlers at WARNING, writing to the stream the live display
    redirects (so a warning is printed above it); restored afterwards."""
    try:
        from prefect.logging.handlers import PrefectConsoleHandler
    except ImportError:  # pragma: no cover - Prefect is a dependency
        yield
        return
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    handlers = {
        h
        for logger in loggers
        for h in getattr(logger, "handlers", ())
        if isinstance(h, PrefectConsoleHandler)
    }
    saved = [(h, h.level, h.console.file) for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.console.file = sys.stderr  # the live display's proxy while it runs
    try:
        yield
    finally:
        for handler, level, stream in saved:
            handler.setLevel(level)
            handler.console.file = stream
