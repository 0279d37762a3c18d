"""One batch from bytes to recorded events: the stages the flows wire together.

`decide_batch` is pure (frames in, frames out). `process_batch_file` and
`process_sql_batch` add identity, quarantine and the event-log write around it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from claimsflow import __version__, eventlog
from claimsflow.faults import crash_point
from claimsflow.history import History
from claimsflow.pricing import price
from claimsflow.reading import UnreadableBatch, batch_format, read_batch_bytes
from claimsflow.reference import Reference
from claimsflow.rules.context import CASE_PAYLOAD_COLUMNS, adjudication_context
from claimsflow.rules.engine import adjudicate
from claimsflow.rules.ruleset import RuleSet
from claimsflow.sql_source import SqlIncrement
from claimsflow.storage import Location
from claimsflow.validation import ValidatedBatch, validate_batch

PROCESSED, SKIPPED, REJECTED = "PROCESSED", "SKIPPED", "REJECTED"


@dataclass(frozen=True)
class BatchDecision:
    """Everything one batch decided: typed cases, priced decisions, hits, rejections."""

    rows_in: int
    cases: pl.DataFrame
    decisions: pl.DataFrame
    rule_hits: pl.DataFrame
    rejections: pl.DataFrame


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one batch, for the run summary and the Prefect artifacts."""

    batch_id: str
    source: str
    status: str
    rows_in: int = 0
    rows_decided: int = 0
    rows_rejected: int = 0
    reason: str | None = None
    seconds: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    lake: Location  # a folder, or an object-store URL (claimsflow/storage.py)
    reference: Reference
    ruleset: RuleSet
    run_id: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


def decide_batch(
    raw: pl.DataFrame, reference: Reference, ruleset: RuleSet, history: History
) -> BatchDecision:
    """Validate, adjudicate and price one text batch against what came before."""
    validated = validate_batch(raw, history.decided_among(raw["case_id"]))
    return decide_validated(validated, raw.height, reference, ruleset, history)


def decide_validated(
    validated: ValidatedBatch,
    rows_in: int,
    reference: Reference,
    ruleset: RuleSet,
    history: History,
) -> BatchDecision:
    """Adjudicate and price a validated batch (its text frame may be gone already)."""
    # Only the history this batch can see: read from the log now, it is the size of
    # the batch, whatever the size of the log (claimsflow/history.py).
    seen = history.for_batch(validated.cases, ruleset)
    decisions, rule_hits = decide_cases(
        validated.cases, reference, ruleset, seen.prior_claims, seen.deductible_used
    )
    return BatchDecision(
        rows_in=rows_in,
        cases=validated.cases,
        decisions=decisions,
        rule_hits=rule_hits,
        rejections=validated.rejections,
    )


def decide_cases(
    cases: pl.DataFrame,
    reference: Reference,
    ruleset: RuleSet,
    prior_claims: pl.DataFrame,
    deductible_used: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Priced decisions and rule hits of valid cases, given what earlier batches decided.

    All the state it reads is per member (coverage, duplicate keys, deductible
    accumulators), so it gives the same answer on the whole batch as on any split
    of it by member with each part's own members' history (claimsflow/partitioning.py).
    """
    context = adjudication_context(cases, reference)
    adjudication = adjudicate(context, ruleset, prior_claims)
    return price(adjudication.decisions, deductible_used), adjudication.rule_hits


def with_pipeline_version(record: pl.DataFrame) -> pl.DataFrame:
    """Every batch record says which version of this software wrote it."""
    return record.with_columns(pl.lit(__version__).alias("pipeline_version"))


def batch_id_of_bytes(data: bytes) -> str:
    """Spec §6: a batch is identified by the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def batch_events(
    decision: BatchDecision,
    *,
    batch_id: str,
    source: str,
    source_kind: str,
    ruleset: RuleSet,
    run_id: str,
    now: dt.datetime,
    seq_range: tuple[int, int] | None = None,
) -> dict[str, pl.DataFrame]:
    """The event-log rows one decided batch appends."""
    stamp = pl.lit(now, dtype=eventlog.UTC_TS)
    ident = [pl.lit(batch_id).alias("batch_id")]
    tag = [
        pl.lit(ruleset.name).alias("ruleset_name"),
        pl.lit(ruleset.version).alias("ruleset_version"),
    ]
    record = pl.DataFrame(
        {
            "batch_id": [batch_id],
            "source": [source],
            "source_kind": [source_kind],
            "status": [PROCESSED],
            "rows_in": [decision.rows_in],
            "rows_decided": [decision.decisions.height],
            "rows_rejected": [decision.rejections.height],
            "reason": [None],
            "processed_at": [now],
            "run_id": [run_id],
            "ruleset_name": [ruleset.name],
            "ruleset_version": [ruleset.version],
            "seq_from": [seq_range[0] if seq_range else None],
            "seq_to": [seq_range[1] if seq_range else None],
        }
    )
    return {
        "batch": with_pipeline_version(record),
        "cases": decision.cases.select(
            *ident, "row_number", *CASE_PAYLOAD_COLUMNS, stamp.alias("received_at")
        ),
        "decisions": decision.decisions.with_columns(
            *ident,
            *tag,
            pl.lit(ruleset.parameters_hash).alias("ruleset_parameters_hash"),
            stamp.alias("decided_at"),
            pl.lit(run_id).alias("run_id"),
        ),
        "rule_hits": decision.rule_hits.with_columns(*ident, *tag, stamp.alias("decided_at")),
        "rejections": decision.rejections.with_columns(*ident, stamp.alias("rejected_at")),
    }


def rejected_batch_record(
    batch_id: str, source: str, reason: str, run_id: str, now: dt.datetime
) -> pl.DataFrame:
    return with_pipeline_version(
        pl.DataFrame(
            {
                "batch_id": [batch_id],
                "source": [source],
                "source_kind": ["file"],
                "status": [REJECTED],
                "rows_in": [0],
                "rows_decided": [0],
                "rows_rejected": [0],
                "reason": [reason],
                "processed_at": [now],
                "run_id": [run_id],
            }
        )
    )


def skipped_batch_record(
    batch_id: str, source: str, source_kind: str, run_id: str, now: dt.datetime
) -> pl.DataFrame:
    return with_pipeline_version(
        pl.DataFrame(
            {
                "batch_id": [batch_id],
                "source": [source],
                "source_kind": [source_kind],
                "status": [SKIPPED],
                "rows_in": [0],
                "rows_decided": [0],
                "rows_rejected": [0],
                "reason": [None],
                "processed_at": [now],
                "run_id": [run_id],
            },
            schema_overrides={"reason": pl.String},
        )
    )


@dataclass(frozen=True)
class PreparedBatch:
    """A batch read, identified and validated, waiting to be decided and recorded."""

    batch_id: str
    source: str
    source_kind: str
    rows_in: int
    validated: ValidatedBatch
    started: float
    seq_range: tuple[int, int] | None = None


Decide = Callable[[PreparedBatch], BatchDecision]


def process_batch_file(
    path: Location, run: RunContext, history: History, decide: Decide | None = None
) -> tuple[BatchOutcome, History]:
    """Read, decide and record one inbox file; returns its outcome and the new history.

    `decide` adjudicates the validated batch; by default in this process, in one
    piece (the partitioned executors pass their own, see tasks/partitions.py).
    """
    prepared = prepare_batch_file(path, run, history)
    if isinstance(prepared, BatchOutcome):
        return prepared, history
    return record_prepared(prepared, _decide(prepared, run, history, decide), run, history)


def prepare_batch_file(
    path: Location, run: RunContext, history: History
) -> BatchOutcome | PreparedBatch:
    """Identify, read and validate one inbox file; an outcome if that already ends it
    (seen before: SKIPPED; unreadable: quarantined and REJECTED)."""
    started = time.perf_counter()
    data = path.read_bytes()
    batch_id = batch_id_of_bytes(data)
    source = path.name
    if eventlog.batch_recorded(run.lake, batch_id):
        return _skip(run, batch_id, source, "file", started)
    fmt = batch_format(Path(path.name))  # by name: a local file or an object
    if fmt is None:  # pragma: no cover - discovery only hands over batch files
        raise ValueError(f"{path} is not a batch file")
    try:
        # raw (JSON of the row) is built by validation for rejected rows only.
        raw = read_batch_bytes(data, fmt, with_raw=False)
        crash_point("after-read")
    except UnreadableBatch as exc:
        reason = str(exc)
        eventlog.quarantine(run.lake, batch_id, path.name, data, reason)
        crash_point("after-quarantine")
        record = rejected_batch_record(batch_id, source, reason, run.run_id, run.clock())
        try:
            eventlog.record_batch(run.lake, batch_id, {"batch": record})
        except eventlog.BatchAlreadyRecorded:
            return _skip(run, batch_id, source, "file", started)
        return BatchOutcome(
            batch_id, source, REJECTED, reason=reason, seconds=time.perf_counter() - started
        )
    # Neither the file's bytes nor its text frame is needed past validation: let them
    # go before the batch is decided (together, about a third of its peak memory).
    del data
    validated = validate_batch(raw, history.decided_among(raw["case_id"]))
    rows_in = raw.height
    del raw
    return PreparedBatch(batch_id, source, "file", rows_in, validated, started)


def sql_batch_id(source: str, seq_range: tuple[int, int]) -> str:
    """Spec §7: a SQL batch's identity derives from its source and seq range."""
    return hashlib.sha256(f"{source}|{seq_range[0]}|{seq_range[1]}".encode()).hexdigest()


def process_sql_batch(
    increment: SqlIncrement, run: RunContext, history: History, decide: Decide | None = None
) -> tuple[BatchOutcome, History]:
    """Decide and record one incremental pull from a SQL table."""
    prepared = prepare_sql_batch(increment, run, history)
    if isinstance(prepared, BatchOutcome):
        return prepared, history
    return record_prepared(prepared, _decide(prepared, run, history, decide), run, history)


def prepare_sql_batch(
    increment: SqlIncrement, run: RunContext, history: History
) -> BatchOutcome | PreparedBatch:
    """Identify and validate one SQL pull; an outcome if that already ends it."""
    started = time.perf_counter()
    source, seq_range = increment.source, increment.seq_range
    batch_id = sql_batch_id(source, seq_range)
    if eventlog.batch_recorded(run.lake, batch_id):
        return _skip(run, batch_id, source, "sql", started)
    if increment.problem is not None:
        record = rejected_batch_record(
            batch_id, source, increment.problem, run.run_id, run.clock()
        ).with_columns(
            pl.lit("sql").alias("source_kind"),
            pl.lit(seq_range[0]).alias("seq_from"),
            pl.lit(seq_range[1]).alias("seq_to"),
        )
        eventlog.record_batch(run.lake, batch_id, {"batch": record})
        return BatchOutcome(batch_id, source, REJECTED, reason=increment.problem)
    validated = validate_batch(increment.raw, history.decided_among(increment.raw["case_id"]))
    return PreparedBatch(
        batch_id, source, "sql", increment.raw.height, validated, started, seq_range
    )


def _decide(
    prepared: PreparedBatch, run: RunContext, history: History, decide: Decide | None
) -> BatchDecision:
    if decide is not None:
        return decide(prepared)
    return decide_validated(
        prepared.validated, prepared.rows_in, run.reference, run.ruleset, history
    )


def record_prepared(
    prepared: PreparedBatch, decision: BatchDecision, run: RunContext, history: History
) -> tuple[BatchOutcome, History]:
    """Append a decided batch to the event log (all of it at once) and advance the history."""
    return _record_decision(
        decision,
        prepared.batch_id,
        prepared.source,
        prepared.source_kind,
        run,
        history,
        prepared.started,
        prepared.seq_range,
    )


def _record_decision(
    decision: BatchDecision,
    batch_id: str,
    source: str,
    source_kind: str,
    run: RunContext,
    history: History,
    started: float,
    seq_range: tuple[int, int] | None,
) -> tuple[BatchOutcome, History]:
    crash_point("after-validation")
    tables = batch_events(
        decision,
        batch_id=batch_id,
        source=source,
        source_kind=source_kind,
        ruleset=run.ruleset,
        run_id=run.run_id,
        now=run.clock(),
        seq_range=seq_range,
    )
    try:
        eventlog.record_batch(run.lake, batch_id, tables)
    except eventlog.BatchAlreadyRecorded:
        return _skip(run, batch_id, source, source_kind, started), history
    crash_point("after-publish")
    decided = decision.decisions.select(*CASE_PAYLOAD_COLUMNS, "status", "deductible_cents")
    counts = dict(decision.decisions["status"].value_counts().iter_rows())
    outcome = BatchOutcome(
        batch_id,
        source,
        PROCESSED,
        rows_in=decision.rows_in,
        rows_decided=decision.decisions.height,
        rows_rejected=decision.rejections.height,
        seconds=time.perf_counter() - started,
        by_status={str(k): int(v) for k, v in counts.items()},
    )
    return outcome, history.advanced_by(decided)


def _skip(
    run: RunContext, batch_id: str, source: str, source_kind: str, started: float
) -> BatchOutcome:
    eventlog.record_skip(
        run.lake,
        run.run_id,
        skipped_batch_record(batch_id, source, source_kind, run.run_id, run.clock()),
    )
    return BatchOutcome(batch_id, source, SKIPPED, seconds=time.perf_counter() - started)


def discover_inbox(inbox: Path) -> tuple[list[Path], list[Path]]:
    """Batch files in lexicographic order of name, and the entries that are not batches.

    Hidden files, other extensions, folders and links leading out of the inbox are
    left untouched (spec §1) and named in the run's report.
    """
    if not inbox.is_dir():
        return [], []
    batches: list[Path] = []
    ignored: list[Path] = []
    root = inbox.resolve()
    for entry in sorted(inbox.iterdir(), key=lambda p: p.name):
        inside = entry.resolve().parent == root
        if entry.is_file() and inside and batch_format(entry) is not None:
            batches.append(entry)
        else:
            ignored.append(entry)
    return batches, ignored
