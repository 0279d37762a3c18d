"""One run's facts, read back from the event log.

A run is the set of batch records carrying its `run_id` (the Prefect flow run id
of the nightly flow). Everything here is read from the log's Parquet files through
the catalog's own view definitions, in a private in-memory DuckDB: the report and
the data-quality gate see exactly what an analyst sees, and they work on a lake
whose catalog.duckdb is stale or missing (nothing is written to the lake).

Only PROCESSED batch records own decisions and rejections: a SKIPPED record
carries the batch id of the batch it repeats, whose rows belong to an earlier run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from claimsflow import catalog, eventlog
from claimsflow.storage import Location

APPROVED, DENIED, PENDED = "APPROVED", "DENIED", "PENDED"
DECISION_STATUSES = (APPROVED, DENIED, PENDED)
AMOUNT_COLUMNS = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")


class RunLogError(Exception):
    """No event log, or no such run; the message is for the user."""


def open_event_log(lake: Location) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the catalog's views over `lake`'s event log, read only."""
    if not eventlog.has_event_log(lake):
        raise RunLogError(f"{lake}: no event log here (run `adjudicate run` first)")
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        catalog.register_lake(con, lake)  # a remote lake's filesystem, before the views
        for name, select in catalog.view_definitions(lake).items():
            con.execute(f"CREATE VIEW {name} AS {select}")
        # Reads stay inside the lake, as for analysts (catalog.connect_read_only).
        catalog.restrict_to_lake(con, lake)
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


RUNS_SQL = """
    WITH b AS (
        SELECT run_id,
               min(processed_at) AS started_at,
               max(processed_at) AS finished_at,
               count(*) AS batches,
               coalesce(sum(rows_in) FILTER (WHERE status = 'PROCESSED'), 0) AS rows_in,
               coalesce(sum(rows_rejected) FILTER (WHERE status = 'PROCESSED'), 0)
                   AS rows_rejected
        FROM batches WHERE run_id IS NOT NULL GROUP BY run_id),
    d AS (
        SELECT b.run_id, count(*) AS cases_decided,
               count(*) FILTER (WHERE d.status = 'DENIED') AS cases_denied
        FROM decision_events d JOIN batches b
          ON b.batch_id = d.batch_id AND b.status = 'PROCESSED'
        GROUP BY b.run_id)
    SELECT b.run_id, b.started_at, b.finished_at, b.batches,
           b.rows_in::BIGINT AS rows_in, b.rows_rejected::BIGINT AS rows_rejected,
           coalesce(d.cases_decided, 0)::BIGINT AS cases_decided,
           coalesce(d.cases_denied, 0)::BIGINT AS cases_denied
    FROM b LEFT JOIN d USING (run_id)
    ORDER BY b.finished_at, b.run_id
"""


def runs(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every run of the log, oldest first: its time span, rows and decisions."""
    return _frame(con, RUNS_SQL)


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """`run_id` if the log knows it; the latest run (last batch recorded) when None."""
    known = runs(con)
    if known.is_empty():
        raise RunLogError("no run is recorded in the event log yet")
    if run_id is None:
        return str(known["run_id"][-1])
    if run_id not in known["run_id"]:
        raise RunLogError(f"run {run_id!r} is not in the event log")
    return run_id


BATCHES_SQL = """
    SELECT b.source, b.batch_id, b.status, b.rows_in, b.rows_decided, b.rows_rejected,
           b.reason, b.processed_at, b.source_kind, b.ruleset_name, b.ruleset_version,
           count(d.case_id) FILTER (WHERE d.status = 'APPROVED') AS approved,
           count(d.case_id) FILTER (WHERE d.status = 'DENIED') AS denied,
           count(d.case_id) FILTER (WHERE d.status = 'PENDED') AS pended,
           count(d.case_id) AS decisions_recorded,
           (SELECT count(*) FROM rejection_events r
             WHERE r.batch_id = b.batch_id AND b.status = 'PROCESSED') AS rejections_recorded
    FROM batches b
    LEFT JOIN decision_events d ON d.batch_id = b.batch_id AND b.status = 'PROCESSED'
    WHERE b.run_id = $run
    GROUP BY ALL
    ORDER BY b.processed_at, b.source, b.batch_id
"""

DECISIONS_SQL = """
    SELECT d.case_id, d.batch_id, d.status, d.reason_codes,
           d.allowed_cents, d.deductible_cents, d.coinsurance_cents, d.paid_cents,
           d.deductible_used_before_cents, d.annual_deductible_cents,
           c.member_id, c.provider_id, c.service_date, c.billed_cents
    FROM decision_events d
    JOIN batches b ON b.batch_id = d.batch_id AND b.status = 'PROCESSED' AND b.run_id = $run
    LEFT JOIN case_payloads c ON c.batch_id = d.batch_id AND c.case_id = d.case_id
    ORDER BY d.batch_id, d.case_id
"""

REJECTIONS_SQL = """
    SELECT r.batch_id, r.row_number, r.case_id, r.errors
    FROM rejection_events r
    JOIN batches b ON b.batch_id = r.batch_id AND b.status = 'PROCESSED' AND b.run_id = $run
    ORDER BY r.batch_id, r.row_number
"""

REASONS_SQL = """
    SELECT h.reason_code, min(h.rule_description) AS description
    FROM rule_hit_events h
    JOIN batches b ON b.batch_id = h.batch_id AND b.status = 'PROCESSED' AND b.run_id = $run
    GROUP BY h.reason_code
"""


@dataclass(frozen=True)
class RunFacts:
    """What the event log holds about one run (frames as read, no aggregation)."""

    run_id: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    batches: pl.DataFrame
    decisions: pl.DataFrame
    rejections: pl.DataFrame
    reason_descriptions: dict[str, str]
    #: Every run of the log (see `runs`), for the drift baseline.
    all_runs: pl.DataFrame

    @property
    def rulesets(self) -> list[str]:
        labels = self.batches.filter(pl.col("ruleset_name").is_not_null()).select(
            pl.format("{} v{}", "ruleset_name", "ruleset_version").alias("label")
        )
        return sorted(set(labels["label"].to_list()))


def load_run_facts(lake: Location, run_id: str | None = None) -> RunFacts:
    """The facts of run `run_id` (default: the latest run) from `lake`'s event log."""
    con = open_event_log(lake)
    try:
        chosen = resolve_run(con, run_id)
        return facts_of(con, chosen)
    finally:
        con.close()


def facts_of(con: duckdb.DuckDBPyConnection, run_id: str) -> RunFacts:
    params = {"run": run_id}
    all_runs = runs(con)
    mine = all_runs.filter(pl.col("run_id") == run_id)
    reasons = con.execute(REASONS_SQL, params).fetchall()
    return RunFacts(
        run_id=run_id,
        started_at=mine["started_at"][0] if mine.height else None,
        finished_at=mine["finished_at"][0] if mine.height else None,
        batches=_frame(con, BATCHES_SQL, params),
        decisions=_frame(con, DECISIONS_SQL, params),
        rejections=_frame(con, REJECTIONS_SQL, params),
        reason_descriptions={str(code): str(text) for code, text in reasons},
        all_runs=all_runs,
    )


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, str] | None = None
) -> pl.DataFrame:
    frame: pl.DataFrame = con.sql(sql, params=params or {}).pl()
    return frame


def empty_facts(run_id: str) -> RunFacts:
    """The facts of a run that recorded nothing (an empty inbox): it is not in the log."""
    return RunFacts(
        run_id=run_id,
        started_at=None,
        finished_at=None,
        batches=pl.DataFrame(
            schema={
                "source": pl.String,
                "batch_id": pl.String,
                "status": pl.String,
                "rows_in": pl.Int64,
                "rows_decided": pl.Int64,
                "rows_rejected": pl.Int64,
                "reason": pl.String,
                "processed_at": eventlog.UTC_TS,
                "source_kind": pl.String,
                "ruleset_name": pl.String,
                "ruleset_version": pl.String,
                "approved": pl.Int64,
                "denied": pl.Int64,
                "pended": pl.Int64,
                "decisions_recorded": pl.Int64,
                "rejections_recorded": pl.Int64,
            }
        ),
        decisions=pl.DataFrame(
            schema={
                "case_id": pl.String,
                "batch_id": pl.String,
                "status": pl.String,
                "reason_codes": pl.List(pl.String),
                **dict.fromkeys(AMOUNT_COLUMNS, pl.Int64),
                "deductible_used_before_cents": pl.Int64,
                "annual_deductible_cents": pl.Int64,
                "member_id": pl.String,
                "provider_id": pl.String,
                "service_date": pl.Date,
                "billed_cents": pl.Int64,
            }
        ),
        rejections=pl.DataFrame(
            schema={
                "batch_id": pl.String,
                "row_number": pl.Int64,
                "case_id": pl.String,
                "errors": pl.List(pl.String),
            }
        ),
        reason_descriptions={},
        all_runs=pl.DataFrame(),
    )


def load_or_empty(lake: Location, run_id: str) -> RunFacts:
    """The run's facts; empty facts when the run recorded no batch (nothing to read)."""
    con = open_event_log(lake)
    try:
        known = runs(con)
        if run_id not in known["run_id"]:
            return empty_facts(run_id)
        return facts_of(con, run_id)
    finally:
        con.close()


# Aggregates the report shows (pure functions of the facts' frames).


def status_counts(decisions: pl.DataFrame) -> dict[str, int]:
    counts = dict.fromkeys(DECISION_STATUSES, 0)
    for status, n in decisions.group_by("status").len().iter_rows():
        counts[str(status)] = int(n)
    return counts


def denial_reasons(decisions: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """reason_code, cases: reason codes of DENIED cases, most frequent first."""
    return (
        decisions.filter(pl.col("status") == DENIED)
        .select(pl.col("reason_codes").alias("reason_code"))
        .explode("reason_code")
        .drop_nulls()
        .group_by("reason_code")
        .agg(pl.len().cast(pl.Int64).alias("cases"))
        .sort(["cases", "reason_code"], descending=[True, False])
        .head(top)
    )


def provider_amounts(decisions: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """provider_id, approved, allowed_cents, paid_cents of APPROVED cases, top by allowed."""
    return (
        decisions.filter(pl.col("status") == APPROVED)
        .group_by("provider_id")
        .agg(
            pl.len().cast(pl.Int64).alias("approved"),
            pl.col("allowed_cents").sum(),
            pl.col("paid_cents").sum(),
        )
        .sort(["allowed_cents", "provider_id"], descending=[True, False])
        .head(top)
    )


def rejection_errors(rejections: pl.DataFrame) -> pl.DataFrame:
    """column, problem, errors: each error of a rejected row is `column: problem`."""
    errors = rejections.select(pl.col("errors").alias("error")).explode("error").drop_nulls()
    parts = pl.col("error").str.split_exact(": ", 1)
    return (
        errors.with_columns(parts.alias("parts"))
        .unnest("parts")
        .rename({"field_0": "column", "field_1": "problem"})
        .with_columns(pl.col("problem").fill_null(""))
        .group_by("column", "problem")
        .agg(pl.len().cast(pl.Int64).alias("errors"))
        .sort(["errors", "column", "problem"], descending=[True, False, False])
    )


def amount_totals(decisions: pl.DataFrame) -> dict[str, int]:
    """billed of every decided case; allowed, deductible, coinsurance, paid (all cents)."""
    sums = decisions.select(
        pl.col("billed_cents").sum(), *[pl.col(c).sum() for c in AMOUNT_COLUMNS]
    )
    return {c: int(sums[c][0] or 0) for c in sums.columns}


#: Member-years by share of the annual deductible used after the run (lower bound, label).
DEDUCTIBLE_BUCKETS: tuple[tuple[float, str], ...] = (
    (0.0, "under 25 %"),
    (0.25, "25-50 %"),
    (0.5, "50-75 %"),
    (0.75, "75-99 %"),
    (1.0, "met (100 %)"),
)
NO_DEDUCTIBLE = "no deductible"


def deductible_progress(decisions: pl.DataFrame) -> pl.DataFrame:
    """One row per member and service year with an APPROVED case in the run.

    used_after_cents is the deductible used once the run's last case of that member-year
    was priced: the running total before a case plus what the case took, at its largest.
    """
    return (
        decisions.filter(pl.col("status") == APPROVED)
        .with_columns(pl.col("service_date").dt.year().alias("service_year"))
        .group_by("member_id", "service_year")
        .agg(
            (pl.col("deductible_used_before_cents") + pl.col("deductible_cents"))
            .max()
            .alias("used_after_cents"),
            pl.col("deductible_cents").sum().alias("applied_cents"),
            pl.col("annual_deductible_cents").max().alias("annual_deductible_cents"),
        )
        .sort("member_id", "service_year")
    )


def deductible_buckets(progress: pl.DataFrame) -> list[tuple[str, int]]:
    """(bucket label, member-years) for every bucket, no-deductible first."""
    counts = dict.fromkeys([NO_DEDUCTIBLE, *[label for _, label in DEDUCTIBLE_BUCKETS]], 0)
    for used, annual in progress.select("used_after_cents", "annual_deductible_cents").rows():
        if not annual:
            counts[NO_DEDUCTIBLE] += 1
            continue
        share = (used or 0) / annual
        label = [name for low, name in DEDUCTIBLE_BUCKETS if share >= low][-1]
        counts[label] += 1
    return list(counts.items())
