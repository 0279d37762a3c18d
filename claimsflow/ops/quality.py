"""The data-quality gate of a run: Great Expectations on the run's outputs.

Three expectation suites live in the package's GX file context (gx/):

- `claims_run_decisions`: the spec's invariants on every decision of the run
  (status, amounts, pricing arithmetic, reason codes);
- `claims_run_batches`: every batch record of the run adds up (rows in = decided +
  rejected) and matches the rows the log holds;
- `claims_run_drift`: the run's denial and rejection rates lie within a band around
  the trailing runs' rates (the band is a suite parameter, computed per run).

Every decision of the run is checked, none sampled, in one vectorised pass: DuckDB
evaluates each invariant (`DECISION_CHECKS`, a condition that is true on a row that
breaks it) over the run's decisions where they are, in the event log's Parquet
files (`decision_failures`). GX then validates compact tables: the failing rows
(the first FAILURES_LISTED of each invariant, each with its invariant's exact count
of failing rows), the run's batch records, its rates. The decisions suite holds one
expectation per invariant ("no row of the failures table names this invariant"), so
its Data Docs list the failing rows by case_id. A run's 10M decisions used to be
copied into SQLite for GX (~130 s and ~5 GB at 10M cases; docs/benchmarks.md has
the measurements behind this choice, including GX's SQL engine over DuckDB).

The checkpoint `claims_run_outputs` validates the three tables and builds Data Docs.
The compact tables are handed to GX as an SQLite file (GX's SQL engine: one
checkpoint validates three tables) in a temporary folder, whose path reaches the
context through the `${CLAIMS_GX_DB}` substitution variable. Validation results
and Data Docs go to the reports folder (`${CLAIMS_GX_RESULTS_DIR}`,
`${CLAIMS_GX_DATA_DOCS_DIR}`), so running a checkpoint never writes into gx/.

GX is imported lazily (it takes seconds): importing this module is cheap.
The suites are defined here in code and written into gx/ by
`python -m claimsflow.ops.quality build-gx`; a test checks gx/ matches this code.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import polars as pl

from claimsflow.ops.datadocs import localize_data_docs
from claimsflow.ops.runlog import AMOUNT_COLUMNS, RunFacts
from claimsflow.vocabulary import (
    APPROVED,
    BATCH_STATUSES,
    DECISION_STATUSES,
    DENIED,
    PENDED,
    VOIDED,
)

if TYPE_CHECKING:
    from great_expectations.data_context.data_context.file_data_context import FileDataContext
    from great_expectations.expectations.expectation import Expectation

#: The Great Expectations project, shipped inside the package (never written at run time).
GX_DIR = Path(__file__).resolve().parent / "gx"
DATASOURCE = "claims_run_outputs"
CHECKPOINT = "claims_run_outputs"
DATA_DOCS_SITE = "claims_site"
BATCH_DEFINITION = "whole_table"

#: Where a run's GX output goes, under the reports folder.
DATA_DOCS_FOLDER = "gx-data-docs"
RESULTS_FOLDER = "gx-validations"

#: Tables of the run handed to GX (= data assets), and their suites.
DECISIONS_TABLE, BATCHES_TABLE, RATES_TABLE = "run_decision_failures", "run_batches", "run_rates"
#: Failing rows listed per invariant (the count is exact whatever the number).
FAILURES_LISTED = 100
SUITE_OF_TABLE = {
    DECISIONS_TABLE: "claims_run_decisions",
    BATCHES_TABLE: "claims_run_batches",
    RATES_TABLE: "claims_run_drift",
}
#: Every table starts with record_id (case_id, batch_id or run_id): GX lists the
#: rows that break an expectation by it, and one checkpoint names one index column.
RECORD_ID = "record_id"
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    DECISIONS_TABLE: {
        RECORD_ID: "TEXT",
        "check": "TEXT",  # the invariant the row breaks
        "failing_rows": "INTEGER",  # how many rows of the run break it (all, not just listed)
        "batch_id": "TEXT",
        "status": "TEXT",
        "reason_codes": "TEXT",  # joined with ", " (SQLite has no list type)
        **dict.fromkeys(AMOUNT_COLUMNS, "INTEGER"),
        "billed_cents": "INTEGER",
    },
    BATCHES_TABLE: {
        RECORD_ID: "TEXT",
        "batch_id": "TEXT",
        "source": "TEXT",
        "status": "TEXT",
        "rows_in": "INTEGER",
        "rows_decided": "INTEGER",
        "rows_rejected": "INTEGER",
        "decisions_recorded": "INTEGER",
        "rejections_recorded": "INTEGER",
    },
    RATES_TABLE: {
        RECORD_ID: "TEXT",
        "run_id": "TEXT",
        "cases_decided": "INTEGER",
        "denial_rate": "REAL",
        "rows_in": "INTEGER",
        "rejection_rate": "REAL",
    },
}

DRIFT_METRICS = ("denial_rate", "rejection_rate")


# Drift: the band around the trailing runs.


@dataclass(frozen=True)
class DriftBand:
    """How far a run's rates may move from the trailing runs' before the gate fails.

    Rates are fractions (0.15 = 15 percentage points). A rate is judged only when
    at least `min_runs` earlier runs had cases (rows, for the rejection rate) and
    this run has at least `min_cases`: a handful of cases says nothing about drift.
    The baseline is pooled over the last `window` such runs (their denied cases over
    their decided cases), so a big run weighs more than a small one.
    """

    window: int = 7
    min_runs: int = 3
    min_cases: int = 20
    denial: float = 0.15
    rejection: float = 0.10

    #: Environment variables that override the defaults (see docs/operations.md).
    ENV: ClassVar[dict[str, str]] = {
        "window": "CLAIMS_DRIFT_WINDOW",
        "min_runs": "CLAIMS_DRIFT_MIN_RUNS",
        "min_cases": "CLAIMS_DRIFT_MIN_CASES",
        "denial": "CLAIMS_DRIFT_DENIAL_BAND",
        "rejection": "CLAIMS_DRIFT_REJECTION_BAND",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DriftBand:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, variable in cls.ENV.items():
            text = env.get(variable, "").strip()
            if not text:
                continue
            kind = int if name in ("window", "min_runs", "min_cases") else float
            try:
                values[name] = kind(text)
            except ValueError:
                raise ValueError(f"{variable} must be a number, not {text!r}") from None
        return cls(**values)


@dataclass(frozen=True)
class DriftCheck:
    """One rate of the run against its trailing baseline."""

    metric: str
    current: float | None
    baseline: float | None
    trailing_runs: int
    low: float
    high: float
    judged: bool
    note: str

    @property
    def label(self) -> str:
        return self.metric.replace("_", " ")


def drift_checks(runs: pl.DataFrame, run_id: str, band: DriftBand) -> list[DriftCheck]:
    """The denial and rejection rate checks of `run_id`, from `runlog.runs` (all runs)."""
    checks = []
    specs = (
        ("denial_rate", "cases_denied", "cases_decided", band.denial, "decided case(s)"),
        ("rejection_rate", "rows_rejected", "rows_in", band.rejection, "row(s) in"),
    )
    mine = runs.filter(pl.col("run_id") == run_id) if runs.height else runs
    for metric, part, whole, width, unit in specs:
        if mine.is_empty() or not mine[whole][0]:
            checks.append(_unjudged(metric, None, 0, "no rows in this run"))
            continue
        current = mine[part][0] / mine[whole][0]
        earlier = (
            runs.filter((pl.col("finished_at") < mine["started_at"][0]) & (pl.col(whole) > 0))
            .sort("finished_at")
            .tail(band.window)
        )
        if earlier.height < band.min_runs:
            note = f"baseline needs {band.min_runs} earlier run(s), found {earlier.height}"
            checks.append(_unjudged(metric, current, earlier.height, note))
            continue
        if mine[whole][0] < band.min_cases:
            note = f"only {mine[whole][0]} {unit}; judged from {band.min_cases}"
            checks.append(_unjudged(metric, current, earlier.height, note))
            continue
        baseline = int(earlier[part].sum()) / int(earlier[whole].sum())
        checks.append(
            DriftCheck(
                metric=metric,
                current=current,
                baseline=baseline,
                trailing_runs=earlier.height,
                low=max(0.0, baseline - width),
                high=min(1.0, baseline + width),
                judged=True,
                note=f"baseline over the last {earlier.height} run(s), band ±{width:.0%}",
            )
        )
    return checks


def _unjudged(metric: str, current: float | None, trailing: int, note: str) -> DriftCheck:
    # Bounds 0..1 cannot fail: the expectation still runs and is recorded, unjudged.
    return DriftCheck(metric, current, None, trailing, 0.0, 1.0, judged=False, note=note)


def drift_parameters(checks: Sequence[DriftCheck]) -> dict[str, float]:
    """The drift suite's parameters ($PARAMETER values) for these checks."""
    parameters: dict[str, float] = {}
    for check in checks:
        parameters[f"{check.metric}_min"] = check.low
        parameters[f"{check.metric}_max"] = check.high
    return parameters


# The expectation suites (the source of gx/expectations/*.json).


@dataclass(frozen=True)
class CheckSpec:
    """One expectation: its GX type and arguments, and our name for the invariant."""

    check: str
    description: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = "critical"


AMOUNTS_SUM = " + ".join(c for c in AMOUNT_COLUMNS if c != "allowed_cents")


@dataclass(frozen=True)
class RowCheck:
    """One invariant of every decision: `breaks` is an SQL condition over a decision
    (run_decisions' columns, `reason_code_count`, `repeated`) that is true when the
    row breaks it (NULL counts as not broken, as in GX's own SQL expectations).
    `payload`: it reads billed_cents, so it is counted over the joined columns
    (runlog's run_joined) rather than the decisions alone."""

    check: str
    description: str
    breaks: str
    payload: bool = False


def _statuses(*statuses: str) -> str:
    return ", ".join(f"'{s}'" for s in statuses)


DECISION_CHECKS: list[RowCheck] = [
    RowCheck("status-present", "Every decision has a status.", "status IS NULL"),
    RowCheck(
        "status-allowed",
        "Status is APPROVED, DENIED, PENDED or VOIDED (spec §4, §9).",
        f"status NOT IN ({_statuses(*DECISION_STATUSES)})",
    ),
    RowCheck(
        "case-decided-once",
        "A case has one decision (resubmissions are rejected, spec §3; a correction's "
        "VOIDED decision of its original is the one allowed second decision, §9).",
        "repeated",
    ),
    RowCheck(
        "amounts-present",
        "Every amount is recorded (integer cents, never missing).",
        " OR ".join(f"{c} IS NULL" for c in AMOUNT_COLUMNS),
    ),
    *[
        RowCheck(
            f"amount-not-negative:{column}", f"{column} is 0 or more (spec §5).", f"{column} < 0"
        )
        for column in AMOUNT_COLUMNS
    ],
    RowCheck(
        "pricing-adds-up",
        "APPROVED: paid + deductible + coinsurance = allowed (spec §5).",
        f"status = '{APPROVED}' AND {AMOUNTS_SUM} <> allowed_cents",
    ),
    RowCheck(
        "allowed-within-billed",
        "APPROVED: allowed is at most billed (spec §5: allowed = min(billed, fee)).",
        f"status = '{APPROVED}' AND billed_cents < allowed_cents",
        payload=True,
    ),
    RowCheck(
        "zero-amounts-unless-approved",
        "DENIED, PENDED and VOIDED cases carry 0 in every amount (spec §5, §9).",
        f"status <> '{APPROVED}' AND (" + " OR ".join(f"{c} <> 0" for c in AMOUNT_COLUMNS) + ")",
    ),
    RowCheck(
        "reason-codes-listed",
        "Reason codes are a list (empty or not) on every decision.",
        "reason_codes IS NULL",
    ),
    RowCheck(
        "reasons-when-denied-or-pended",
        "DENIED and PENDED cases have at least one reason code (spec §4).",
        f"status IN ({_statuses(DENIED, PENDED)}) AND reason_code_count < 1",
    ),
    RowCheck(
        "no-reasons-when-approved",
        "APPROVED and VOIDED cases have an empty list of reason codes (spec §7).",
        f"status IN ({_statuses(APPROVED, VOIDED)}) AND reason_code_count <> 0",
    ),
    RowCheck(
        "case-payload-recorded",
        "Every decision has its received case (billed amount) in the log (a VOIDED "
        "original's case was received by an earlier batch).",
        f"billed_cents IS NULL AND status IS DISTINCT FROM '{VOIDED}'",
        payload=True,
    ),
]

SUITES: dict[str, list[CheckSpec]] = {
    "claims_run_decisions": [
        CheckSpec(
            check.check,
            check.description,
            "unexpected_rows_expectation",
            {"unexpected_rows_query": f"SELECT * FROM {{batch}} WHERE \"check\" = '{check.check}'"},
        )
        for check in DECISION_CHECKS
    ],
    "claims_run_batches": [
        CheckSpec(
            "batch-status-allowed",
            "Batch status is PROCESSED, SKIPPED or REJECTED (spec §7).",
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": list(BATCH_STATUSES)},
        ),
        CheckSpec(
            "rows-add-up",
            "Nothing is lost: rows in = rows decided + rows rejected, per batch (spec §3).",
            "unexpected_rows_expectation",
            {
                "unexpected_rows_query": "SELECT * FROM {batch} WHERE rows_in IS NULL "
                "OR rows_decided IS NULL OR rows_rejected IS NULL "
                "OR rows_in <> rows_decided + rows_rejected"
            },
        ),
        CheckSpec(
            "counts-match-log",
            "A batch's decided and rejected counts match the rows recorded in the log.",
            "unexpected_rows_expectation",
            {
                "unexpected_rows_query": "SELECT * FROM {batch} WHERE status = 'PROCESSED' "
                "AND (rows_decided <> decisions_recorded OR rows_rejected <> rejections_recorded)"
            },
        ),
    ],
    "claims_run_drift": [
        CheckSpec(
            f"drift:{metric}",
            f"The run's {metric.replace('_', ' ')} lies within the band around the "
            "trailing runs' rate (claimsflow.ops.quality.DriftBand).",
            "expect_column_values_to_be_between",
            {
                "column": metric,
                "min_value": {"$PARAMETER": f"{metric}_min"},
                "max_value": {"$PARAMETER": f"{metric}_max"},
            },
            severity="warning",
        )
        for metric in DRIFT_METRICS
    ],
}
#: Checks in the order of SUITES (GX returns them in its own order).
CHECK_ORDER = {spec.check: n for n, spec in enumerate(s for v in SUITES.values() for s in v)}
#: COMPLETE lists the rows that broke an expectation (GX caps lists at 200 rows), by id.
RESULT_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": [RECORD_ID]}


# Results.


class GateState(enum.Enum):
    """Whether the gate ran for a run, and if not, why."""

    RAN = "ran"
    NOT_REQUESTED = "not requested"  # --no-checks
    NOTHING_TO_CHECK = "nothing to check"  # no batch was processed
    FAILED_TO_RUN = "could not run"


@dataclass(frozen=True)
class CheckOutcome:
    suite: str
    check: str
    description: str
    severity: str
    success: bool
    #: How many rows broke it (None when GX could not evaluate it).
    unexpected_count: int | None
    #: Ids of some of the rows that broke it (case_id, batch_id or run_id).
    examples: list[str]
    problem: str | None = None

    def line(self) -> str:
        if self.problem:
            return f"{self.check}: could not be evaluated: {self.problem}"
        rows = f"{self.unexpected_count} row(s)" if self.unexpected_count is not None else ""
        ids = f", e.g. {', '.join(self.examples[:5])}" if self.examples else ""
        return f"{self.check}: {self.description} ({rows}{ids})"


@dataclass(frozen=True)
class QualityResult:
    run_id: str
    outcomes: list[CheckOutcome]
    drift: list[DriftCheck]
    data_docs: Path | None
    #: Decisions the invariants were checked on (every decision of the run).
    rows_checked: int | None = None

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if not o.success]

    def warnings(self) -> list[str]:
        """One line per failed expectation, drift stated with its numbers."""
        lines = []
        drift = {f"drift:{c.metric}": c for c in self.drift}
        for outcome in self.failures:
            check = drift.get(outcome.check)
            if check is not None and check.current is not None and check.baseline is not None:
                lines.append(
                    f"data-quality drift: {check.label} {check.current:.1%} is outside "
                    f"{check.low:.1%}-{check.high:.1%} (trailing {check.trailing_runs} run(s): "
                    f"{check.baseline:.1%})"
                )
            else:
                lines.append(f"data-quality check failed: {outcome.line()}")
        return lines


# The run's tables.


@dataclass(frozen=True)
class RunTables:
    """The tables GX validates, one frame per data asset (columns of TABLE_COLUMNS)."""

    decisions: pl.DataFrame
    batches: pl.DataFrame
    rates: pl.DataFrame

    def by_name(self) -> dict[str, pl.DataFrame]:
        return {
            DECISIONS_TABLE: self.decisions,
            BATCHES_TABLE: self.batches,
            RATES_TABLE: self.rates,
        }


@dataclass(frozen=True)
class DecisionFailures:
    """The outcome of the one pass over every decision of a run."""

    #: Decisions checked: every decision event of the run's processed batches.
    rows_checked: int
    #: Invariant -> rows of the run that break it (exact).
    counts: dict[str, int]
    #: The first FAILURES_LISTED failing rows of each invariant (the GX table).
    table: pl.DataFrame


def _checked(source: str) -> str:
    """`source` (a view of the run's decisions) with what the invariants need beside
    its columns: the number of reason codes, and whether the case is repeated."""
    return f"""
    WITH repeats AS (
        SELECT case_id FROM {source}
        WHERE case_id IS NOT NULL AND status IS DISTINCT FROM '{VOIDED}'
        GROUP BY case_id HAVING count(*) > 1)
    SELECT r.*, len(r.reason_codes) AS reason_code_count,
           (x.case_id IS NOT NULL AND r.status IS DISTINCT FROM '{VOIDED}') AS repeated
    FROM {source} r LEFT JOIN repeats x ON x.case_id = r.case_id
"""


def decision_failures(
    con: duckdb.DuckDBPyConnection, listed: int = FAILURES_LISTED
) -> DecisionFailures:
    """Every invariant of DECISION_CHECKS over every decision of the run: the views
    of runlog.define_run_views (`run_decision_events`, the decisions alone;
    `run_joined`, the columns that need a payload; `run_decisions`, both).

    Two scans count the rows breaking each invariant (the decisions alone, then the
    joined columns); only the invariants some row breaks are read again, for their
    first `listed` rows (in the log's order).
    """
    own = [c for c in DECISION_CHECKS if not c.payload]
    joined = [c for c in DECISION_CHECKS if c.payload]
    counts: dict[str, int] = {}
    rows_checked = 0
    for checks, source in ((own, _checked("run_decision_events")), (joined, "run_joined")):
        counts_sql = (
            "SELECT count(*), "
            + ", ".join(f"count(*) FILTER (WHERE coalesce(({c.breaks}), false))" for c in checks)
            + f" FROM ({source})"
        )
        [row] = con.execute(counts_sql).fetchall()  # one row: no GROUP BY
        rows_checked = int(row[0])
        counts |= {c.check: int(n) for c, n in zip(checks, row[1:], strict=True)}
    counts = {c.check: counts[c.check] for c in DECISION_CHECKS}
    checked = _checked("run_decisions")
    columns = list(TABLE_COLUMNS[DECISIONS_TABLE])
    listing = [
        f"""(SELECT case_id AS {RECORD_ID}, '{c.check}' AS "check",
                    {counts[c.check]}::BIGINT AS failing_rows, batch_id, case_id, status,
                    array_to_string(reason_codes, ', ') AS reason_codes,
                    {", ".join(AMOUNT_COLUMNS)}, billed_cents
             FROM ({checked}) WHERE coalesce(({c.breaks}), false) LIMIT {int(listed)})"""
        for c in DECISION_CHECKS
        if counts[c.check]
    ]
    if listing:
        table: pl.DataFrame = con.sql(" UNION ALL ".join(listing)).pl()
        table = table.select(columns).cast(_polars_schema(TABLE_COLUMNS[DECISIONS_TABLE]))  # type: ignore[arg-type]
    else:
        table = pl.DataFrame(schema=_polars_schema(TABLE_COLUMNS[DECISIONS_TABLE]))
    return DecisionFailures(rows_checked, counts, table)


def run_tables(facts: RunFacts, failures: DecisionFailures) -> RunTables:
    """The run's tables: its failing decisions, its batch records, its rates."""
    return RunTables(
        decisions=failures.table,
        batches=facts.batches.with_columns(pl.col("batch_id").alias(RECORD_ID)).select(
            list(TABLE_COLUMNS[BATCHES_TABLE])
        ),
        rates=rates_table(facts),
    )


def rates_table(facts: RunFacts) -> pl.DataFrame:
    """One row: the run's denial rate (of decided cases) and rejection rate (of rows in)."""
    rows_in, rows_rejected = facts.processed_sum("rows_in"), facts.processed_sum("rows_rejected")
    decided = facts.cases_decided
    denied = facts.status_counts.get(DENIED, 0)
    return pl.DataFrame(
        {
            RECORD_ID: [facts.run_id],
            "run_id": [facts.run_id],
            "cases_decided": [decided],
            "denial_rate": [denied / decided if decided else None],
            "rows_in": [rows_in],
            "rejection_rate": [rows_rejected / rows_in if rows_in else None],
        },
        schema=_polars_schema(TABLE_COLUMNS[RATES_TABLE]),
    )


def write_sqlite(path: Path, tables: Mapping[str, pl.DataFrame]) -> Path:
    """The tables as an SQLite file (the GX data source of the checkpoint)."""
    with sqlite3.connect(path) as con:
        for name, columns in TABLE_COLUMNS.items():
            frame = tables[name].select(list(columns))
            ddl = ", ".join(f'"{c}" {t}' for c, t in columns.items())
            con.execute(f'CREATE TABLE "{name}" ({ddl})')
            marks = ", ".join("?" for _ in columns)
            con.executemany(f'INSERT INTO "{name}" VALUES ({marks})', frame.rows())
    return path


# Running the checkpoint.


def _gx() -> Any:
    """great_expectations, imported with its telemetry off (and no network use)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _context(gx_dir: Path, environment: Mapping[str, str]) -> FileDataContext:
    gx = _gx()
    context = gx.get_context(
        mode="file", context_root_dir=str(gx_dir), runtime_environment=dict(environment)
    )
    return context  # type: ignore[no-any-return]


def run_checkpoint(
    tables: RunTables,
    parameters: Mapping[str, float],
    reports_dir: Path,
    *,
    run_name: str,
    gx_dir: Path = GX_DIR,
    now: dt.datetime | None = None,
) -> tuple[list[CheckOutcome], Path]:
    """Validate the tables with the checkpoint; Data Docs under reports_dir.

    Returns every expectation's outcome and the Data Docs index page.
    """
    _gx()  # its environment first: nothing of GX is imported before telemetry is off
    from great_expectations.core.run_identifier import RunIdentifier

    docs = (reports_dir / DATA_DOCS_FOLDER).resolve()
    results = (reports_dir / RESULTS_FOLDER).resolve()
    with _run_database(tables) as database:
        environment = {
            "CLAIMS_GX_DB": str(database),
            "CLAIMS_GX_RESULTS_DIR": str(results),
            "CLAIMS_GX_DATA_DOCS_DIR": str(docs),
        }
        context = _context(gx_dir, environment)
        checkpoint = context.checkpoints.get(CHECKPOINT)
        run_id = RunIdentifier(run_name=run_name, run_time=now or dt.datetime.now(dt.UTC))
        result = checkpoint.run(expectation_parameters=dict(parameters), run_id=run_id)
    scrub_data_docs(docs)
    localize_data_docs(docs)  # CSS, JS and fonts from the package, not from CDNs
    outcomes = [
        _outcome(suite_result.suite_name, item)
        for suite_result in result.run_results.values()
        for item in suite_result.results
    ]
    return sorted(outcomes, key=lambda o: CHECK_ORDER.get(o.check, len(CHECK_ORDER))), (
        docs / "index.html"
    )


#: GX's page template loads its logo from GX's web assets with the data context id
#: in the query string: a beacon each time someone opens the Data Docs.
_LOGO_BEACON = re.compile(r"(logo-long\.png)\?d=[^\"']*")


def scrub_data_docs(docs: Path) -> None:
    """Drop the data context id from the Data Docs pages (telemetry stays off)."""
    for page in docs.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "dataContextId=" in text:
            page.write_text(_LOGO_BEACON.sub(r"\1", text), encoding="utf-8")


@contextmanager
def _run_database(tables: RunTables) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="claims-gx-"))
    try:
        yield write_sqlite(folder / "run.sqlite", tables.by_name())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _outcome(suite: str, item: Any) -> CheckOutcome:
    config = item.expectation_config
    meta = config.meta or {}
    result = item.result or {}
    problem = _problem(item.exception_info)
    count = result.get("unexpected_count")
    if config.type == "unexpected_rows_expectation":
        # observed_value is the number of rows the query returned: for the decisions
        # suite, the listed rows (at most FAILURES_LISTED), each of which carries its
        # invariant's exact count of failing rows.
        count = result.get("observed_value")
        rows = (result.get("details") or {}).get("unexpected_rows") or []
        totals = [r["failing_rows"] for r in rows if isinstance(r, dict) and "failing_rows" in r]
        if totals:
            count = totals[0]
    else:
        rows = result.get("unexpected_index_list") or []
    examples = [str(row[RECORD_ID]) for row in rows if isinstance(row, dict) and RECORD_ID in row]
    return CheckOutcome(
        suite=suite,
        check=str(meta.get("check", config.type)),
        description=str(config.description or config.type),
        severity=str(getattr(config.severity, "value", config.severity)),
        success=bool(item.success),
        unexpected_count=int(count) if isinstance(count, int | float) else None,
        examples=examples,
        problem=problem,
    )


def _problem(info: Any) -> str | None:
    """The first error message of an expectation GX could not evaluate, if any.

    GX gives either one ExceptionInfo (a dict-like with raised_exception) or, when
    a metric failed, a dict of them keyed by metric.
    """
    if not info:
        return None
    single = not isinstance(info, dict) or "raised_exception" in info
    for candidate in [info] if single else list(info.values()):
        if _field(candidate, "raised_exception"):
            message = str(_field(candidate, "exception_message") or "error").strip()
            return message.splitlines()[0] if message else "error"
    return None


def _field(info: Any, key: str) -> Any:
    return info.get(key) if isinstance(info, dict) else getattr(info, key, None)


def run_quality_checks(
    con: duckdb.DuckDBPyConnection,
    facts: RunFacts,
    reports_dir: Path,
    band: DriftBand | None = None,
    *,
    gx_dir: Path = GX_DIR,
    now: dt.datetime | None = None,
) -> QualityResult:
    """The gate of one run: invariants over every decision (on `con`, whose
    `run_decisions` view holds the run's decisions) and drift, validated by the GX
    checkpoint."""
    band = band or DriftBand.from_env()
    drift = drift_checks(facts.all_runs, facts.run_id, band)
    failures = decision_failures(con)
    return validate(facts, failures, drift, reports_dir, gx_dir=gx_dir, now=now)


def validate(
    facts: RunFacts,
    failures: DecisionFailures,
    drift: list[DriftCheck],
    reports_dir: Path,
    *,
    gx_dir: Path = GX_DIR,
    now: dt.datetime | None = None,
) -> QualityResult:
    """The GX checkpoint over the compact tables of a run whose decisions were checked."""
    outcomes, docs = run_checkpoint(
        run_tables(facts, failures),
        drift_parameters(drift),
        reports_dir,
        run_name=facts.run_id,
        gx_dir=gx_dir,
        now=now,
    )
    return QualityResult(facts.run_id, outcomes, drift, docs, failures.rows_checked)


# Writing gx/ from the definitions above.

GX_YML = """\
# Great Expectations (GX Core 1.x) file context of the claims pipeline.
# Written by `python -m claimsflow.ops.quality build-gx` from claimsflow/ops/quality.py:
# change the suites there, rebuild, and commit gx/.
#
# Nothing under gx/ is written at run time: the run's tables, validation results
# and Data Docs paths come in as substitution variables from the runtime
# environment that claimsflow.ops.quality passes to the context (no config file).
config_version: 4
analytics_enabled: false
config_variables_file_path:
plugins_directory:
progress_bars:
  globally: false
  metric_calculations: false
stores:
  expectations_store:
    class_name: ExpectationsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: expectations/
  validation_results_store:
    class_name: ValidationResultsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${CLAIMS_GX_RESULTS_DIR}
  checkpoint_store:
    class_name: CheckpointStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: checkpoints/
  validation_definition_store:
    class_name: ValidationDefinitionStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: validation_definitions/
expectations_store_name: expectations_store
validation_results_store_name: validation_results_store
checkpoint_store_name: checkpoint_store
data_docs_sites:
  claims_site:
    class_name: SiteBuilder
    show_how_to_buttons: false
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${CLAIMS_GX_DATA_DOCS_DIR}
    site_index_builder:
      class_name: DefaultSiteIndexBuilder
"""


def expectation_of(spec: CheckSpec) -> Expectation:
    """The GX expectation object of a check (its meta names the check)."""
    _gx()  # telemetry off before GX is imported
    from great_expectations.expectations.metadata_types import FailureSeverity
    from great_expectations.expectations.registry import get_expectation_impl

    cls = get_expectation_impl(spec.expectation)
    kwargs = dict(spec.kwargs)
    if "row_condition" in kwargs:
        from great_expectations.expectations.row_conditions import deserialize_row_condition

        kwargs["row_condition"] = deserialize_row_condition(kwargs["row_condition"])
    expectation: Expectation = cls(
        **kwargs,
        meta={"check": spec.check},
        description=spec.description,
        severity=FailureSeverity(spec.severity),
    )
    return expectation


def build_gx_project(gx_dir: Path = GX_DIR) -> None:
    """(Re)write the GX file context: datasource, suites, validation definitions,
    checkpoint. Run by hand after changing SUITES; the result is committed."""
    gx = _gx()
    shutil.rmtree(gx_dir, ignore_errors=True)
    gx_dir.mkdir(parents=True)
    (gx_dir / "great_expectations.yml").write_text(GX_YML, encoding="utf-8")
    (gx_dir / ".gitignore").write_text("uncommitted/\n", encoding="utf-8")
    scratch = Path(tempfile.mkdtemp(prefix="claims-gx-build-"))
    try:
        empty = RunTables(
            *[pl.DataFrame(schema=_polars_schema(TABLE_COLUMNS[t])) for t in SUITE_OF_TABLE]
        )
        database = write_sqlite(scratch / "run.sqlite", empty.by_name())
        context = _context(
            gx_dir,
            {
                "CLAIMS_GX_DB": str(database),
                "CLAIMS_GX_RESULTS_DIR": str(scratch / "results"),
                "CLAIMS_GX_DATA_DOCS_DIR": str(scratch / "docs"),
            },
        )
        source = context.data_sources.add_sqlite(
            DATASOURCE, connection_string="sqlite:///${CLAIMS_GX_DB}"
        )
        definitions = []
        for table, suite_name in SUITE_OF_TABLE.items():
            asset = source.add_table_asset(table, table_name=table)
            batch = asset.add_batch_definition_whole_table(BATCH_DEFINITION)
            suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
            for spec in SUITES[suite_name]:
                suite.add_expectation(expectation_of(spec))
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
                )
            )
        context.checkpoints.add(
            gx.Checkpoint(
                name=CHECKPOINT,
                validation_definitions=definitions,
                actions=[
                    gx.checkpoint.UpdateDataDocsAction(
                        name="update_data_docs", site_names=[DATA_DOCS_SITE]
                    )
                ],
                result_format=RESULT_FORMAT,
            )
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _polars_schema(columns: Mapping[str, str]) -> dict[str, pl.DataType]:
    kinds: dict[str, pl.DataType] = {
        "TEXT": pl.String(),
        "INTEGER": pl.Int64(),
        "REAL": pl.Float64(),
    }
    return {c: kinds[t] for c, t in columns.items()}


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["build-gx"]:
        print("usage: python -m claimsflow.ops.quality build-gx", file=sys.stderr)
        return 2
    build_gx_project()
    print(f"wrote {GX_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
