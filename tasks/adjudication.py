"""Tasks of the adjudication runs. Each wraps one stage of `claimsflow`; none holds logic.

Caching is off (`NONE`): inputs are frames and run state, and a re-run's
idempotency comes from the event log's batch identity, not from Prefect's cache.
Only reads that may fail transiently are retried (see tasks/retry.py); a task
that records a batch is never retried, since a retry after the batch was
published would see it as already recorded and skip it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from contextlib import ExitStack
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_rulesets, select_ruleset
from claimsflow.ingest.archive import archive_file, record_move
from claimsflow.ingest.inbox import InboxFileUnavailable, InboxListing, NotRead, list_inbox
from claimsflow.ingest.sql_source import PASSWORD_ENV, SqlIncrement, pull_increment, with_password
from claimsflow.lake import catalog
from claimsflow.lake.history import LakeHistory
from claimsflow.lake.lock import writer_lock
from claimsflow.lake.storage import Location
from claimsflow.pipeline import batch as pipeline
from claimsflow.pipeline import run as run_loop
from claimsflow.pipeline.batch import BatchOutcome, RunContext
from claimsflow.text import printable, shown_name
from tasks.retry import LOCK_BACKOFF, SOURCE_BACKOFF, retry_on_transient


@task(name="load-reference-data", cache_policy=NONE)
def load_reference_data(reference_dir: Path) -> Reference:
    started = time.perf_counter()
    reference = load_reference(reference_dir)
    get_run_logger().info(
        "reference data %s: %d member span(s), %d provider(s), %d fee(s) in %.2fs",
        reference_dir,
        reference.members.height,
        reference.providers.height,
        reference.fee_schedule.height,
        time.perf_counter() - started,
    )
    return reference


@task(name="load-rule-set", cache_policy=NONE)
def load_rule_set(rules_dir: Path, version: str | None, run_date: dt.date) -> RuleSet:
    ruleset = select_ruleset(load_rulesets(rules_dir), run_date, version)
    get_run_logger().info("rule set %s (%s)", ruleset.label, ruleset.source.name)
    return ruleset


@task(
    name="take-writer-lock",
    cache_policy=NONE,
    retries=len(LOCK_BACKOFF),
    retry_delay_seconds=LOCK_BACKOFF,
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_on_transient,
)
def take_writer_lock(lake: Location, wait_seconds: float) -> ExitStack:
    """Hold the lake's writer lock until the returned stack is closed.

    Waits up to `wait_seconds` for another run to finish; then `LakeBusy`, which
    is retried with back-off. The lock is an flock on a descriptor of this process,
    so it stays held across the tasks the flow runs while the stack is open.
    """
    held = ExitStack()
    held.enter_context(writer_lock(lake, timeout=wait_seconds, on_wait=_warn))
    return held


def _warn(message: str) -> None:
    get_run_logger().warning(message)


@task(name="open-lake", cache_policy=NONE)
def open_lake(lake: Location) -> None:
    """Prepare the lake for this run's writes (under the lock); the history stays in
    its event log, and each batch reads the part of it that it needs
    (claimsflow/lake/history.py)."""
    logger = get_run_logger()
    started = time.perf_counter()
    removed = run_loop.open_lake(lake)
    if removed:
        logger.warning("removed %d leftover(s) of an interrupted run from %s", removed, lake)
    logger.info(
        "history of %s: %d decision(s) in the event log, read batch by batch; opened in %.2fs",
        lake,
        LakeHistory(lake).decision_count(),  # from the Parquet footers, not the decisions
        time.perf_counter() - started,
    )


@task(name="discover-batches", cache_policy=NONE)
def discover_batches(inbox: Location, quiet_seconds: float = 0) -> InboxListing:
    """The inbox's batch files ready now; the rest named in the log (and the report)."""
    listing = list_inbox(inbox, quiet_seconds=quiet_seconds)
    logger = get_run_logger()
    logger.info("%d batch file(s) in %s", len(listing.batches), inbox)
    for entry in listing.ignored:
        logger.warning("not a batch, left untouched: %s", shown_name(entry.name))
    for entry in listing.not_ready:
        logger.info(
            "not ready (modified in the last %ss), left for the next run: %s",
            quiet_seconds,
            shown_name(entry.name),
        )
    for not_read in listing.not_read:
        logger.warning("cannot be examined, left untouched: %s", printable(str(not_read)))
    return listing


@task(name="adjudicate-file", cache_policy=NONE, task_run_name="adjudicate-{path.name}")
def adjudicate_file(path: Location, run: RunContext) -> BatchOutcome | NotRead:
    try:
        outcome = pipeline.process_batch(path, run)
    except InboxFileUnavailable as exc:
        return not_read(exc)
    log_outcome(outcome)
    return outcome


def not_read(exc: InboxFileUnavailable) -> NotRead:
    """A listed file that could not be read whole: no batch this run (nothing recorded)."""
    left = NotRead(exc.name, exc.reason)
    get_run_logger().warning("not read, left for the next run: %s", printable(str(left)))
    return left


@task(
    name="pull-sql-increment",
    cache_policy=NONE,
    retries=len(SOURCE_BACKOFF),
    retry_delay_seconds=SOURCE_BACKOFF,
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_on_transient,
)
def pull_sql_increment(
    url: str,
    table: str,
    lake: Location,
    secret_block: str | None = None,
    up_to: int | None = None,
) -> SqlIncrement | None:
    """Pull new rows (up to ingest_seq `up_to` when given); the password comes from a
    Secret block or CLAIMS_SOURCE_PASSWORD, so it never travels in flow parameters,
    logs or events."""
    if secret_block:
        from prefect.blocks.system import Secret

        block: Secret[str] = Secret.load(secret_block)  # type: ignore[assignment]
        password: str | None = str(block.get())
    else:
        password = os.environ.get(PASSWORD_ENV)
    increment = pull_increment(with_password(url, password), table, lake, up_to)
    if increment is None:
        get_run_logger().info("%s: no rows above the high-water mark", table)
    return increment


@task(name="adjudicate-sql-increment", cache_policy=NONE)
def adjudicate_sql_increment(increment: SqlIncrement, run: RunContext) -> BatchOutcome:
    outcome = pipeline.process_batch(increment, run)
    log_outcome(outcome)
    return outcome


@task(name="refresh-catalog", cache_policy=NONE)
def refresh_catalog(lake: Location) -> Path:
    started = time.perf_counter()
    path = catalog.refresh_catalog(lake)
    get_run_logger().info("catalog %s refreshed in %.2fs", path, time.perf_counter() - started)
    return path


def log_outcome(outcome: BatchOutcome) -> None:
    get_run_logger().info(
        "batch %s (%s): %s, %d in, %d decided, %d rejected, %.2fs%s",
        shown_name(outcome.source),
        outcome.batch_id[:12],
        outcome.status,
        outcome.rows_in,
        outcome.rows_decided,
        outcome.rows_rejected,
        outcome.seconds,
        (f", {outcome.voided_originals} earlier case(s) voided" if outcome.voided_originals else "")
        + (f" — {printable(outcome.reason)}" if outcome.reason else ""),
    )


@task(name="archive-batch-file", cache_policy=NONE, task_run_name="archive-{path.name}")
def archive_batch_file(path: Path, archive: Path, outcome: BatchOutcome, run: RunContext) -> Path:
    """Move a recorded batch's file to the archive, then record the move (--archive)."""
    moved_at = dt.datetime.now(dt.UTC)
    target = archive_file(path, archive, outcome.batch_id, moved_at)
    if isinstance(run.lake, Path):
        record_move(
            run.lake,
            run_id=run.run_id,
            batch_id=outcome.batch_id,
            status=outcome.status,
            source=outcome.source,
            archived_to=target,
            moved_at=moved_at,
        )
    get_run_logger().info("archived %s to %s", shown_name(outcome.source), target)
    return target
