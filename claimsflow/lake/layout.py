"""The event log's tables and names, the same in a local folder and on an object store.

Layout under the lake (docs/reliability.md, docs/object-storage.md):

    events/batches/<batch_id>/   one folder (prefix) per batch ever recorded, holding
        batch.parquet            the batch record (PROCESSED or REJECTED)
        cases.parquet            received case payloads (typed, valid rows)
        decisions.parquet        one decision event per decided case
        rule_hits.parquet        one row per rule that fired
        rejections.parquet       rejected rows with raw values and errors
    events/batches/_empty/       the same files with no rows, so that readers'
                                 globs always match (a fresh lake is queryable)
    events/skips/<run>-<batch_id>[-<n>].parquet   SKIPPED records (and an empty
                                 _empty.parquet); -<n> when a run skips the same
                                 bytes under several names
    quarantine/<batch_id>/<file name> + reason.txt
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Final, NamedTuple, overload

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

TABLE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "batch": {
        "batch_id": pl.String(),
        "source": pl.String(),
        "source_kind": pl.String(),
        "status": pl.String(),
        "rows_in": pl.Int64(),
        "rows_decided": pl.Int64(),
        "rows_rejected": pl.Int64(),
        "reason": pl.String(),
        "processed_at": UTC_TS,
        "run_id": pl.String(),
        "ruleset_name": pl.String(),
        "ruleset_version": pl.String(),
        "seq_from": pl.Int64(),
        "seq_to": pl.Int64(),
        "pipeline_version": pl.String(),
        # CASES (a case batch) or REVIEW (an examiner's review file, spec §8).
        "kind": pl.String(),
    },
    "cases": {
        "batch_id": pl.String(),
        "row_number": pl.Int64(),
        "case_id": pl.String(),
        "member_id": pl.String(),
        "provider_id": pl.String(),
        "service_date": pl.Date(),
        "received_date": pl.Date(),
        "procedure_code": pl.String(),
        "diagnosis_code": pl.String(),
        "units": pl.Int64(),
        "billed_cents": pl.Int64(),
        "prior_auth_id": pl.String(),
        "claim_frequency": pl.String(),
        "original_case_id": pl.String(),
        "received_at": UTC_TS,
    },
    "decisions": {
        "batch_id": pl.String(),
        "case_id": pl.String(),
        "status": pl.String(),
        "reason_codes": pl.List(pl.String()),
        "allowed_cents": pl.Int64(),
        "deductible_cents": pl.Int64(),
        "coinsurance_cents": pl.Int64(),
        "paid_cents": pl.Int64(),
        "deductible_used_before_cents": pl.Int64(),
        "oop_spent_before_cents": pl.Int64(),
        "oop_max_cents": pl.Int64(),
        "annual_deductible_cents": pl.Int64(),
        "coinsurance_percent": pl.Int64(),
        "fee_allowed_cents": pl.Int64(),
        "ruleset_name": pl.String(),
        "ruleset_version": pl.String(),
        "ruleset_parameters_hash": pl.String(),
        "decided_at": UTC_TS,
        "run_id": pl.String(),
        # Spec §7: ADJUDICATION, REVIEW or CORRECTION; the examiner (REVIEW) or the
        # correcting case_id (CORRECTION); the examiner's note (REVIEW).
        "decision_source": pl.String(),
        "decided_by": pl.String(),
        "note": pl.String(),
    },
    "rule_hits": {
        "batch_id": pl.String(),
        "case_id": pl.String(),
        "rule_id": pl.String(),
        "rule_order": pl.Int64(),
        "rule_description": pl.String(),
        "outcome": pl.String(),
        "reason_code": pl.String(),
        "ruleset_name": pl.String(),
        "ruleset_version": pl.String(),
        "decided_at": UTC_TS,
    },
    "rejections": {
        "batch_id": pl.String(),
        "row_number": pl.Int64(),
        "case_id": pl.String(),
        "errors": pl.List(pl.String()),
        "raw": pl.String(),
        "rejected_at": UTC_TS,
    },
}
BATCH_TABLES = tuple(TABLE_SCHEMAS)
#: How event tables are written. Row groups of 1M rows, not the sink's ~120k: a quarter
#: less time to write a 10M-case batch and smaller files, still ten row groups (ten
#: readers) for DuckDB at that size. zstd level 1: files within 2 % of the default
#: level's size, ~10 % faster to write (docs/benchmarks.md).
ROW_GROUP_ROWS: Final = 1_000_000
ZSTD_LEVEL: Final = 1
EMPTY_BATCH = "_empty"
#: The table whose object commits a batch on an object store (written last).
RECORD_TABLE = "batch"
BATCHES: Final = ("events", "batches")
SKIPS: Final = ("events", "skips")
QUARANTINE: Final = "quarantine"
REASON_FILE: Final = "reason.txt"


class LogSize(NamedTuple):
    """Bytes and files under events/ (a cut-short publish's leftovers included, as they
    take space), and recorded batches (not the empty pseudo-batch)."""

    bytes: int
    files: int
    batches: int


class BatchAlreadyRecorded(Exception):
    """Another run recorded this batch id first."""


#: An event table as it is written: in memory, or read from files while it is written
#: (a partitioned batch's decisions: claimsflow/pipeline/partitioning.py).
Table = pl.DataFrame | pl.LazyFrame


@overload
def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame: ...
@overload
def conform(table: str, frame: pl.LazyFrame) -> pl.LazyFrame: ...
def conform(table: str, frame: Table) -> Table:
    """The frame with exactly the table's columns, in order and of its types."""
    schema = TABLE_SCHEMAS[table]
    present = frame.collect_schema().names()
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in present]
    return frame.with_columns(missing).select(pl.col(c).cast(t) for c, t in schema.items())


def empty_tables() -> dict[str, pl.DataFrame]:
    """The tables of the empty pseudo-batch."""
    return {t: pl.DataFrame(schema=s) for t, s in TABLE_SCHEMAS.items()}


def empty_scan(table: str) -> pl.LazyFrame:
    """A table with no rows: what a read of a lake without an event log returns."""
    return pl.LazyFrame(schema=TABLE_SCHEMAS[table])


def quarantine_reason(name: str, reason: str) -> str:
    return f"{name}: {reason}\n"


def write_table(table: Table, path: Path) -> None:
    """A table written to one Parquet file, as every event table is written. A table
    read from files (a partitioned batch's) is encoded as it is read, never held
    whole; the streaming sink also encodes row groups in parallel (~1.5x faster than
    write_parquet on a 10M-row table; same columns, types and statistics)."""
    table.lazy().sink_parquet(
        path,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        statistics=True,
    )


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    """A table as one Parquet object's bytes (an object store takes an object whole)."""
    buffer = io.BytesIO()
    frame.write_parquet(
        buffer,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        statistics=True,
    )
    return buffer.getvalue()
