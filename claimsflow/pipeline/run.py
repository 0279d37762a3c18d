"""A run: every batch of the night in order, each seeing every decision before it.

`run_batches` is the one run loop: the Prefect flows call it (each batch through a
task), and so do the tests and the benchmarks. The caller holds the lake's writer
lock around it (claimsflow/lake/lock.py: one writer per lake, spec §6, §8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from claimsflow.ingest.inbox import InboxFileUnavailable, NotRead
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.storage import Location
from claimsflow.pipeline.batch import BatchOutcome, BatchSource, RunContext, process_batch

#: Processes one batch of a run (by default `process_batch`, in this process): its
#: outcome, or a file that could not be read whole (no batch this run).
ProcessBatch = Callable[[BatchSource, RunContext], BatchOutcome | NotRead]


def open_lake(lake: Location) -> int:
    """Make the lake ready for this run's writes: its folders, and no leftover of an
    interrupted run (call only while holding the writer lock). Returns how many
    leftovers were removed."""
    eventlog.ensure_lake(lake)
    return eventlog.clean_staging(lake)


def run_batches(
    run: RunContext,
    sources: Iterable[BatchSource],
    *,
    process: ProcessBatch = process_batch,
    prepare: Callable[[Location], object] = open_lake,
    refresh: Callable[[Location], object] = catalog.refresh_catalog,
    not_read: list[NotRead] | None = None,
) -> list[BatchOutcome]:
    """Prepare the lake, process `sources` in the order given (spec §6: inbox files in
    name order, then the SQL pull), recording each before the next is read, then
    rebuild the catalog. The flows pass their Prefect tasks as the three steps.

    `sources` is iterated lazily, so a SQL pull placed last is made only once the
    files before it are recorded. A listed file that is gone (or changed) when it is
    read is no batch this run: nothing is recorded for it, it goes to `not_read`, and
    the run goes on.
    """
    prepare(run.lake)
    outcomes: list[BatchOutcome] = []
    left = not_read if not_read is not None else []
    for source in sources:
        try:
            done = process(source, run)
        except InboxFileUnavailable as exc:
            done = NotRead(exc.name, exc.reason)
        if isinstance(done, NotRead):
            left.append(done)
        else:
            outcomes.append(done)
            # The next batch's history reads a number of files that does not grow
            # with the log (claimsflow/lake/segments.py; cheap when nothing is due).
            eventlog.compact(run.lake)
    refresh(run.lake)
    return outcomes
