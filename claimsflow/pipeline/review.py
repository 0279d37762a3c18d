"""An examiner's review file (spec §8) from its bytes to recorded events, as a batch:

    identity    the SHA-256 of its bytes (spec §6): the same bytes again are SKIPPED
    read        CSV with the review columns, else a REJECTED batch kept in quarantine
    validate    cells, then each row's case by its latest decision (core/review.py)
    decide      DENY rows denied, APPROVE rows priced on the log's member-year balances
    record      one batch (kind REVIEW) published in one step: the decisions of the
                applied rows, the rejected rows, the batch record

The caller holds the lake's writer lock around `run_review` (reviews and runs never
interleave, spec §8), as for `run_batches`; a review killed at any point leaves the
lake as if it never started, and running it again records it once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from claimsflow.core.reference import Reference
from claimsflow.core.review import (
    ERRORS,
    REVIEWED_CASE_SCHEMA,
    RULESET_COLUMNS,
    ReviewDecision,
    ReviewHistory,
    ValidatedReview,
    decide_review,
    reviewed_case_ids,
    validate_review,
)
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.faults import crash_point
from claimsflow.ingest.reading import UnreadableBatch, read_batch_bytes
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.history import LakeHistory
from claimsflow.lake.storage import Location, RemoteLocation, write_object
from claimsflow.pipeline.batch import BatchOutcome, batch_id_of_bytes, batch_record
from claimsflow.pipeline.run import open_lake
from claimsflow.vocabulary import ADJUDICATION, PROCESSED, REJECTED, REVIEW, ROW_NUMBER, SKIPPED
from schemas.review import REQUIRED_REVIEW_COLUMNS, REVIEW_COLUMNS

#: Where the `review-pended` form writes the one-row review file it records (in the lake).
REVIEWS_FOLDER = "reviews"
#: How a row of a review file ended, beside APPROVED and DENIED.
ROW_REJECTED = REJECTED
#: Each row of a review file and how it ended (`ReviewOutcome.rows`).
ROWS_SCHEMA: dict[str, pl.DataType] = {
    ROW_NUMBER: pl.Int64(),
    "case_id": pl.String(),
    "outcome": pl.String(),
    "examiner": pl.String(),
    "allowed_cents": pl.Int64(),
    "deductible_cents": pl.Int64(),
    "coinsurance_cents": pl.Int64(),
    "paid_cents": pl.Int64(),
    ERRORS: pl.List(pl.String()),
}


@dataclass(frozen=True)
class ReviewContext:
    """What a review is recorded with: the lake, the reference data of the review (the
    pricing of APPROVE rows), the run's id, and its clock."""

    lake: Location
    reference: Reference
    run_id: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class ReviewOutcome:
    """What happened to one review file: its batch outcome, and each row's end."""

    batch: BatchOutcome
    #: row_number, case_id, outcome (APPROVED, DENIED or REJECTED), examiner, amounts
    #: (cents; null for a rejected row) and errors (empty unless rejected), file order.
    rows: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ROWS_SCHEMA))

    @property
    def exit_code(self) -> int:
        """Spec §8, as for `run`: 0 every row applied or the file SKIPPED, 1 a row or
        the file rejected."""
        return 1 if self.batch.status == REJECTED or self.batch.rows_rejected else 0

    def table(self) -> list[dict[str, Any]]:
        """The rows as plain records (amounts as cents), for the CLI and the artifacts."""
        return self.rows.to_dicts()


def run_review(
    run: ReviewContext,
    source: Location,
    *,
    process: Callable[[Location, ReviewContext], ReviewOutcome] | None = None,
    prepare: Callable[[Location], object] = open_lake,
    refresh: Callable[[Location], object] = catalog.refresh_catalog,
) -> ReviewOutcome:
    """Prepare the lake, record one review file, rebuild the catalog (the caller holds
    the writer lock). The flow passes its Prefect tasks as the three steps."""
    prepare(run.lake)
    outcome = (process or process_review)(source, run)
    # A review file is a batch folder too: fold it into the history reads' segments
    # (claimsflow/lake/segments.py; cheap when nothing is due).
    eventlog.compact(run.lake)
    refresh(run.lake)
    return outcome


def process_review(source: Location, run: ReviewContext) -> ReviewOutcome:
    """Identify, read, validate, decide and record one review file."""
    started = time.perf_counter()
    data = source.read_bytes()
    batch_id = batch_id_of_bytes(data)
    if eventlog.batch_recorded(run.lake, batch_id):
        return _skip(run, batch_id, source.name, started)
    try:
        raw = read_batch_bytes(data, "csv", required=REQUIRED_REVIEW_COLUMNS)
        crash_point("after-read")
    except UnreadableBatch as exc:
        return _reject(run, batch_id, source.name, data, str(exc), started)
    history = LakeHistory(run.lake)
    validated = validate_review(raw, history.decided_among(reviewed_case_ids(raw)))
    decision = decide_review(
        validated, raw.height, run.reference, review_history(run.lake, validated)
    )
    crash_point("after-validation")
    now = run.clock()
    tables = review_events(
        decision, batch_id=batch_id, source=source.name, run_id=run.run_id, now=now
    )
    try:
        eventlog.record_batch(run.lake, batch_id, tables)
    except eventlog.BatchAlreadyRecorded:
        return _skip(run, batch_id, source.name, started)
    crash_point("after-publish")
    counts = dict(decision.decisions["status"].value_counts().iter_rows())
    outcome = BatchOutcome(
        batch_id,
        source.name,
        PROCESSED,
        rows_in=decision.rows_in,
        rows_decided=decision.rows_decided,
        rows_rejected=decision.rejections.height,
        seconds=time.perf_counter() - started,
        by_status={str(k): int(v) for k, v in counts.items()},
    )
    return ReviewOutcome(outcome, review_rows(raw, decision))


def review_history(lake: Location, validated: ValidatedReview) -> ReviewHistory:
    """The reviewed cases as received, with their adjudication's rule set, and the
    member-year balances of the APPROVE rows, from the event log."""
    if validated.rows.is_empty() or not eventlog.has_event_log(lake):
        return ReviewHistory()
    wanted = validated.rows.select("case_id").lazy()
    log = eventlog.HistorySnapshot(lake)
    payloads = (
        log.scan("cases").select(list(CASE_PAYLOAD_COLUMNS)).join(wanted, on="case_id", how="semi")
    )
    source = pl.col("decision_source")
    adjudicated = (
        log.scan("decisions")
        .filter(source.is_null() | (source == ADJUDICATION))
        .select("case_id", *RULESET_COLUMNS)
        .join(wanted, on="case_id", how="semi")
    )
    cases = (
        payloads.join(adjudicated, on="case_id", how="left")
        .select(list(REVIEWED_CASE_SCHEMA))
        .collect()
    )
    approving = cases.join(validated.approvals.select("case_id"), on="case_id", how="semi")
    accumulated = LakeHistory(lake).accumulated(approving) if approving.height else None
    return ReviewHistory(cases=cases, accumulated=accumulated)


def review_events(
    decision: ReviewDecision, *, batch_id: str, source: str, run_id: str, now: dt.datetime
) -> dict[str, pl.DataFrame]:
    """The event-log rows one review file appends: its batch record (kind REVIEW), the
    decisions of its applied rows, its rejected rows. No case is received."""
    stamp = pl.lit(now, dtype=eventlog.UTC_TS)
    ident = pl.lit(batch_id).alias("batch_id")
    record = batch_record(
        batch_id,
        source,
        PROCESSED,
        run_id,
        now,
        kind=REVIEW,
        rows_in=decision.rows_in,
        rows_decided=decision.rows_decided,
        rows_rejected=decision.rejections.height,
    )
    return {
        "batch": record,
        "decisions": decision.decisions.with_columns(
            ident, stamp.alias("decided_at"), pl.lit(run_id).alias("run_id")
        ),
        "rejections": decision.rejections.with_columns(ident, stamp.alias("rejected_at")),
    }


def review_rows(raw: pl.DataFrame, decision: ReviewDecision) -> pl.DataFrame:
    """Each row of the file and how it ended (ROWS_SCHEMA), in file order."""
    examiners = raw.select(ROW_NUMBER, pl.col("examiner"))
    applied = decision.decisions.select(
        ROW_NUMBER,
        "case_id",
        pl.col("status").alias("outcome"),
        "allowed_cents",
        "deductible_cents",
        "coinsurance_cents",
        "paid_cents",
        pl.lit([], dtype=pl.List(pl.String)).alias(ERRORS),
    )
    rejected = decision.rejections.select(
        ROW_NUMBER, "case_id", pl.lit(ROW_REJECTED).alias("outcome"), ERRORS
    )
    return (
        pl.concat([applied, rejected], how="diagonal_relaxed")
        .join(examiners, on=ROW_NUMBER, how="left")
        .sort(ROW_NUMBER)
        .select(pl.col(name).cast(dtype) for name, dtype in ROWS_SCHEMA.items())
    )


def write_review_form(lake: Location, rows: list[dict[str, str]]) -> Location:
    """Spec §8 for the `review-pended` form: the examiner's row(s) as a review file of
    their own in the lake's `reviews/` area, named by its bytes, so that a form has
    bytes and an identity like any review file (the same form again is the same file,
    SKIPPED when recorded again). Written whole, never overwritten."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REVIEW_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    name = f"form-{batch_id_of_bytes(data)[:16]}.csv"
    if isinstance(lake, RemoteLocation):
        target = lake / REVIEWS_FOLDER / name
        write_object(lake.fs, target.root, data, exclusive=True)
        return target
    folder = lake / REVIEWS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        aside = folder / f".{name}.{uuid.uuid4().hex}"
        aside.write_bytes(data)
        aside.replace(path)
    return path


def _reject(
    run: ReviewContext, batch_id: str, name: str, data: bytes, reason: str, started: float
) -> ReviewOutcome:
    """Spec §8: a file that is not a CSV with the review columns is a REJECTED batch,
    kept verbatim in quarantine with the reason."""
    eventlog.quarantine(run.lake, batch_id, name, data, reason)
    crash_point("after-quarantine")
    record = batch_record(
        batch_id, name, REJECTED, run.run_id, run.clock(), kind=REVIEW, reason=reason
    )
    try:
        eventlog.record_batch(run.lake, batch_id, {"batch": record})
    except eventlog.BatchAlreadyRecorded:
        return _skip(run, batch_id, name, started)
    return ReviewOutcome(
        BatchOutcome(batch_id, name, REJECTED, reason=reason, seconds=time.perf_counter() - started)
    )


def _skip(run: ReviewContext, batch_id: str, name: str, started: float) -> ReviewOutcome:
    eventlog.record_skip(
        run.lake,
        run.run_id,
        batch_record(batch_id, name, SKIPPED, run.run_id, run.clock(), kind=REVIEW),
    )
    return ReviewOutcome(
        BatchOutcome(batch_id, name, SKIPPED, seconds=time.perf_counter() - started)
    )


def review_lines(outcome: ReviewOutcome) -> list[str]:
    """One line for the file (its identity and end), and one per rejected row's errors
    when it has any: what the CLI prints and the flow logs."""
    batch = outcome.batch
    head = f"review file {batch.source} ({batch.batch_id[:12]}): {batch.status}"
    if batch.status == SKIPPED:
        return [f"{head}: these bytes were recorded before; nothing changed"]
    if batch.status == REJECTED:
        return [f"{head}: {batch.reason}; nothing applied, the file is kept in quarantine"]
    counts = batch.by_status
    return [
        f"{head}: {batch.rows_in} row(s): {counts.get('APPROVED', 0)} approved, "
        f"{counts.get('DENIED', 0)} denied, {batch.rows_rejected} rejected"
    ]
