"""The nightly adjudication flow: inbox (and SQL source) -> event log -> catalog."""

from __future__ import annotations

import datetime as dt
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.context import get_run_context
from pydantic import Field

from claimsflow.ingest.inbox import DEFAULT_QUIET_SECONDS, NotRead
from claimsflow.lake.storage import Location, parse_location
from claimsflow.ops.timeline import Laps, mark
from claimsflow.pipeline.batch import BatchOutcome, BatchSource, RunContext, source_name
from claimsflow.pipeline.run import run_batches
from claimsflow.pipeline.summary import RunSummary
from claimsflow.progress import step
from claimsflow.settings import DEFAULT_INBOX, DEFAULT_LAKE, DEFAULT_REFERENCE, DEFAULT_REPORTS
from claimsflow.text import first_line
from flows.common import ReportLink, finish_batch_run, rules_folder
from tasks.adjudication import (
    archive_batch_file,
    discover_batches,
    load_reference_data,
    load_rule_set,
    open_lake,
    pull_sql_increment,
    refresh_catalog,
    take_writer_lock,
)
from tasks.partitions import Execution, Executor, partition_runner, process_on
from tasks.remit import write_run_remits
from tasks.reporting import publish_run_outputs, record_run_failure

#: Upper bound of the partitions parameter (a part per member is never useful).
MAX_PARTITIONS = 1024

#: Sub-folder of the reports folder for the run's 835s (spec §11).
REMITS_FOLDER = "remits"

#: Seconds one attempt waits for another run's writer lock (then retried with back-off).
LOCK_WAIT_SECONDS = 900


@flow(
    name="nightly-adjudication",
    log_prints=True,
    on_failure=[record_run_failure],
    on_crashed=[record_run_failure],
)
def nightly_adjudication(
    inbox: str = str(DEFAULT_INBOX),
    reference: str = str(DEFAULT_REFERENCE),
    lake: str = str(DEFAULT_LAKE),
    ruleset: str | None = None,
    run_date: dt.date | None = None,
    rules_dir: str | None = None,
    source_url: str | None = None,
    source_table: str | None = None,
    source_secret: str | None = None,
    lock_wait_seconds: Annotated[int, Field(ge=1)] = LOCK_WAIT_SECONDS,
    quiet_seconds: Annotated[int, Field(ge=0, le=86400)] = DEFAULT_QUIET_SECONDS,
    reports: str = str(DEFAULT_REPORTS),
    quality_checks: bool = True,
    remits: bool = True,
    executor: Executor = "local",
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1,
    dask_address: str | None = None,
    dask_workers: Annotated[int, Field(ge=1, le=256)] = 2,
    dask_threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1,
    archive: str | None = None,
) -> RunSummary:
    """Adjudicate every new batch of the inbox (then the SQL source), in name order.

    Args:
        inbox: Folder of case batch files (relative paths are from the project folder),
            or an object-store URL such as s3://bucket/inbox (docs/object-storage.md).
        reference: Folder with members.csv, providers.csv and fee_schedule.csv.
        lake: Lake folder: event log and catalog.duckdb; or an object-store URL such as
            s3://bucket/lake (docs/object-storage.md).
        ruleset: Rule-set version to use; empty = the one in effect on the run date.
        run_date: Date that selects the rule set; empty = today (UTC).
        rules_dir: Folder of rule-set files (relative paths are from the project folder);
            empty = the rule sets shipped with the package.
        source_url: SQLAlchemy URL of a staging database, without its password (optional).
        source_table: Staging table with an ingest_seq column (optional).
        source_secret: Name of a Prefect Secret block holding the source's password
            (else the CLAIMS_SOURCE_PASSWORD environment variable is used).
        lock_wait_seconds: How long one attempt waits for another run on the same lake
            before retrying with back-off.
        quiet_seconds: A batch file modified less than this many seconds ago may still be
            being copied in: it is left for the next run and named in the report
            (0 = take every file; docs/operations.md).
        reports: Folder for the run report, Data Docs and metrics.
        quality_checks: Run the Great Expectations gate on the run's outputs.
        remits: Write the X12 835 remittance advice of each processed batch that has
            an APPROVED or DENIED case to <reports>/remits/<batch_id>.835.
        executor: Where the parts of a batch are decided: "local" (this process) or
            "dask" (a Dask cluster; see docs/scaling.md).
        partitions: Parts each batch's valid cases are split into, by member; 1 = the
            whole batch in one piece.
        dask_address: Scheduler of an existing Dask cluster (tcp://host:8786); empty =
            a local cluster started for the run.
        dask_workers: Worker processes of the local Dask cluster.
        dask_threads_per_worker: Threads per worker of the local Dask cluster.
        archive: Folder to move each batch file to once its batch is recorded
            (PROCESSED, REJECTED or SKIPPED), under a folder per day; empty = files stay
            in the inbox. Local inboxes only (docs/operations.md).
    """
    started = time.perf_counter()
    laps = Laps()  # stage durations, for the metrics and `make bench`
    mark("prefect-start")  # from the call to the flow's first line: Prefect's own work
    lake_path = parse_location(lake)  # a folder, or an object-store URL
    reference_data = load_reference_data(Path(reference))
    laps.lap("reference")
    chosen = load_rule_set(
        rules_folder(rules_dir), ruleset, run_date or dt.datetime.now(dt.UTC).date()
    )
    laps.lap("ruleset")
    execution = Execution(
        executor, partitions, dask_address or None, dask_workers, dask_threads_per_worker
    )
    not_read: list[NotRead] = []
    # One writer per lake: every batch must see every decision before it (spec §6).
    with (
        take_writer_lock(lake_path, lock_wait_seconds),
        partition_runner(execution, chosen) as runner,
    ):
        run = RunContext(lake_path, reference_data, chosen, flow_run_id())
        listing = discover_batches(parse_location(inbox), quiet_seconds)
        not_read += listing.not_read

        def sources() -> Iterator[BatchSource]:
            yield from listing.batches
            if source_url and source_table:
                # Pulled after the files are recorded: the high-water mark is in the log.
                increment = pull_sql_increment(source_url, source_table, lake_path, source_secret)
                if increment is not None:
                    yield increment

        process = process_on(execution, runner)

        def prepare(lake: Location) -> None:
            open_lake(lake)
            laps.lap("open")  # lock, lake, inbox listing (and the Dask cluster, if any)

        count = itertools.count(1)
        total = len(listing.batches) + (1 if source_url and source_table else 0)

        def timed(source: BatchSource, run: RunContext) -> BatchOutcome | NotRead:
            index = next(count)
            step("batch", batch=source_name(source), index=index, total=total)
            done = process(source, run)
            name = done.name if isinstance(done, NotRead) else done.source
            laps.lap(f"batch:{name}", total="batches")
            if archive and isinstance(done, BatchOutcome) and isinstance(source, Path):
                # After the batch's events (or skip record) are durable: never before.
                archive_batch_file(source, Path(archive), done, run)
            step(
                "batch",
                batch=name,
                index=index,
                total=total,
                done=True,
                status="LEFT" if isinstance(done, NotRead) else done.status,
                rows=None if isinstance(done, NotRead) else done.rows_in,
            )
            return done

        def refresh(lake: Location) -> None:
            step("catalog")
            refresh_catalog(lake)

        outcomes = run_batches(
            run,
            sources(),
            process=timed,
            prepare=prepare,
            refresh=refresh,
            not_read=not_read,
        )
    laps.lap("catalog")  # and the end of the Dask cluster, if any
    summary = RunSummary(
        run_id=run.run_id,
        ruleset=chosen.label,
        batches=outcomes,
        ignored=[p.name for p in listing.ignored],
        not_ready=[p.name for p in listing.not_ready],
        quiet_seconds=quiet_seconds,
        not_read=[str(n) for n in not_read],
    )
    # After the lock: the report, gate and metrics only read the log.
    outputs = publish_run_outputs(
        lake_path,
        run.run_id,
        summary,
        Path(reports),
        seconds=time.perf_counter() - started,
        stage_seconds=laps.seconds,
        checks=quality_checks,
    )
    summary.warnings = list(outputs.warnings)
    summary.seen_before = dict(outputs.seen_before)
    links = [ReportLink(title, location) for title, location in outputs.links()]
    if remits:
        links += _remits(lake_path, outcomes, Path(reports) / REMITS_FOLDER, summary.warnings)
        mark("remits")
    finished = finish_batch_run(
        summary,
        artifact_prefix="nightly",
        title="nightly-adjudication",
        seconds=time.perf_counter() - started,
        reports=links,
        facts=outputs.facts,
    )
    mark("artifacts")
    return finished


def _remits(
    lake: Location, outcomes: list[BatchOutcome], folder: Path, warnings: list[str]
) -> list[ReportLink]:
    """The run's 835s, after the lock (they only read the log). The decisions are
    recorded whatever happens here: a failure is a warning, and `adjudicate remit`
    writes the file again."""
    try:
        written = write_run_remits(lake, outcomes, folder)
    except Exception as exc:
        warnings.append(f"835 remittance advice not written: {first_line(exc, with_type=True)}")
        return []
    return [
        ReportLink(f"835 of {r.batch_id[:12]}", str(r.path)) for r in written if r.path is not None
    ]


def flow_run_id() -> str:
    """The Prefect flow run's id (one per run, as the event log's run_id), else a new one."""
    try:
        context = get_run_context()
        return str(context.flow_run.id) if context.flow_run else uuid.uuid4().hex  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex
