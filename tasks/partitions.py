"""Partitioned execution: where the parts of a batch are decided (docs/scaling.md).

`local` with one partition is the one-piece run (`adjudicate-file`). Otherwise
the flow prepares and records each batch itself and submits one
`adjudicate-partition` task per part to a task runner: Prefect's thread pool
(`local`), or prefect-dask's `DaskTaskRunner` (`dask`) on a `LocalCluster` it
starts for the run, or on an existing scheduler given by address. A part's task
gets a folder path and the rule set, and returns a `PartitionResult`: no frame
is pickled to a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.futures import wait
from prefect.logging import get_run_logger
from prefect.runtime import task_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.ingest.chunks import ReadWhole, batch_id_of_file
from claimsflow.ingest.inbox import InboxFileUnavailable, NotRead
from claimsflow.ingest.sql_source import SqlIncrement
from claimsflow.pipeline import batch as pipeline
from claimsflow.pipeline import chunked
from claimsflow.pipeline.batch import (
    BatchIdentity,
    BatchOutcome,
    BatchSource,
    DecidedBatch,
    PreparedBatch,
    RunContext,
)
from claimsflow.pipeline.chunked import ChunkedBatch
from claimsflow.pipeline.partitioning import (
    PartitionResult,
    RunParts,
    check_partitionable,
    decide_in_partitions,
    decide_partition,
    parts_folder,
)
from claimsflow.pipeline.run import ProcessBatch
from claimsflow.text import printable, shown_name
from tasks.adjudication import adjudicate_file, adjudicate_sql_increment, log_outcome, not_read

Executor = Literal["local", "dask"]
EXECUTORS: tuple[Executor, ...] = ("local", "dask")


@dataclass(frozen=True)
class Execution:
    """How a run decides its batches: where, and in how many parts per batch."""

    executor: Executor = "local"
    partitions: int = 1
    dask_address: str | None = None
    dask_workers: int = 2
    dask_threads_per_worker: int = 1

    @property
    def in_one_piece(self) -> bool:
        """Today's single-process run: no parts, no task runner."""
        return self.executor == "local" and self.partitions == 1

    def describe(self) -> str:
        if self.in_one_piece:
            return "local, one partition"
        if self.executor == "local":
            return f"local threads, {self.partitions} partition(s)"
        where = self.dask_address or (
            f"a local Dask cluster of {self.dask_workers} worker(s) x "
            f"{self.dask_threads_per_worker} thread(s)"
        )
        return f"dask on {where}, {self.partitions} partition(s)"


def task_runner_for(execution: Execution) -> TaskRunner[Any]:
    """The task runner that decides the parts."""
    if execution.executor == "local":
        return ThreadPoolTaskRunner(max_workers=execution.partitions)
    # Imported here: the Dask stack takes a second or two to import, and the
    # one-piece run never needs it.
    from prefect_dask.task_runners import DaskTaskRunner

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    # The scheduler's and workers' INFO lines would drown the run's own log.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": execution.dask_workers,
            "threads_per_worker": execution.dask_threads_per_worker,
            # Workers in processes of their own (the rules are CPU-bound Polars,
            # which releases the GIL, but a killed worker must not kill the run's
            # process), on loopback; the scheduler's HTTP server (health, metrics)
            # on a free port rather than 8787, which another cluster may hold.
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
            "silence_logs": logging.WARNING,
            "env": worker_environment(),
        },
    )


def worker_environment() -> dict[str, str]:
    """What a local cluster's workers need to report to this run's Prefect API.

    Without it each worker process would start a temporary Prefect server of its
    own (the run's may be a temporary one, known only to this process), and the
    parts' task runs would be recorded there instead of under the flow run.
    """
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return {"PREFECT_API_URL": api_url, "DASK_LOGGING__DISTRIBUTED": "warning"}


@contextmanager
def partition_runner(execution: Execution, ruleset: RuleSet) -> Iterator[TaskRunner[Any] | None]:
    """The run's task runner for parts (started once per run), or None for one piece."""
    if execution.in_one_piece:
        yield None
        return
    check_partitionable(ruleset)
    get_run_logger().info("deciding batches on %s", execution.describe())
    with task_runner_for(execution) as runner:
        yield runner


def _partition_run_name() -> str:
    folder = Path(str(task_run.parameters["folder"]))
    return f"adjudicate-{folder.parent.name.removeprefix('parts-')[:12]}-{folder.name}"


@task(name="adjudicate-partition", cache_policy=NONE, task_run_name=_partition_run_name)
def adjudicate_partition(folder: str, ruleset: RuleSet) -> PartitionResult:
    """Decide one part of a batch from its folder (on whatever worker runs it)."""
    return decide_partition(Path(folder), ruleset)


def parts_on(runner: TaskRunner[Any]) -> RunParts:
    """Decide parts by submitting one `adjudicate-partition` task each to `runner`."""

    def run_parts(folders: list[Path], ruleset: RuleSet) -> list[PartitionResult]:
        futures = [
            runner.submit(adjudicate_partition, {"folder": str(f), "ruleset": ruleset})
            for f in folders
        ]
        # Every part finishes (or fails) before the batch is combined or given up,
        # so no worker is still writing into a folder that is being removed.
        wait(futures)
        return [future.result() for future in futures]

    return run_parts


@task(name="prepare-batch", cache_policy=NONE, task_run_name="prepare-{source}")
def prepare_batch(
    source: BatchSource, run: RunContext, in_pieces: bool = True
) -> BatchOutcome | PreparedBatch | NotRead:
    try:
        return pipeline.prepare_batch(source, run, in_pieces=in_pieces)
    except InboxFileUnavailable as exc:
        return not_read(exc)


@task(name="prepare-batch-in-chunks", cache_policy=NONE, task_run_name="prepare-{path}")
def prepare_batch_in_chunks(
    path: Path, batch_id: str, run: RunContext, partitions: int, work: Path
) -> BatchOutcome | ChunkedBatch | NotRead | None:
    """A local CSV, JSON Lines or Parquet batch read and validated a chunk at a time,
    its valid cases written to its parts under `work`; None when it must be read whole."""
    try:
        return chunked.prepare_in_chunks(path, batch_id, run, partitions, work)
    except ReadWhole as exc:
        get_run_logger().info(
            "batch %s is read whole: %s", shown_name(path.name), printable(str(exc))
        )
        return None
    except InboxFileUnavailable as exc:
        return not_read(exc)


@task(name="record-batch", cache_policy=NONE, task_run_name="record-{batch.source}")
def record_batch(batch: BatchIdentity, decided: DecidedBatch, run: RunContext) -> BatchOutcome:
    return pipeline.record_decided(batch, decided, run)


def adjudicate_in_partitions(
    source: BatchSource, run: RunContext, execution: Execution, runner: TaskRunner[Any]
) -> BatchOutcome | NotRead:
    """Prepare a batch, decide it in parts on `runner`, then record it in one step.

    A local CSV, JSON Lines or Parquet file is prepared a chunk at a time
    (claimsflow/pipeline/chunked.py), so this process never holds the whole batch; any
    other source, or a file whose pieces do not all read, is read whole.
    """
    attempted = None
    if chunked.reads_in_chunks(source):
        attempted = time.perf_counter()
        outcome = adjudicate_file_in_chunks(source, run, execution, runner)
        if outcome is not None:
            return outcome
    # A file whose pieces fell back is read whole at once (the same pieces would too).
    prepared = prepare_batch(source, run, in_pieces=attempted is None)
    if isinstance(prepared, NotRead):
        return prepared
    if isinstance(prepared, BatchOutcome):
        prepared = prepared if attempted is None else chunked.timed_from(attempted, prepared)
        log_outcome(prepared)
        return prepared
    # The parts' folders hold their outputs until the batch's tables are written from
    # them (the coordinator never reads them all back, issue 15).
    with parts_folder(run, prepared.batch_id) as work:
        outcome = _decided_and_recorded(
            prepared.identity,
            lambda: decide_in_partitions(
                prepared, run, execution.partitions, parts_on(runner), work
            ),
            run,
            execution,
        )
    outcome = outcome if attempted is None else chunked.timed_from(attempted, outcome)
    log_outcome(outcome)
    return outcome


def adjudicate_file_in_chunks(
    path: Path, run: RunContext, execution: Execution, runner: TaskRunner[Any]
) -> BatchOutcome | NotRead | None:
    """A local CSV, JSON Lines or Parquet batch prepared a chunk at a time, decided in
    parts on `runner`, and recorded from the parts' files; None when it must be read
    whole."""
    try:
        batch_id = batch_id_of_file(path)
    except InboxFileUnavailable as exc:
        return not_read(exc)
    with parts_folder(run, batch_id) as work:
        prepared = prepare_batch_in_chunks(path, batch_id, run, execution.partitions, work)
        if prepared is None or isinstance(prepared, NotRead):
            return prepared
        if isinstance(prepared, BatchOutcome):
            log_outcome(prepared)
            return prepared
        ready: ChunkedBatch = prepared  # what the closure below sees, as narrowed here
        outcome = _decided_and_recorded(
            ready.identity,
            lambda: chunked.decide_in_chunks(ready, run, parts_on(runner)),
            run,
            execution,
        )
    log_outcome(outcome)
    return outcome


def _decided_and_recorded(
    batch: BatchIdentity, decide: Callable[[], DecidedBatch], run: RunContext, execution: Execution
) -> BatchOutcome:
    """A prepared batch decided in parts (`decide`), then recorded in one step."""
    started = time.perf_counter()
    decided = decide()
    get_run_logger().info(
        "batch %s: %d valid case(s) decided in %d partition(s) in %.2fs",
        shown_name(batch.source),
        decided.rows_decided,
        execution.partitions,
        time.perf_counter() - started,
    )
    return record_batch(batch, decided, run)


def process_on(execution: Execution, runner: TaskRunner[Any] | None) -> ProcessBatch:
    """How a run processes each batch: in one piece (`adjudicate-file`,
    `adjudicate-sql-increment`), or prepared, decided in parts on `runner`, and
    recorded."""

    def process(source: BatchSource, run: RunContext) -> BatchOutcome | NotRead:
        if runner is not None:
            return adjudicate_in_partitions(source, run, execution, runner)
        if isinstance(source, SqlIncrement):
            return adjudicate_sql_increment(source, run)
        return adjudicate_file(source, run)

    return process
