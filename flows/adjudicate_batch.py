"""The `adjudicate-batch` flow: an ad-hoc run of one named batch file or one SQL range.

The same stages as the nightly run, under the same writer lock, for one batch:
a file named by path, or the rows of a SQL staging table above its high-water
mark (optionally only up to a given ingest_seq). The catalog is refreshed after.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from prefect import flow
from pydantic import Field

from claimsflow.ingest.inbox import NotRead
from claimsflow.ingest.reading import batch_format
from claimsflow.ingest.sql_source import split_password
from claimsflow.lake.storage import parse_location
from claimsflow.pipeline.batch import BatchSource, RunContext
from claimsflow.pipeline.run import run_batches
from claimsflow.pipeline.summary import RunSummary
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REFERENCE, DEFAULT_REPORTS
from flows.common import ReportLink, finish_batch_run, rules_folder
from flows.nightly import LOCK_WAIT_SECONDS, MAX_PARTITIONS, flow_run_id
from tasks.adjudication import (
    load_reference_data,
    load_rule_set,
    open_lake,
    pull_sql_increment,
    refresh_catalog,
    take_writer_lock,
)
from tasks.partitions import Execution, Executor, partition_runner, process_on
from tasks.reporting import publish_batch_report


class BatchChoiceError(ValueError):
    """The parameters do not name exactly one batch (not retried: it would fail again)."""


@flow(name="adjudicate-batch", log_prints=True)
def adjudicate_batch(
    batch_file: str = "",
    source_url: str = "",
    source_table: str = "",
    up_to_seq: Annotated[int, Field(ge=0)] = 0,
    source_secret: str = "",
    reference: str = str(DEFAULT_REFERENCE),
    lake: str = str(DEFAULT_LAKE),
    ruleset: str = "",
    run_date: dt.date | None = None,
    rules_dir: str | None = None,
    lock_wait_seconds: Annotated[int, Field(ge=1)] = LOCK_WAIT_SECONDS,
    executor: Executor = "local",
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1,
    dask_address: str = "",
    dask_workers: Annotated[int, Field(ge=1, le=256)] = 2,
    dask_threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1,
    reports: str = str(DEFAULT_REPORTS),
) -> RunSummary:
    """Adjudicate one batch now: a batch file, or the new rows of a SQL staging table.

    Args:
        batch_file: Path of one batch file (.csv, .parquet, .jsonl, .ndjson, or an
            X12 837 as .837 or .x12); relative paths are from the project folder.
            Leave empty for a SQL range.
        source_url: SQLAlchemy URL of the staging database, without its password
            (for a SQL range, with source_table).
        source_table: Staging table with an ingest_seq column (for a SQL range).
        up_to_seq: Take rows above the high-water mark only up to this ingest_seq;
            0 = every new row.
        source_secret: Name of a Prefect Secret block holding the source's password;
            empty = the CLAIMS_SOURCE_PASSWORD environment variable.
        reference: Folder with members.csv, providers.csv and fee_schedule.csv.
        lake: Lake folder: event log and catalog.duckdb; or an object-store URL such as
            s3://bucket/lake (docs/object-storage.md).
        ruleset: Rule-set version to use; empty = the one in effect on the run date.
        run_date: Date that selects the rule set; empty = today (UTC).
        rules_dir: Folder of rule-set files (relative paths are from the project folder);
            empty = the rule sets shipped with the package.
        lock_wait_seconds: How long one attempt waits for another run on the same lake
            before retrying with back-off.
        executor: Where the parts of the batch are decided: "local" or "dask"
            (docs/scaling.md).
        partitions: Parts the batch's valid cases are split into, by member; 1 = one piece.
        dask_address: Scheduler of an existing Dask cluster (tcp://host:8786); empty =
            a local cluster started for the run.
        dask_workers: Worker processes of the local Dask cluster.
        dask_threads_per_worker: Threads per worker of the local Dask cluster.
        reports: Folder for the run's HTML report (reports/runs/run-<flow run id>.html),
            linked from the run's artifacts.
    """
    started = time.perf_counter()
    chosen_batch = _chosen_batch(batch_file, source_url, source_table)
    lake_path = parse_location(lake)  # a folder, or an object-store URL
    reference_data = load_reference_data(Path(reference))
    chosen = load_rule_set(
        rules_folder(rules_dir), ruleset or None, run_date or dt.datetime.now(dt.UTC).date()
    )
    execution = Execution(
        executor, partitions, dask_address or None, dask_workers, dask_threads_per_worker
    )
    not_read: list[NotRead] = []
    with (
        take_writer_lock(lake_path, lock_wait_seconds),
        partition_runner(execution, chosen) as runner,
    ):
        run = RunContext(lake_path, reference_data, chosen, flow_run_id())

        def source() -> Iterator[BatchSource]:
            if isinstance(chosen_batch, Path):
                yield chosen_batch
                return
            url, table = chosen_batch
            increment = pull_sql_increment(
                url, table, lake_path, source_secret or None, up_to_seq or None
            )
            if increment is not None:
                yield increment

        outcomes = run_batches(
            run,
            source(),
            process=process_on(execution, runner),
            prepare=open_lake,
            refresh=refresh_catalog,
            not_read=not_read,
        )
    summary = RunSummary(
        run_id=run.run_id,
        ruleset=chosen.label,
        batches=outcomes,
        not_read=[str(n) for n in not_read],
    )
    # After the lock: the report only reads the log.
    outputs = publish_batch_report(lake_path, run.run_id, Path(reports))
    summary.seen_before = dict(outputs.seen_before)
    return finish_batch_run(
        summary,
        artifact_prefix="adjudicate-batch",
        title="adjudicate-batch",
        seconds=time.perf_counter() - started,
        reports=[ReportLink(title, location) for title, location in outputs.links()],
        facts=outputs.facts,
    )


def _chosen_batch(batch_file: str, source_url: str, source_table: str) -> Path | tuple[str, str]:
    """The batch file, or the SQL source (url, table), to adjudicate; refuses anything else."""
    sql = bool(source_url) or bool(source_table)
    if bool(batch_file) == sql:
        raise BatchChoiceError(
            "name exactly one batch: batch_file, or source_url with source_table"
        )
    if sql:
        if not (source_url and source_table):
            raise BatchChoiceError("a SQL range needs both source_url and source_table")
        if split_password(source_url)[1] is not None:
            # Parameters are stored and shown by Prefect: a password does not belong there.
            raise BatchChoiceError(
                "source_url must not carry a password: name a Secret block in source_secret "
                "or set CLAIMS_SOURCE_PASSWORD in the worker's environment"
            )
        return source_url, source_table
    path = Path(batch_file)
    if not path.is_file():
        raise BatchChoiceError(f"{path}: no such batch file")
    if batch_format(path) is None:
        raise BatchChoiceError(
            f"{path}: not a batch file (.csv, .parquet, .jsonl, .ndjson, .837, .x12)"
        )
    return path
