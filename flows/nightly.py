"""The nightly adjudication flow: inbox (and SQL source) -> event log -> catalog."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.context import get_run_context
from prefect.logging import get_run_logger
from pydantic import Field

from claimsflow import eventlog
from claimsflow.lake_lock import writer_lock
from claimsflow.pipeline import BatchOutcome, RunContext
from claimsflow.run_summary import RunSummary
from claimsflow.settings import DEFAULT_INBOX, DEFAULT_LAKE, DEFAULT_REFERENCE, RULES_DIR
from tasks.adjudication import (
    adjudicate_file,
    adjudicate_sql_increment,
    discover_batches,
    load_reference_data,
    load_rule_set,
    pull_sql_increment,
    rebuild_history,
    refresh_catalog,
)


@flow(name="nightly-adjudication", log_prints=True)
def nightly_adjudication(
    inbox: Annotated[str, Field(description="Folder of case batch files.")] = str(DEFAULT_INBOX),
    reference: Annotated[
        str, Field(description="Folder with members.csv, providers.csv, fee_schedule.csv.")
    ] = str(DEFAULT_REFERENCE),
    lake: Annotated[str, Field(description="Lake folder: event log and catalog.duckdb.")] = str(
        DEFAULT_LAKE
    ),
    ruleset: Annotated[
        str | None,
        Field(description="Rule-set version to use; empty = the one in effect on the run date."),
    ] = None,
    run_date: Annotated[
        dt.date | None, Field(description="Date that selects the rule set; empty = today (UTC).")
    ] = None,
    rules_dir: Annotated[str, Field(description="Folder of rule-set files.")] = str(RULES_DIR),
    source_url: Annotated[
        str | None,
        Field(description="SQLAlchemy URL of a staging database, without its password."),
    ] = None,
    source_table: Annotated[
        str | None, Field(description="Staging table with an ingest_seq column (optional).")
    ] = None,
    source_secret: Annotated[
        str | None,
        Field(
            description="Name of a Prefect Secret block holding the source's password "
            "(else the CLAIMS_SOURCE_PASSWORD environment variable is used)."
        ),
    ] = None,
) -> RunSummary:
    """Adjudicate every new batch of the inbox (then the SQL source), in name order."""
    logger = get_run_logger()
    lake_path = Path(lake)
    reference_data = load_reference_data(Path(reference))
    chosen = load_rule_set(Path(rules_dir), ruleset, run_date or dt.datetime.now(dt.UTC).date())
    outcomes: list[BatchOutcome] = []
    # One writer per lake: every batch must see every decision before it (spec §6).
    with writer_lock(lake_path, on_wait=logger.warning):
        eventlog.ensure_lake(lake_path)
        eventlog.clean_staging(lake_path)
        history = rebuild_history(lake_path)
        run = RunContext(lake_path, reference_data, chosen, _run_id())
        batches, ignored = discover_batches(Path(inbox))
        for path in batches:
            outcome, history = adjudicate_file(path, run, history)
            outcomes.append(outcome)
        if source_url and source_table:
            increment = pull_sql_increment(source_url, source_table, lake_path, source_secret)
            if increment is not None:
                outcome, history = adjudicate_sql_increment(increment, run, history)
                outcomes.append(outcome)
        refresh_catalog(lake_path)
    summary = RunSummary(
        run_id=run.run_id,
        ruleset=chosen.label,
        batches=outcomes,
        ignored=[p.name for p in ignored],
    )
    create_table_artifact(
        table=summary.batch_table(),
        key="nightly-batches",
        description=f"Batches of run {run.run_id} ({chosen.label})",
    )
    for line in summary.lines():
        (logger.warning if summary.exit_code else logger.info)(line)
    return summary


def _run_id() -> str:
    try:
        context = get_run_context()
        return str(context.flow_run.id) if context.flow_run else uuid.uuid4().hex  # type: ignore[union-attr]
    except Exception:
        return uuid.uuid4().hex
