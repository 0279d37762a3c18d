"""One run's facts, read back from the event log as aggregates.

A run is the set of batch records carrying its `run_id` (the Prefect flow run id
of the nightly flow). Everything here is read from the log's Parquet files in a
private in-memory DuckDB: the run list and batch records through the catalog's own
view definitions, the run's decisions and rejections from its own batch folders.
The report, the metrics and the data-quality gate work on a lake whose
catalog.duckdb is stale or missing (nothing is written to the lake).

Nothing of a run is brought into Python row by row: counts, sums, the top providers
and reasons, the deductible buckets are computed by DuckDB over the Parquet files,
so the memory they take does not grow with the run (issue 15: a 10M-case run's
decisions used to be read into one frame for the report and the gate). DuckDB's
own memory is capped (MEMORY_LIMIT) and spills to a temporary folder beyond it.

Only PROCESSED batch records own decisions and rejections: a SKIPPED record
carries the batch id of the batch it repeats, whose rows belong to an earlier run.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import polars as pl

from claimsflow.lake import catalog, eventlog
from claimsflow.lake.storage import Location, RemoteLocation
from claimsflow.text import shown_name
from claimsflow.vocabulary import APPROVED, DENIED, PENDED, PROCESSED, VOIDED

#: Statuses the report always shows (a status the log gains later counts under its name).
DECISION_STATUSES = (APPROVED, DENIED, PENDED)
AMOUNT_COLUMNS = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")


#: DuckDB's memory for a run's aggregates and the gate's pass (it spills beyond it).
MEMORY_LIMIT = "1GB"


def _spill_folder() -> Path:
    return Path(tempfile.gettempdir()) / "claims-duckdb-spill"


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
        # Bounded memory whatever the run's size: joins and aggregates beyond it spill
        # to the temporary folder (set before the lake restriction closes file access).
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = '{_quote(str(_spill_folder()))}'")
        # Reads stay inside the lake, as for analysts (catalog.connect_read_only).
        catalog.restrict_to_lake(con, lake)
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
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
        FROM batches WHERE run_id IS NOT NULL AND kind <> 'REVIEW' GROUP BY run_id),
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


@dataclass(frozen=True)
class DeductibleProgress:
    """Member-years with an APPROVED case in the run, by share of the annual deductible
    used once the run's last case of that member-year was priced."""

    buckets: list[tuple[str, int]]
    member_years: int
    applied_cents: int


@dataclass(frozen=True)
class SeenBefore:
    """The earlier batch record a SKIPPED batch repeats (same bytes, spec §6)."""

    source: str
    status: str
    processed_at: dt.datetime | None
    run_id: str | None

    def text(self) -> str:
        when = (
            self.processed_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            if self.processed_at is not None
            else "earlier"
        )
        run = f", run {self.run_id}" if self.run_id else ""
        return f"seen before as {shown_name(self.source)} ({self.status} {when}{run})"


#: Age buckets of the work queue (days since received): (label, lowest age, highest age).
QUEUE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-7 days", 0, 7),
    ("8-30 days", 8, 30),
    ("31-90 days", 31, 90),
    ("over 90 days", 91, None),
)

QUEUE_SQL = """
    WITH ever_pended AS (
        -- Few cases are ever PENDED: only their decisions are ranked, not the log's.
        SELECT DISTINCT case_id FROM decision_events
        WHERE status = 'PENDED' AND decided_at <= $as_of),
    latest AS (
        SELECT e.case_id, e.status FROM decision_events e SEMI JOIN ever_pended USING (case_id)
        WHERE e.decided_at <= $as_of
        QUALIFY row_number() OVER (
            PARTITION BY e.case_id ORDER BY {latest_first}) = 1),
    waiting AS (
        SELECT ($as_of::DATE - c.received_date)::BIGINT AS age
        FROM latest l JOIN case_payloads c USING (case_id)
        WHERE l.status = 'PENDED')
    SELECT count(*) AS cases, max(age) AS oldest,
           count(*) FILTER (WHERE age <= 7) AS b0,
           count(*) FILTER (WHERE age BETWEEN 8 AND 30) AS b1,
           count(*) FILTER (WHERE age BETWEEN 31 AND 90) AS b2,
           count(*) FILTER (WHERE age > 90) AS b3
    FROM waiting
""".replace("{latest_first}", catalog.decision_order("e", latest_first=True))


@dataclass(frozen=True)
class QueueProfile:
    """The examiners' work queue at a moment: cases whose latest decision then was
    PENDED, by age in days (that day - received_date) in QUEUE_BUCKETS."""

    as_of: dt.datetime
    cases: int
    oldest_days: int | None
    buckets: tuple[tuple[str, int], ...]


def queue_profile(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> QueueProfile:
    """The PENDED queue as it stood at `as_of` (decisions recorded up to then; ages on
    its UTC date): one aggregate over the decisions and the received cases, so a report
    rebuilt later shows the queue of its run, not today's."""
    row = con.execute(QUEUE_SQL, {"as_of": as_of}).fetchone()
    cases, oldest, *counts = row if row is not None else (0, None, 0, 0, 0, 0)
    return QueueProfile(
        as_of=as_of,
        cases=int(cases),
        oldest_days=None if oldest is None else int(oldest),
        buckets=tuple(
            (label, int(n or 0)) for (label, _, _), n in zip(QUEUE_BUCKETS, counts, strict=True)
        ),
    )


@dataclass(frozen=True)
class RunFacts:
    """What the event log holds about one run, as aggregates: nothing here grows with
    the run's cases (the batches frame has one row per batch record, the provider and
    reason tables a bounded number of rows)."""

    run_id: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    #: One row per batch record of the run (columns of BATCH_COLUMNS).
    batches: pl.DataFrame
    #: Decided cases by status: APPROVED, DENIED and PENDED always, others as recorded.
    status_counts: dict[str, int]
    #: billed_cents of every decided case; allowed, deductible, coinsurance, paid (cents).
    totals: dict[str, int]
    #: The same sums over APPROVED cases only.
    approved_totals: dict[str, int]
    #: reason_code, cases: codes of DENIED cases, most frequent first (every code).
    denial_reasons: pl.DataFrame
    #: provider_id, approved, allowed_cents, paid_cents: the top providers by allowed.
    provider_amounts: pl.DataFrame
    #: column, problem, errors: each error of a rejected row is `column: problem`.
    rejection_errors: pl.DataFrame
    #: Rejected rows recorded for the run's processed batches.
    rejections_recorded: int
    deductible: DeductibleProgress
    reason_descriptions: dict[str, str]
    #: Every run of the log (see `runs`), for the drift baseline.
    all_runs: pl.DataFrame
    #: batch_id -> the record it repeats, for each SKIPPED batch of the run.
    seen_before: dict[str, SeenBefore] = field(default_factory=dict)
    #: The PENDED work queue when the run finished (spec §8); None: not read.
    queue: QueueProfile | None = None

    @property
    def cases_decided(self) -> int:
        return sum(self.status_counts.values())

    @property
    def processed_batch_ids(self) -> list[str]:
        processed = self.batches.filter(pl.col("status") == PROCESSED)
        return [str(b) for b in processed["batch_id"]]

    def processed_sum(self, column: str) -> int:
        """The sum of a count column (rows_in, rows_rejected, ...) over PROCESSED batches."""
        processed = self.batches.filter(pl.col("status") == PROCESSED)
        return int(processed[column].sum() or 0)

    @property
    def rulesets(self) -> list[str]:
        labels = self.batches.filter(pl.col("ruleset_name").is_not_null()).select(
            pl.format("{} v{}", "ruleset_name", "ruleset_version").alias("label")
        )
        return sorted(set(labels["label"].to_list()))


#: Providers kept in the facts (the report shows the first `top_n` of them).
PROVIDERS_KEPT = 50

BATCH_COLUMNS: dict[str, pl.DataType] = {
    "source": pl.String(),
    "batch_id": pl.String(),
    "status": pl.String(),
    "rows_in": pl.Int64(),
    "rows_decided": pl.Int64(),
    "rows_rejected": pl.Int64(),
    "reason": pl.String(),
    "processed_at": eventlog.UTC_TS,
    "source_kind": pl.String(),
    "ruleset_name": pl.String(),
    "ruleset_version": pl.String(),
    "approved": pl.Int64(),
    "denied": pl.Int64(),
    "pended": pl.Int64(),
    "decisions_recorded": pl.Int64(),
    "rejections_recorded": pl.Int64(),
    #: What the plan pays for the batch's decisions (cents; 0 unless PROCESSED).
    "paid_cents": pl.Int64(),
}

RECORDS_SQL = """
    SELECT source, batch_id, status, rows_in, rows_decided, rows_rejected, reason,
           processed_at, source_kind, ruleset_name, ruleset_version
    FROM batches WHERE run_id = $run
    ORDER BY processed_at, source, batch_id
"""


def load_run_facts(lake: Location, run_id: str | None = None) -> RunFacts:
    """The facts of run `run_id` (default: the latest run) from `lake`'s event log."""
    con = open_event_log(lake)
    try:
        chosen = resolve_run(con, run_id)
        return facts_of(con, lake, chosen)
    finally:
        con.close()


def load_or_empty(lake: Location, run_id: str) -> RunFacts:
    """The run's facts; empty facts when the run recorded no batch (nothing to read)."""
    con = open_event_log(lake)
    try:
        facts = facts_on(con, lake, run_id)
        if facts is not None:
            return facts
        # Nothing recorded: the queue as it stands now (it still waits for examiners).
        now = dt.datetime.now(dt.UTC)
        return replace(empty_facts(run_id), queue=queue_profile(con, now))
    finally:
        con.close()


def facts_on(con: duckdb.DuckDBPyConnection, lake: Location, run_id: str) -> RunFacts | None:
    """The run's facts, or None when the log holds no batch record of it."""
    if run_id not in runs(con)["run_id"]:
        return None
    return facts_of(con, lake, run_id)


def facts_of(con: duckdb.DuckDBPyConnection, lake: Location, run_id: str) -> RunFacts:
    """The run's aggregates, each one query over the run's own batch files."""
    all_runs = runs(con)
    mine = all_runs.filter(pl.col("run_id") == run_id)
    records = _frame(con, RECORDS_SQL, {"run": run_id})
    processed = [
        str(b) for b, status in records.select("batch_id", "status").rows() if status == PROCESSED
    ]
    define_run_views(con, lake, processed)
    by_status = _frame(con, STATUS_SQL)
    per_batch = by_status.group_by("batch_id").agg(
        *[
            pl.col("decisions").filter(pl.col("status") == s).sum().alias(s.lower())
            for s in DECISION_STATUSES
        ],
        pl.col("decisions").sum().alias("decisions_recorded"),
        pl.col("paid_cents").sum().alias("paid_cents"),
    )
    rejected = _frame(con, REJECTIONS_PER_BATCH_SQL)
    voided = _frame(con, VOIDED_ORIGINALS_SQL)
    batches = (
        records.join(per_batch, on="batch_id", how="left")
        .join(rejected, on="batch_id", how="left")
        .join(voided, on="batch_id", how="left")
        # Spec §9: a batch also records the VOIDED decisions of the earlier cases its
        # corrections void; those are not decisions of its rows (rows_decided).
        .with_columns(
            (pl.col("decisions_recorded") - pl.col("voided_originals").fill_null(0)).alias(
                "decisions_recorded"
            )
        )
        .with_columns(
            pl.when(pl.col("status") == PROCESSED)
            .then(pl.col(c).fill_null(0))
            .otherwise(0)
            .cast(pl.Int64)
            .alias(c)
            for c in (
                "approved",
                "denied",
                "pended",
                "decisions_recorded",
                "rejections_recorded",
                "paid_cents",
            )
        )
        .select(list(BATCH_COLUMNS))
    )
    statuses = dict.fromkeys(DECISION_STATUSES, 0)
    for status, n in by_status.group_by("status").agg(pl.col("decisions").sum()).rows():
        statuses[str(status)] = int(n)
    providers = _frame(con, PROVIDERS_SQL)
    names = ("billed_cents", *AMOUNT_COLUMNS)
    approved_rows = by_status.filter(pl.col("status") == APPROVED)
    totals = {c: int(by_status[c].sum() or 0) for c in AMOUNT_COLUMNS}
    approved = {c: int(approved_rows[c].sum() or 0) for c in AMOUNT_COLUMNS}
    totals["billed_cents"] = int(providers["billed_cents"].sum() or 0)
    approved["billed_cents"] = int(providers["approved_billed_cents"].sum() or 0)
    totals = {n: totals[n] for n in names}
    approved = {n: approved[n] for n in names}
    top = (
        providers.filter(pl.col("approved") > 0)
        .sort(["allowed_cents", "provider_id"], descending=[True, False], nulls_last=True)
        .head(PROVIDERS_KEPT)
        .select("provider_id", "approved", "allowed_cents", "paid_cents")
    )
    years, applied = _deductible(con)
    reasons = con.execute(REASONS_SQL, {"run": run_id}).fetchall()
    return RunFacts(
        run_id=run_id,
        started_at=mine["started_at"][0] if mine.height else None,
        finished_at=mine["finished_at"][0] if mine.height else None,
        batches=batches,
        status_counts=statuses,
        totals=totals,
        approved_totals=approved,
        denial_reasons=_frame(con, DENIAL_REASONS_SQL),
        provider_amounts=top,
        rejection_errors=_frame(con, REJECTION_ERRORS_SQL),
        rejections_recorded=int(batches["rejections_recorded"].sum() or 0),
        deductible=DeductibleProgress(
            buckets=years, member_years=sum(n for _, n in years), applied_cents=applied
        ),
        reason_descriptions={str(code): str(text) for code, text in reasons},
        all_runs=all_runs,
        seen_before={
            str(b): SeenBefore(str(src), str(st), at, None if r is None else str(r))
            for b, src, st, at, r in con.execute(SEEN_BEFORE_SQL, {"run": run_id}).fetchall()
        },
        queue=queue_profile(con, mine["finished_at"][0]) if mine.height else None,
    )


#: For each SKIPPED record of the run: the first record of the same bytes (the batch
#: it repeats), which an earlier run or an earlier file of this run made.
SEEN_BEFORE_SQL = """
    SELECT s.batch_id, arg_min(e.source, e.processed_at), arg_min(e.status, e.processed_at),
           min(e.processed_at), arg_min(e.run_id, e.processed_at)
    FROM batches s JOIN batches e ON e.batch_id = s.batch_id AND e.processed_at < s.processed_at
    WHERE s.run_id = $run AND s.status = 'SKIPPED'
    GROUP BY s.batch_id
"""


# The run's own files: its PROCESSED batches' folders, read directly (not the
# whole log through the catalog's globs). Columns are named, so columns the log
# gains later are ignored, and statuses are compared by name, so a new status
# counts under its own name.


def _table_file(lake: Location, batch_id: str, table: str) -> str:
    if isinstance(lake, RemoteLocation):
        return lake.full_url("events", "batches", batch_id, f"{table}.parquet")
    return str(eventlog.batches_dir(lake.resolve()) / batch_id / f"{table}.parquet")


def _read(lake: Location, batch_ids: list[str], table: str) -> str:
    files = ", ".join(f"'{_quote(_table_file(lake, b, table))}'" for b in batch_ids)
    return f"read_parquet([{files}], union_by_name = true)"


DECISION_COLUMNS = (
    "case_id, batch_id, status, reason_codes, allowed_cents, deductible_cents, "
    "coinsurance_cents, paid_cents, deductible_used_before_cents, annual_deductible_cents"
)
PAYLOAD_COLUMNS = "case_id, member_id, provider_id, service_date, billed_cents"
JOINED_COLUMNS = (
    "status, provider_id, member_id, service_date, billed_cents, allowed_cents, "
    "deductible_cents, paid_cents, deductible_used_before_cents, annual_deductible_cents"
)


def define_run_views(con: duckdb.DuckDBPyConnection, lake: Location, batch_ids: list[str]) -> None:
    """Temporary views of the run's decisions (with their payload columns) and rejections.

    `run_decisions` joins each batch's decisions to that batch's payloads by case_id,
    one batch at a time (a batch's valid case ids are unique), so no join key carries
    the 64-character batch id; `run_decision_events` is the decisions alone, for the
    aggregates that need no payload column (no join to pay for).
    """
    if not batch_ids:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW run_decisions AS SELECT * FROM ({EMPTY_DECISIONS})"
        )
        con.execute(
            "CREATE OR REPLACE TEMP VIEW run_decision_events AS SELECT * FROM run_decisions"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW run_joined AS SELECT {JOINED_COLUMNS} FROM run_decisions"
        )
        con.execute(
            "CREATE OR REPLACE TEMP VIEW run_rejections AS SELECT NULL::VARCHAR AS batch_id, "
            "NULL::VARCHAR[] AS errors WHERE false"
        )
        return
    parts = [
        f"SELECT {_prefixed('d', DECISION_COLUMNS)}, c.member_id, c.provider_id, "
        f"c.service_date, c.billed_cents "
        f"FROM (SELECT {DECISION_COLUMNS} FROM {_read(lake, [b], 'decisions')}) d "
        f"LEFT JOIN (SELECT {PAYLOAD_COLUMNS} FROM {_read(lake, [b], 'cases')}) c "
        "ON c.case_id = d.case_id"
        for b in batch_ids
    ]
    con.execute("CREATE OR REPLACE TEMP VIEW run_decisions AS " + " UNION ALL ".join(parts))
    con.execute(
        "CREATE OR REPLACE TEMP VIEW run_decision_events AS "
        f"SELECT {DECISION_COLUMNS} FROM {_read(lake, batch_ids, 'decisions')}"
    )
    # The join, paid once: the narrow columns that need a decision's payload, for the
    # provider and deductible aggregates and the gate's payload checks. DuckDB keeps it
    # within MEMORY_LIMIT and spills the rest to its temporary folder.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE run_joined AS SELECT {JOINED_COLUMNS} FROM run_decisions"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW run_rejections AS "
        f"SELECT batch_id, errors FROM {_read(lake, batch_ids, 'rejections')}"
    )


EMPTY_DECISIONS = (
    "SELECT NULL::VARCHAR AS case_id, NULL::VARCHAR AS batch_id, NULL::VARCHAR AS status, "
    "NULL::VARCHAR[] AS reason_codes, "
    + ", ".join(
        f"NULL::BIGINT AS {c}"
        for c in (*AMOUNT_COLUMNS, "deductible_used_before_cents", "annual_deductible_cents")
    )
    + ", NULL::VARCHAR AS member_id, NULL::VARCHAR AS provider_id, NULL::DATE AS service_date, "
    "NULL::BIGINT AS billed_cents WHERE false"
)


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _quote(text: str) -> str:
    return text.replace("'", "''")


#: Decisions per batch and status, with their amounts: one scan of the decisions alone
#: gives the batch table's counts, the status counts and the amount totals.
STATUS_SQL = (
    "SELECT batch_id, status, count(*)::BIGINT AS decisions, "
    + ", ".join(f"sum({c})::BIGINT AS {c}" for c in AMOUNT_COLUMNS)
    + " FROM run_decision_events GROUP BY batch_id, status"
)

#: Per batch, the VOIDED decisions of earlier cases (spec §9): decisions the batch
#: recorded for a case it did not receive (no payload of that case in the batch).
VOIDED_ORIGINALS_SQL = f"""
    SELECT batch_id, count(*)::BIGINT AS voided_originals
    FROM run_decisions WHERE status = '{VOIDED}' AND billed_cents IS NULL
    GROUP BY batch_id
"""

REJECTIONS_PER_BATCH_SQL = """
    SELECT batch_id, count(*)::BIGINT AS rejections_recorded FROM run_rejections GROUP BY batch_id
"""

DENIAL_REASONS_SQL = """
    SELECT code AS reason_code, count(*)::BIGINT AS cases
    FROM (SELECT unnest(reason_codes) AS code FROM run_decision_events WHERE status = 'DENIED')
    WHERE code IS NOT NULL
    GROUP BY code ORDER BY cases DESC, reason_code
"""

#: Per provider (one row each: thousands, not millions): APPROVED cases and amounts,
#: and the billed amounts, whose sums are the run's billed totals.
PROVIDERS_SQL = """
    SELECT provider_id,
           count(*) FILTER (WHERE status = 'APPROVED')::BIGINT AS approved,
           sum(allowed_cents) FILTER (WHERE status = 'APPROVED')::BIGINT AS allowed_cents,
           sum(paid_cents) FILTER (WHERE status = 'APPROVED')::BIGINT AS paid_cents,
           sum(billed_cents)::BIGINT AS billed_cents,
           sum(billed_cents) FILTER (WHERE status = 'APPROVED')::BIGINT AS approved_billed_cents
    FROM run_joined GROUP BY provider_id
"""

REJECTION_ERRORS_SQL = """
    SELECT split_part(error, ': ', 1) AS "column",
           CASE WHEN strpos(error, ': ') > 0 THEN error[strpos(error, ': ') + 2:] ELSE '' END
               AS problem,
           count(*)::BIGINT AS errors
    FROM (SELECT unnest(errors) AS error FROM run_rejections)
    WHERE error IS NOT NULL
    GROUP BY ALL ORDER BY errors DESC, "column", problem
"""

REASONS_SQL = """
    SELECT h.reason_code, min(h.rule_description) AS description
    FROM rule_hit_events h
    JOIN batches b ON b.batch_id = h.batch_id AND b.status = 'PROCESSED' AND b.run_id = $run
    GROUP BY h.reason_code
"""

#: Member-years by share of the annual deductible used after the run (lower bound, label).
DEDUCTIBLE_BUCKETS: tuple[tuple[float, str], ...] = (
    (0.0, "under 25 %"),
    (0.25, "25-50 %"),
    (0.5, "50-75 %"),
    (0.75, "75-99 %"),
    (1.0, "met (100 %)"),
)
NO_DEDUCTIBLE = "no deductible"

DEDUCTIBLE_SQL = """
    WITH years AS (
        SELECT member_id, year(service_date) AS service_year,
               max(deductible_used_before_cents + deductible_cents) AS used_after_cents,
               sum(deductible_cents) AS applied_cents,
               max(annual_deductible_cents) AS annual_deductible_cents
        FROM run_joined WHERE status = 'APPROVED'
        GROUP BY ALL),
    shares AS (
    SELECT CASE WHEN coalesce(annual_deductible_cents, 0) = 0 THEN -1
                ELSE coalesce(used_after_cents, 0) / annual_deductible_cents END AS share,
           applied_cents
    FROM years)
    SELECT CASE WHEN share < 0 THEN 0 WHEN share >= 1.0 THEN 5 WHEN share >= 0.75 THEN 4
                WHEN share >= 0.5 THEN 3 WHEN share >= 0.25 THEN 2 ELSE 1 END AS bucket,
           count(*) AS years, sum(applied_cents) AS applied
    FROM shares GROUP BY bucket
"""


def _deductible(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[str, int]], int]:
    """Member-years per bucket (no-deductible first) and the deductible applied, in cents.

    The member-years are bucketed in SQL (bucket 0: no deductible, then the buckets of
    DEDUCTIBLE_BUCKETS in order); only six rows leave DuckDB."""
    labels = [NO_DEDUCTIBLE, *[label for _, label in DEDUCTIBLE_BUCKETS]]
    counts = dict.fromkeys(labels, 0)
    applied = 0
    for bucket, years, cents in con.execute(DEDUCTIBLE_SQL).fetchall():
        applied += int(cents or 0)
        counts[labels[int(bucket)]] += int(years)
    return list(counts.items()), applied


def _frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object] | None = None
) -> pl.DataFrame:
    frame: pl.DataFrame = con.sql(sql, params=params or {}).pl()
    return frame


def empty_facts(run_id: str) -> RunFacts:
    """The facts of a run that recorded nothing (an empty inbox): it is not in the log."""
    return RunFacts(
        run_id=run_id,
        started_at=None,
        finished_at=None,
        batches=pl.DataFrame(schema=BATCH_COLUMNS),
        status_counts=dict.fromkeys(DECISION_STATUSES, 0),
        totals=dict.fromkeys(("billed_cents", *AMOUNT_COLUMNS), 0),
        approved_totals=dict.fromkeys(("billed_cents", *AMOUNT_COLUMNS), 0),
        denial_reasons=pl.DataFrame(schema={"reason_code": pl.String, "cases": pl.Int64}),
        provider_amounts=pl.DataFrame(
            schema={
                "provider_id": pl.String,
                "approved": pl.Int64,
                "allowed_cents": pl.Int64,
                "paid_cents": pl.Int64,
            }
        ),
        rejection_errors=pl.DataFrame(
            schema={"column": pl.String, "problem": pl.String, "errors": pl.Int64}
        ),
        rejections_recorded=0,
        deductible=DeductibleProgress(
            buckets=[(NO_DEDUCTIBLE, 0), *[(label, 0) for _, label in DEDUCTIBLE_BUCKETS]],
            member_years=0,
            applied_cents=0,
        ),
        reason_descriptions={},
        all_runs=pl.DataFrame(),
    )
