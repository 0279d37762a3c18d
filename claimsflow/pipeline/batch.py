"""One batch from its source to recorded events: the stages the flows wire together.

    prepare_batch   identity (spec §6), skip, read, quarantine (§3), validate (§3, §9)
    decide_prepared the batch's history read from the log (an I/O step returning
                    frames), then `claimsflow.core.decide.decide` (pure)
    record_prepared the batch's event tables, published in one step

A file and a SQL pull take the same path: only how their identity is derived and
their rows are read differs (`BatchSource`). `process_batch` runs the three stages
in one piece; the partitioned executors run the middle one in parts
(claimsflow/pipeline/partitioning.py, tasks/partitions.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from claimsflow import __version__
from claimsflow.core.decide import BatchDecision, decide
from claimsflow.core.history import HistorySource
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import ValidatedBatch, validate_batch
from claimsflow.faults import crash_point
from claimsflow.ingest import reading
from claimsflow.ingest.chunks import ReadWhole, batch_id_of_file, read_jsonl_chunks
from claimsflow.ingest.inbox import InboxFileUnavailable, read_inbox_file
from claimsflow.ingest.reading import UnreadableBatch, batch_format, read_batch_bytes
from claimsflow.ingest.sql_source import SqlIncrement
from claimsflow.lake import eventlog
from claimsflow.lake.eventlog import Table
from claimsflow.lake.history import LakeHistory
from claimsflow.lake.storage import Location
from claimsflow.progress import step
from claimsflow.vocabulary import CASES, PROCESSED, REJECTED, SKIPPED

#: Where a batch's rows come from: an inbox file (local or remote), or a SQL pull.
BatchSource = Location | SqlIncrement


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
    #: Earlier cases this batch's corrections voided (spec §9).
    voided_originals: int = 0


@dataclass(frozen=True)
class RunContext:
    lake: Location  # a folder, or an object-store URL (claimsflow/lake/storage.py)
    reference: Reference
    ruleset: RuleSet
    run_id: str
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class BatchIdentity:
    """Which batch is being recorded: what the log's batch record says of it."""

    batch_id: str
    source: str
    source_kind: str
    started: float
    seq_range: tuple[int, int] | None = None


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

    @property
    def identity(self) -> BatchIdentity:
        return BatchIdentity(
            self.batch_id, self.source, self.source_kind, self.started, self.seq_range
        )


#: Decides a prepared batch and records it. In one piece by default (`decide_prepared`,
#: then `record_prepared`); the partitioned executors decide it in parts and record
#: the parts' outputs from their files (claimsflow/pipeline/partitioning.py).
Conclude = Callable[[PreparedBatch], "BatchOutcome"]


@dataclass(frozen=True)
class DecidedBatch:
    """What a decided batch appends to the log (`batch_events`), and its tally.

    The tables are `BatchDecision`'s, or, for a batch decided in parts, read from
    the parts' files as the log is written (its decisions and rule hits; a batch
    prepared in chunks, its cases and rejections too): the coordinator then never
    holds every part's outputs at once (issue 15).
    """

    rows_in: int
    cases: Table
    decisions: Table
    rule_hits: Table
    rejections: Table
    #: Rows of `cases` (valid rows) and of `rejections`.
    rows_decided: int
    rows_rejected: int
    #: Earlier cases the batch's corrections voided (their decisions come first).
    voided_originals: int
    #: The batch's own decisions (not the voided originals') by status.
    by_status: dict[str, int]

    @classmethod
    def of(cls, decision: BatchDecision) -> DecidedBatch:
        own = decision.decisions.slice(decision.voided_originals)
        return cls(
            rows_in=decision.rows_in,
            cases=decision.cases,
            decisions=decision.decisions,
            rule_hits=decision.rule_hits,
            rejections=decision.rejections,
            rows_decided=decision.cases.height,
            rows_rejected=decision.rejections.height,
            voided_originals=decision.voided_originals,
            by_status=status_counts(own.lazy()),
        )


def status_counts(decisions: pl.LazyFrame) -> dict[str, int]:
    """How many of `decisions` have each status."""
    counts = decisions.group_by("status").len().collect()
    return {str(status): int(n) for status, n in counts.iter_rows()}


def decide_batch(
    raw: pl.DataFrame, reference: Reference, ruleset: RuleSet, history: HistorySource
) -> BatchDecision:
    """Validate, adjudicate and price one text batch against `history` (the what-if
    replays and the tests, with a history in memory)."""
    validated = validate_batch(raw, history.decided_among(named_case_ids(raw)))
    seen = history.for_batch(validated.cases, ruleset)
    return decide(validated, raw.height, reference, ruleset, seen)


def named_case_ids(raw: pl.DataFrame) -> pl.Series:
    """Every case_id a text batch names: its rows' own, and the originals its
    corrections name (spec §3 resubmissions, §9 corrections)."""
    named = [raw["case_id"]]
    if "original_case_id" in raw.columns:
        named.append(raw["original_case_id"].alias("case_id"))
    return pl.concat(named).drop_nulls()


def batch_id_of_bytes(data: bytes) -> str:
    """Spec §6: a batch is identified by the SHA-256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def sql_batch_id(source: str, seq_range: tuple[int, int]) -> str:
    """Spec §7: a SQL batch's identity derives from its source and seq range."""
    return hashlib.sha256(f"{source}|{seq_range[0]}|{seq_range[1]}".encode()).hexdigest()


@dataclass(frozen=True)
class _Opened:
    """A batch source, identified: what it is called, and how its rows are read."""

    batch_id: str
    source: str
    source_kind: str
    read: Callable[[], pl.DataFrame]  # raises UnreadableBatch
    keep_verbatim: Callable[[], bytes] | None = None  # a file's bytes, for quarantine
    seq_range: tuple[int, int] | None = None


def source_name(source: BatchSource) -> str:
    """What a batch is called before it is read: its file's name, or its SQL source."""
    return source.source if isinstance(source, SqlIncrement) else source.name


def _open(source: BatchSource, *, in_pieces: bool = True) -> _Opened:
    if isinstance(source, SqlIncrement):
        increment = source

        def read_pull() -> pl.DataFrame:
            if increment.problem is not None:
                raise UnreadableBatch(increment.problem)
            # A copy of the frame (its columns are shared, not copied): validation
            # takes the columns out of what it is given, and the increment itself
            # must stay whole for a retried task.
            return increment.raw.clone()

        return _Opened(
            sql_batch_id(increment.source, increment.seq_range),
            increment.source,
            "sql",
            read_pull,
            seq_range=increment.seq_range,
        )
    if in_pieces and isinstance(source, Path) and _large_jsonl(source):
        return _open_in_pieces(source)
    # Read whole, or InboxFileUnavailable: no batch is recorded for bytes never read.
    data = read_inbox_file(source)
    fmt = batch_format(Path(source.name))  # by name: a local file or an object
    if fmt is None:  # pragma: no cover - discovery only hands over batch files
        raise ValueError(f"{source} is not a batch file")
    # raw (JSON of the row) is built by validation for rejected rows only.
    return _Opened(
        batch_id_of_bytes(data),
        source.name,
        "file",
        lambda: read_batch_bytes(data, fmt, with_raw=False, in_pieces=in_pieces),
        keep_verbatim=lambda: data,
    )


def _large_jsonl(path: Path) -> bool:
    """A local JSON Lines file that `_open_in_pieces` reads (a file that cannot be
    looked at is left to `read_inbox_file`, which says why)."""
    if batch_format(path) != "jsonl":
        return False
    try:
        return path.stat().st_size > reading.JSONL_PIECE_BYTES
    except OSError:
        return False


def _open_in_pieces(path: Path) -> _Opened:
    """A large local JSON Lines file, hashed a block at a time, then read from disk a
    piece of whole lines at a time (`chunks.read_jsonl_chunks`): its bytes are not
    held beside its rows (10M cases: 2.4 GB of text, and the batch's peak 5.7 ->
    3.9 GiB, issue 15). A file whose pieces do not all read to the whole file's rows
    is read whole, with the same rows or reason; one that changed since it was hashed
    is `InboxFileUnavailable`, as `read_inbox_file` says of one that changed while read.
    """
    batch_id = batch_id_of_file(path)

    def verbatim() -> bytes:
        data = read_inbox_file(path)
        if batch_id_of_bytes(data) != batch_id:
            raise InboxFileUnavailable(path.name, "changed while it was read")
        return data

    def read() -> pl.DataFrame:
        try:
            return pl.concat(read_jsonl_chunks(path, batch_id), how="diagonal", rechunk=False)
        except ReadWhole:  # the same pieces would not read from the bytes either
            return read_batch_bytes(verbatim(), "jsonl", with_raw=False, in_pieces=False)

    return _Opened(batch_id, path.name, "file", read, keep_verbatim=verbatim)


def prepare_batch(
    source: BatchSource, run: RunContext, *, in_pieces: bool = True
) -> BatchOutcome | PreparedBatch:
    """Identify, read and validate one batch; an outcome if that already ends it
    (seen before: SKIPPED; unreadable: quarantined and REJECTED).

    `in_pieces=False`: a large JSON Lines file is read whole at once (its pieces were
    tried already, and fell back: claimsflow/pipeline/chunked.py)."""
    started = time.perf_counter()
    opened = _open(source, in_pieces=in_pieces)
    if eventlog.batch_recorded(run.lake, opened.batch_id):
        return _skip(run, opened, started)
    step("reading", batch=opened.source)
    try:
        raw = opened.read()
        crash_point("after-read")
    except UnreadableBatch as exc:
        return _reject(run, opened, str(exc), started)
    # The source's bytes (kept for quarantine) are not needed once read: let them go
    # before validation, the batch's peak (0.7 GiB for 10M CSV rows, issue 15).
    identity = replace(opened, read=_unread, keep_verbatim=None)
    del opened
    step("validating", batch=identity.source, rows=raw.height)
    rows_in = raw.height
    history = LakeHistory(run.lake)
    decided = history.decided_among(named_case_ids(raw))
    # The text frame is not needed past validation either: validation takes its
    # columns out as it goes, before the batch is decided.
    validated = validate_batch(raw, decided, release_raw=True)
    del raw
    return PreparedBatch(
        identity.batch_id,
        identity.source,
        identity.source_kind,
        rows_in,
        validated,
        started,
        identity.seq_range,
    )


def decide_prepared(prepared: PreparedBatch, run: RunContext) -> BatchDecision:
    """Read what the batch can see of the log, then decide it (pure)."""
    step("deciding", batch=prepared.source, rows=prepared.validated.cases.height)
    seen = LakeHistory(run.lake).for_batch(prepared.validated.cases, run.ruleset)
    return decide(prepared.validated, prepared.rows_in, run.reference, run.ruleset, seen)


def process_batch(
    source: BatchSource,
    run: RunContext,
    conclude: Conclude | None = None,
    *,
    in_pieces: bool = True,
) -> BatchOutcome:
    """Read, decide and record one batch.

    `conclude` decides and records the validated batch; by default in this process,
    in one piece (the partitioned executors pass their own: tasks/partitions.py).
    `in_pieces`: as `prepare_batch`'s.
    """
    prepared = prepare_batch(source, run, in_pieces=in_pieces)
    if isinstance(prepared, BatchOutcome):
        return prepared
    if conclude is not None:
        return conclude(prepared)
    return record_prepared(prepared, decide_prepared(prepared, run), run)


def record_prepared(
    prepared: PreparedBatch, decision: BatchDecision, run: RunContext
) -> BatchOutcome:
    """Append a batch decided in one piece to the event log, all of it at once."""
    return record_decided(prepared.identity, DecidedBatch.of(decision), run)


def record_decided(batch: BatchIdentity, decided: DecidedBatch, run: RunContext) -> BatchOutcome:
    """Append a decided batch to the event log, all of it at once."""
    step("recording", batch=batch.source, rows=decided.rows_decided)
    crash_point("after-validation")
    tables = batch_events(
        decided,
        batch_id=batch.batch_id,
        source=batch.source,
        source_kind=batch.source_kind,
        ruleset=run.ruleset,
        run_id=run.run_id,
        now=run.clock(),
        seq_range=batch.seq_range,
    )
    try:
        eventlog.record_batch(run.lake, batch.batch_id, tables)
    except eventlog.BatchAlreadyRecorded:
        return skip_batch(run, batch)
    crash_point("after-publish")
    return BatchOutcome(
        batch.batch_id,
        batch.source,
        PROCESSED,
        rows_in=decided.rows_in,
        rows_decided=decided.rows_decided,
        rows_rejected=decided.rows_rejected,
        seconds=time.perf_counter() - batch.started,
        by_status=decided.by_status,
        voided_originals=decided.voided_originals,
    )


def batch_events(
    decision: DecidedBatch,
    *,
    batch_id: str,
    source: str,
    source_kind: str,
    ruleset: RuleSet,
    run_id: str,
    now: dt.datetime,
    seq_range: tuple[int, int] | None = None,
) -> dict[str, Table]:
    """The event-log rows one decided batch appends."""
    stamp = pl.lit(now, dtype=eventlog.UTC_TS)
    ident = [pl.lit(batch_id).alias("batch_id")]
    tag = [
        pl.lit(ruleset.name).alias("ruleset_name"),
        pl.lit(ruleset.version).alias("ruleset_version"),
    ]
    record = batch_record(
        batch_id,
        source,
        PROCESSED,
        run_id,
        now,
        source_kind=source_kind,
        rows_in=decision.rows_in,
        rows_decided=decision.rows_decided,
        rows_rejected=decision.rows_rejected,
        ruleset=ruleset,
        seq_range=seq_range,
    )
    return {
        "batch": record,
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


def batch_record(
    batch_id: str,
    source: str,
    status: str,
    run_id: str,
    now: dt.datetime,
    *,
    source_kind: str = "file",
    kind: str = CASES,
    rows_in: int = 0,
    rows_decided: int = 0,
    rows_rejected: int = 0,
    reason: str | None = None,
    ruleset: RuleSet | None = None,
    seq_range: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """One batch record (spec §7 `batches`), saying which version of this software
    wrote it."""
    return pl.DataFrame(
        {
            "batch_id": [batch_id],
            "source": [source],
            "source_kind": [source_kind],
            "status": [status],
            "rows_in": [rows_in],
            "rows_decided": [rows_decided],
            "rows_rejected": [rows_rejected],
            "reason": [reason],
            "processed_at": [now],
            "run_id": [run_id],
            "ruleset_name": [ruleset.name if ruleset else None],
            "ruleset_version": [ruleset.version if ruleset else None],
            "seq_from": [seq_range[0] if seq_range else None],
            "seq_to": [seq_range[1] if seq_range else None],
            "pipeline_version": [__version__],
            "kind": [kind],
        },
        schema=eventlog.TABLE_SCHEMAS["batch"],
    )


def _unread() -> pl.DataFrame:  # pragma: no cover - a prepared batch was read already
    raise AssertionError("read again")


def skip_batch(run: RunContext, batch: BatchIdentity) -> BatchOutcome:
    """Record that `batch` was found recorded already (spec §6): SKIPPED."""
    opened = _Opened(
        batch.batch_id, batch.source, batch.source_kind, _unread, seq_range=batch.seq_range
    )
    return _skip(run, opened, batch.started)


def _reject(run: RunContext, opened: _Opened, reason: str, started: float) -> BatchOutcome:
    """Spec §3: a source that is not a table is a REJECTED batch; a file is kept
    verbatim in quarantine with the reason."""
    if opened.keep_verbatim is not None:
        eventlog.quarantine(
            run.lake, opened.batch_id, opened.source, opened.keep_verbatim(), reason
        )
        crash_point("after-quarantine")
    record = batch_record(
        opened.batch_id,
        opened.source,
        REJECTED,
        run.run_id,
        run.clock(),
        source_kind=opened.source_kind,
        reason=reason,
        seq_range=opened.seq_range,
    )
    try:
        eventlog.record_batch(run.lake, opened.batch_id, {"batch": record})
    except eventlog.BatchAlreadyRecorded:
        return _skip(run, opened, started)
    return BatchOutcome(
        opened.batch_id,
        opened.source,
        REJECTED,
        reason=reason,
        seconds=time.perf_counter() - started,
    )


def _skip(run: RunContext, opened: _Opened, started: float) -> BatchOutcome:
    eventlog.record_skip(
        run.lake,
        run.run_id,
        batch_record(
            opened.batch_id,
            opened.source,
            SKIPPED,
            run.run_id,
            run.clock(),
            source_kind=opened.source_kind,
            seq_range=opened.seq_range,
        ),
    )
    return BatchOutcome(
        opened.batch_id, opened.source, SKIPPED, seconds=time.perf_counter() - started
    )
