"""The nightly adjudication flow: inbox (and SQL source) -> event log -> catalog."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.context import get_run_context
from pydantic import Field

from claimsflow.pipeline import BatchOutcome, RunContext
from claimsflow.run_summary import RunSummary
from claimsflow.settings import DEFAULT_INBOX, DEFAULT_LAKE, DEFAULT_REFERENCE, DEFAULT_REPORTS
from claimsflow.storage import parse_location
from flows.common import RULES_FOLDER, ReportLink, finish_batch_run
from tasks.adjudication import (
    discover_batches,
    load_reference_data,
    load_rule_set,
    open_lake,
    pull_sql_increment,
    refresh_catalog,
    take_writer_lock,
)
from tasks.partitions import (
    Execution,
    Executor,
    adjudicate_file_on,
    adjudicate_sql_increment_on,
    partition_runner,
)
from tasks.reporting import publish_run_outputs, record_run_failure

#: Upper bound of the partitions parameter (a part per member is never useful).
MAX_PARTITIONS = 1024

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
    rules_dir: str = RULES_FOLDER,
    source_url: str | None = None,
    source_table: str | None = None,
    source_secret: str | None = None,
    lock_wait_seconds: Annotated[int, Field(ge=1)] = LOCK_WAIT_SECONDS,
    reports: str = str(DEFAULT_REPORTS),
    quality_checks: bool = True,
    executor: Executor = "local",
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1,
    dask_address: str | None = None,
    dask_workers: Annotated[int, Field(ge=1, le=256)] = 2,
    dask_threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1,
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
        rules_dir: Folder of rule-set files (relative paths are from the project folder).
        source_url: SQLAlchemy URL of a staging database, without its password (optional).
        source_table: Staging table with an ingest_seq column (optional).
        source_secret: Name of a Prefect Secret block holding the source's password
            (else the CLAIMS_SOURCE_PASSWORD environment variable is used).
        lock_wait_seconds: How long one attempt waits for another run on the same lake
            before retrying with back-off.
        reports: Folder for the run report, Data Docs and metrics.
        quality_checks: Run the Great Expectations gate on the run's outputs.
        executor: Where the parts of a batch are decided: "local" (this process) or
            "dask" (a Dask cluster; see docs/scaling.md).
        partitions: Parts each batch's valid cases are split into, by member; 1 = the
            whole batch in one piece.
        dask_address: Scheduler of an existing Dask cluster (tcp://host:8786); empty =
            a local cluster started for the run.
        dask_workers: Worker processes of the local Dask cluster.
        dask_threads_per_worker: Threads per worker of the local Dask cluster.
    """
    started = time.perf_counter()
    lake_path = parse_location(lake)  # a folder, or an object-store URL
    reference_data = load_reference_data(Path(reference))
    chosen = load_rule_set(Path(rules_dir), ruleset, run_date or dt.datetime.now(dt.UTC).date())
    execution = Execution(
        executor, partitions, dask_address or None, dask_workers, dask_threads_per_worker
    )
    outcomes: list[BatchOutcome] = []
    # One writer per lake: every batch must see every decision before it (spec §6).
    with (
        take_writer_lock(lake_path, lock_wait_seconds),
        partition_runner(execution, chosen) as runner,
    ):
        history = open_lake(lake_path)
        run = RunContext(lake_path, reference_data, chosen, flow_run_id())
        batches, ignored = discover_batches(parse_location(inbox))
        for path in batches:
            outcome, history = adjudicate_file_on(path, run, history, execution, runner)
            outcomes.append(outcome)
        if source_url and source_table:
            increment = pull_sql_increment(source_url, source_table, lake_path, source_secret)
            if increment is not None:
                outcome, history = adjudicate_sql_increment_on(
                    increment, run, history, execution, runner
                )
                outcomes.append(outcome)
        refresh_catalog(lake_path)
    summary = RunSummary(
        run_id=run.run_id,
        ruleset=chosen.label,
        batches=outcomes,
        ignored=[p.name for p in ignored],
    )
    # After the lock: the report, gate and metrics only read the log.
    outputs = publish_run_outputs(
        lake_path,
        run.run_id,
        summary,
        Path(reports),
        seconds=time.perf_counter() - started,
        checks=quality_checks,
    )
    summary.warnings = list(outputs.warnings)
    return finish_batch_run(
        summary,
        artifact_prefix="nightly",
        title="nightly-adjudication",
        seconds=time.perf_counter() - started,
        reports=[ReportLink(title, location) for title, location in outputs.links()],
    )


def flow_run_id() -> str:
    """The Prefect flow run's id (one per run, as the event log's run_id), else a new one."""
    try:
        context = get_run_context()
        return str(context.flow_run.id) if context.flow_run else uuid.uuid4().hex  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex
