"""One interface to a lake, wherever it lives: `lake_at(location)`.

A local folder (`FolderLake`: rename-based publication, hard-linked skips) and an
object store (`ObjectStoreLake`: each object written once, the batch record last)
keep the same event log (claimsflow/lake/layout.py) behind the same protocol, so the
event log, the catalog, the lock and the metrics ask the lake, not its kind.

Reads never write: a lake without an event log reads as empty tables (or, for the
catalog, a clear error), and no folder or object is created by a read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from claimsflow.lake.folder import FolderLake
from claimsflow.lake.layout import LogSize, Table
from claimsflow.lake.objectstore import ObjectStoreLake
from claimsflow.lake.storage import Location, RemoteLocation


class Lake(Protocol):
    """The event log of one lake, and where its local state lives."""

    @property
    def location(self) -> Location: ...

    @property
    def staging_dir(self) -> Path:
        """Local work in progress, invisible to readers (cleaned at a run's start)."""
        ...

    @property
    def state_dir(self) -> Path:
        """The local folder of the lake's writer lock and catalog file."""
        ...

    def has_event_log(self) -> bool: ...

    def batch_recorded(self, batch_id: str) -> bool: ...

    def recorded_batch_ids(self) -> list[str]:
        """The recorded batches (the empty pseudo-batch included), sorted."""
        ...

    def table_files(self, table: str, batch_ids: Sequence[str] | None = None) -> list[str]:
        """The files of one table: of the given recorded batches, or of all of them."""
        ...

    def scan(self, table: str, batch_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        """One table's rows, of the given recorded batches or of all of them."""
        ...

    def scan_skips(self) -> pl.LazyFrame: ...

    def sql_table(self, table: str) -> str:
        """A DuckDB FROM item that reads one table of every recorded batch, including
        batches recorded after the SQL was written (a glob, where one can name them)."""
        ...

    def sql_skips(self) -> str: ...

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """What a DuckDB connection needs before it can read the lake."""
        ...

    def allowed_directories(self) -> list[str]:
        """DuckDB's `allowed_directories` that let it read the lake and nothing else."""
        ...

    def log_size(self) -> LogSize: ...

    def ensure(self) -> None:
        """Create the event log (its empty pseudo-batch); only under the writer lock."""
        ...

    def clean_staging(self) -> int: ...

    def publish(self, name: str, tables: Mapping[str, Table], *, missing_ok: bool) -> Location: ...

    def record_skip(self, run_id: str, batch_id: str, record: pl.DataFrame) -> Location: ...

    def quarantine(self, batch_id: str, name: str, data: bytes, reason: str) -> Location: ...


def lake_at(location: Location) -> Lake:
    """The lake at a local folder or an object-store location."""
    if isinstance(location, RemoteLocation):
        return ObjectStoreLake(location)
    return FolderLake(location)
