"""Progress of a long run, told to whoever listens (issue 19.4).

The pipeline says where it is (`step`: a stage, a batch, rows); the command line
listens and draws a progress display on a terminal. Nobody listening (a worker, a
test, the benchmarks) costs a function call per stage, never per row.

Listeners are per process, like claimsflow/ops/timeline.py's marks: a flow run by a
worker tells the worker's process, where nothing listens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """`stage` began (or, with `done`, ended) for `batch` (None: the run as a whole)."""

    stage: str
    batch: str | None = None
    rows: int | None = None
    #: Batches of the run known so far, and this batch's place among them (from 1).
    index: int | None = None
    total: int | None = None
    #: A finished batch's status (PROCESSED, SKIPPED, REJECTED).
    status: str | None = None
    done: bool = False


Listener = Callable[[Step], None]
_listeners: list[Listener] = []


def step(stage: str, **detail: object) -> None:
    """Tell the listeners that `stage` began (see Step for the details)."""
    if not _listeners:
        return
    event = Step(stage, **detail)  # type: ignore[arg-type]
    for listener in list(_listeners):
        listener(event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """`listener` hears every step until the block ends."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
