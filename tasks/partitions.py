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
from collections.abc import Iterator
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

from claimsflow import pipeline
from claimsflow.history import History
from claimsflow.partitioning import (
    PartitionResult,
    RunParts,
    check_partitionable,
    decide_in_partitions,
    decide_partition,
)
from claimsflow.pipeline import BatchOutcome, PreparedBatch, RunContext
from claimsflow.rules.ruleset import RuleSet
from claimsflow.sql_source import SqlIncrement
from claimsflow.storage import Location
from tasks.adjudication import adjudicate_file, adjudicate_sql_increment, log_outcome

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


@task(name="prepare-file", cache_policy=NONE, task_run_name="prepare-{path.name}")
def prepare_file(path: Location, run: RunContext, history: History) -> BatchOutcome | PreparedBatch:
    return pipeline.prepare_batch_file(path, run, history)


@task(name="prepare-sql-increment", cache_policy=NONE)
def prepare_sql_increment(
    increment: SqlIncrement, run: RunContext, history: History
) -> BatchOutcome | PreparedBatch:
    return pipeline.prepare_sql_batch(increment, run, history)


@task(name="record-batch", cache_policy=NONE, task_run_name="record-{prepared.source}")
def record_batch(
    prepared: PreparedBatch, decision: pipeline.BatchDecision, run: RunContext, history: History
) -> tuple[BatchOutcome, History]:
    return pipeline.record_prepared(prepared, decision, run, history)


def adjudicate_in_partitions(
    prepared: BatchOutcome | PreparedBatch,
    run: RunContext,
    history: History,
    execution: Execution,
    runner: TaskRunner[Any],
) -> tuple[BatchOutcome, History]:
    """Decide a prepared batch in parts on `runner`, then record it in one step."""
    if isinstance(prepared, BatchOutcome):
        log_outcome(prepared)
        return prepared, history
    started = time.perf_counter()
    decision = decide_in_partitions(prepared, run, history, execution.partitions, parts_on(runner))
    get_run_logger().info(
        "batch %s: %d valid case(s) decided in %d partition(s) in %.2fs",
        prepared.source,
        decision.decisions.height,
        execution.partitions,
        time.perf_counter() - started,
    )
    outcome, history = record_batch(prepared, decision, run, history)
    log_outcome(outcome)
    return outcome, history


def adjudicate_file_on(
    path: Location,
    run: RunContext,
    history: History,
    execution: Execution,
    runner: TaskRunner[Any] | None,
) -> tuple[BatchOutcome, History]:
    """One inbox file: in one piece (`adjudicate-file`), or prepared, decided in
    parts on `runner`, and recorded."""
    if runner is None:
        return adjudicate_file(path, run, history)
    prepared = prepare_file(path, run, history)
    return adjudicate_in_partitions(prepared, run, history, execution, runner)


def adjudicate_sql_increment_on(
    increment: SqlIncrement,
    run: RunContext,
    history: History,
    execution: Execution,
    runner: TaskRunner[Any] | None,
) -> tuple[BatchOutcome, History]:
    """One SQL pull, as `adjudicate_file_on` does a file."""
    if runner is None:
        return adjudicate_sql_increment(increment, run, history)
    prepared = prepare_sql_increment(increment, run, history)
    return adjudicate_in_partitions(prepared, run, history, execution, runner)
