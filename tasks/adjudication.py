"""Tasks of the nightly run. Each wraps one stage of `claimsflow`; none holds logic.

Caching is off (`NONE`): inputs are frames and run state, and a re-run's
idempotency comes from the event log's batch identity, not from Prefect's cache.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from claimsflow import catalog, pipeline
from claimsflow.history import History
from claimsflow.pipeline import BatchOutcome, RunContext
from claimsflow.reference import Reference, load_reference
from claimsflow.rules.ruleset import RuleSet, load_rulesets, select_ruleset
from claimsflow.sql_source import PASSWORD_ENV, SqlIncrement, pull_increment, with_password


@task(name="load-reference-data", cache_policy=NONE)
def load_reference_data(reference_dir: Path) -> Reference:
    return load_reference(reference_dir)


@task(name="load-rule-set", cache_policy=NONE)
def load_rule_set(rules_dir: Path, version: str | None, run_date: dt.date) -> RuleSet:
    ruleset = select_ruleset(load_rulesets(rules_dir), run_date, version)
    get_run_logger().info("rule set %s (%s)", ruleset.label, ruleset.source.name)
    return ruleset


@task(name="rebuild-history", cache_policy=NONE)
def rebuild_history(lake: Path) -> History:
    return History.from_lake(lake)


@task(name="discover-batches", cache_policy=NONE)
def discover_batches(inbox: Path) -> tuple[list[Path], list[Path]]:
    batches, ignored = pipeline.discover_inbox(inbox)
    logger = get_run_logger()
    logger.info("%d batch file(s) in %s", len(batches), inbox)
    for entry in ignored:
        logger.warning("not a batch, left untouched: %s", entry.name)
    return batches, ignored


@task(name="adjudicate-file", cache_policy=NONE, task_run_name="adjudicate-{path.name}")
def adjudicate_file(path: Path, run: RunContext, history: History) -> tuple[BatchOutcome, History]:
    outcome, history = pipeline.process_batch_file(path, run, history)
    _log_outcome(outcome)
    return outcome, history


@task(
    name="pull-sql-increment",
    cache_policy=NONE,
    retries=3,
    retry_delay_seconds=[2, 10, 30],
)
def pull_sql_increment(
    url: str, table: str, lake: Path, secret_block: str | None = None
) -> SqlIncrement | None:
    """Pull new rows; the password comes from a Secret block or CLAIMS_SOURCE_PASSWORD,
    so it never travels in flow parameters, logs or events."""
    if secret_block:
        from prefect.blocks.system import Secret

        block: Secret[str] = Secret.load(secret_block)  # type: ignore[assignment]
        password: str | None = str(block.get())
    else:
        password = os.environ.get(PASSWORD_ENV)
    return pull_increment(with_password(url, password), table, lake)


@task(name="adjudicate-sql-increment", cache_policy=NONE)
def adjudicate_sql_increment(
    increment: SqlIncrement, run: RunContext, history: History
) -> tuple[BatchOutcome, History]:
    outcome, history = pipeline.process_sql_batch(increment, run, history)
    _log_outcome(outcome)
    return outcome, history


@task(name="refresh-catalog", cache_policy=NONE)
def refresh_catalog(lake: Path) -> Path:
    return catalog.refresh_catalog(lake)


def _log_outcome(outcome: BatchOutcome) -> None:
    get_run_logger().info(
        "batch %s (%s): %s, %d in, %d decided, %d rejected, %.2fs%s",
        outcome.source,
        outcome.batch_id[:12],
        outcome.status,
        outcome.rows_in,
        outcome.rows_decided,
        outcome.rows_rejected,
        outcome.seconds,
        f" — {outcome.reason}" if outcome.reason else "",
    )
