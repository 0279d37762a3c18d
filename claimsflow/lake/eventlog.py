"""The append-only Parquet event log (spec §6, §7): what the pipeline writes and reads.

The layout and table schemas are in claimsflow/lake/layout.py; how a batch is
published depends on where the lake lives (claimsflow/lake/backend.py): a local
folder renames a whole batch folder into place, an object store writes each object
once with the batch record last. Either way a reader sees all of a batch or none of
it, a batch id is recorded once, and nothing rewrites or deletes a recorded file.

Reads (`scan_table`, `scan_batches`, `scan_skips`, `recorded_batch_ids`,
`batch_recorded`, `has_event_log`) never write: a lake without an event log reads as
empty tables, and no folder is created. Only `ensure_lake` (under the writer lock)
creates one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar, cast

import polars as pl

from claimsflow.lake import segments
from claimsflow.lake.backend import lake_at
from claimsflow.lake.folder import FolderLake, scan_files
from claimsflow.lake.layout import (
    BATCH_TABLES,
    EMPTY_BATCH,
    RECORD_TABLE,
    ROW_GROUP_ROWS,
    TABLE_SCHEMAS,
    UTC_TS,
    ZSTD_LEVEL,
    BatchAlreadyRecorded,
    LogSize,
    Table,
    conform,
)
from claimsflow.lake.storage import Location

__all__ = [
    "BATCH_TABLES",
    "EMPTY_BATCH",
    "RECORD_TABLE",
    "ROW_GROUP_ROWS",
    "TABLE_SCHEMAS",
    "UTC_TS",
    "ZSTD_LEVEL",
    "BatchAlreadyRecorded",
    "HistorySnapshot",
    "LogSize",
    "Table",
    "batch_recorded",
    "batches_dir",
    "clean_staging",
    "compact",
    "conform",
    "ensure_lake",
    "has_event_log",
    "log_size",
    "quarantine",
    "quarantine_dir",
    "record_batch",
    "record_skip",
    "recorded_batch_ids",
    "scan_batches",
    "scan_history",
    "scan_skips",
    "scan_table",
    "skips_dir",
    "staging_dir",
]

#: A lake of either kind; the functions that return where they wrote return the same kind.
L = TypeVar("L", bound=Location)


def batches_dir(lake: Path) -> Path:
    return FolderLake(lake).batches_dir


def skips_dir(lake: Path) -> Path:
    return FolderLake(lake).skips_dir


def quarantine_dir(lake: Path) -> Path:
    return FolderLake(lake).quarantine_dir


def staging_dir(lake: Location) -> Path:
    """Local work in progress: in the lake, or for a remote lake in its local state folder."""
    return lake_at(lake).staging_dir


def ensure_lake(lake: Location) -> None:
    """Create the lake's folders and the empty pseudo-batch readers' globs rely on."""
    lake_at(lake).ensure()


def clean_staging(lake: Location) -> int:
    """Remove work a killed run left half-done; call only while holding the writer lock.

    For a remote lake that is its local work folder only: objects in the store are
    never deleted (docs/object-storage.md).
    """
    return lake_at(lake).clean_staging()


def batch_recorded(lake: Location, batch_id: str) -> bool:
    return lake_at(lake).batch_recorded(batch_id)


def has_event_log(lake: Location) -> bool:
    """Whether `lake` holds an event log (ensure_lake ran on it)."""
    return lake_at(lake).has_event_log()


def record_batch(lake: L, batch_id: str, tables: Mapping[str, Table]) -> L:
    """Write one batch's event tables and make them visible at once."""
    unknown = set(tables) - set(BATCH_TABLES)
    if unknown:
        raise ValueError(f"unknown event tables: {sorted(unknown)}")
    full = {
        t: conform(t, tables.get(t, pl.DataFrame(schema=TABLE_SCHEMAS[t]))) for t in BATCH_TABLES
    }
    return cast(L, lake_at(lake).publish(batch_id, full, missing_ok=False))


def record_skip(lake: L, run_id: str, record: pl.DataFrame) -> L:
    """Append a SKIPPED batch record (a file of its own, created only if absent).

    A run can skip the same bytes more than once (copies under several names):
    each skip gets a file of its own, and no earlier record is ever replaced.
    """
    batch_id = str(record["batch_id"][0])
    return cast(L, lake_at(lake).record_skip(run_id, batch_id, conform("batch", record)))


def quarantine(lake: L, batch_id: str, name: str, data: bytes, reason: str) -> L:
    """Keep an unreadable file verbatim with its reason; never overwrite one kept before."""
    return cast(L, lake_at(lake).quarantine(batch_id, name, data, reason))


def scan_table(lake: Location, table: str) -> pl.LazyFrame:
    """Every recorded row of one event table (the empty pseudo-batch included), of the
    batches recorded when this is called; no rows when the lake has no event log."""
    return lake_at(lake).scan(table)


def scan_history(lake: Location, table: str) -> pl.LazyFrame:
    """Every recorded row of `cases` or `decisions`, read through the log's segments
    where it has them (claimsflow/lake/segments.py): the same rows as `scan_table`,
    in a number of files that does not grow with the number of batches."""
    return HistorySnapshot(lake).scan(table)


class HistorySnapshot:
    """`scan_history` for the several reads of one batch's history, with the log's
    files listed once, at the first read: listing 10,000 batch folders and the
    segments' manifests takes ~10-20 ms, and a batch's history takes a dozen scans
    (issue 18, item 12). Use it while the log cannot change: under the writer lock,
    before the batch is recorded."""

    def __init__(self, lake: Location) -> None:
        self._lake = lake_at(lake)
        self._files: dict[str, list[str]] = {}

    def scan(self, table: str) -> pl.LazyFrame:
        at = self._lake
        if not (isinstance(at, FolderLake) and table in segments.SEGMENT_TABLES):
            return at.scan(table)  # an object store's reads stay per batch
        if not self._files:
            self._files = segments.history_files(at)
        return scan_files(self._files[table], table)


def compact(lake: Location) -> int:
    """Fold recorded batches into segments for the history reads (under the writer
    lock); nothing on an object store. Returns the number of segments written."""
    at = lake_at(lake)
    return segments.compact(at) if isinstance(at, FolderLake) else 0


def scan_skips(lake: Location) -> pl.LazyFrame:
    return lake_at(lake).scan_skips()


def recorded_batch_ids(lake: Location) -> list[str]:
    """Ids of the batches `scan_table` reads (the empty pseudo-batch included), sorted."""
    return lake_at(lake).recorded_batch_ids()


def scan_batches(lake: Location, table: str, batch_ids: Sequence[str]) -> pl.LazyFrame:
    """The rows of one event table that the given recorded batches hold.

    For reads that join two tables: joined a few recorded batches at a time, a join
    holds those batches in memory, not the whole log (claimsflow/lake/history.py).
    """
    return lake_at(lake).scan(table, batch_ids)


def log_size(lake: Location) -> LogSize:
    """Bytes and files under events/, and recorded batches (not `_empty`)."""
    return lake_at(lake).log_size()
