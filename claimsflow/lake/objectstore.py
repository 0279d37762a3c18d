"""A lake on an object store (s3://, gs://, memory://, ...): each object written once
under its final name, the batch record last (docs/object-storage.md).

An object store has no rename and no folder, so the layout of claimsflow/lake/layout.py
is published object by object:

    events/batches/<batch_id>/<table>.parquet   the four other tables first, then
    events/batches/<batch_id>/batch.parquet     the batch record, last: the commit
                                 marker, created only if absent (S3 If-None-Match)
    events/skips/<run>-<batch_id>[-<n>].parquet  created only if absent
    quarantine/<batch_id>/<file name>, then reason.txt (the marker), only if absent

Readers see a batch only once its batch record exists. A publish cut short leaves
table objects without a record: readers ignore them, and publishing the same batch
again overwrites them (the only objects ever overwritten are ones no reader can see).
There is no `_staging/` in the store: work in progress that is local by nature (the
partitions' folders, the catalog being rebuilt) goes to the lake's local state folder.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
import polars as pl

from claimsflow.faults import crash_point
from claimsflow.lake.layout import (
    BATCHES,
    EMPTY_BATCH,
    QUARANTINE,
    REASON_FILE,
    RECORD_TABLE,
    SKIPS,
    TABLE_SCHEMAS,
    BatchAlreadyRecorded,
    LogSize,
    Table,
    empty_scan,
    empty_tables,
    parquet_bytes,
    quarantine_reason,
    write_table,
)
from claimsflow.lake.storage import (
    RemoteLocation,
    glob_escape,
    list_objects,
    local_state,
    object_exists,
    sql_text,
    write_object,
)


@dataclass(frozen=True)
class ObjectStoreLake:
    """The event log under the prefix `remote` of an fsspec filesystem."""

    remote: RemoteLocation

    @property
    def location(self) -> RemoteLocation:
        return self.remote

    @property
    def staging_dir(self) -> Path:
        return self.state_dir / "_staging"

    @property
    def state_dir(self) -> Path:
        """The local folder of the lake's writer lock, catalog and work in progress."""
        return local_state(self.remote)

    # -- what is there ---------------------------------------------------------------

    def has_event_log(self) -> bool:
        return object_exists(self.remote.fs, self._record(EMPTY_BATCH))

    def batch_recorded(self, batch_id: str) -> bool:
        return object_exists(self.remote.fs, self._record(batch_id))

    def recorded_batch_ids(self) -> list[str]:
        """Ids of the batches whose record exists (the empty pseudo-batch included)."""
        prefix = self.remote.path(*BATCHES)
        return sorted(
            parts[0]
            for parts in _relative_parts(list_objects(self.remote.fs, prefix), prefix)
            if parts[1:] == (f"{RECORD_TABLE}.parquet",)
        )

    # -- reads -------------------------------------------------------------------------

    def table_files(self, table: str, batch_ids: Sequence[str] | None = None) -> list[str]:
        """Object paths of one table: of the given batches, or (one listing of the log)
        of every committed batch."""
        prefix = self.remote.path(*BATCHES)
        name = f"{table}.parquet"
        if batch_ids is not None:
            return [f"{prefix}/{b}/{name}" for b in batch_ids]
        present: dict[str, set[str]] = {}
        for parts in _relative_parts(list_objects(self.remote.fs, prefix), prefix):
            if len(parts) == 2:
                present.setdefault(parts[0], set()).add(parts[1])
        return [
            f"{prefix}/{batch_id}/{name}"
            for batch_id, names in sorted(present.items())
            if f"{RECORD_TABLE}.parquet" in names and name in names
        ]

    def scan(self, table: str, batch_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        return self._scan(self.table_files(table, batch_ids), table)

    def skip_files(self) -> list[str]:
        prefix = self.remote.path(*SKIPS)
        return [
            f"{prefix}/{parts[0]}"
            for parts in _relative_parts(list_objects(self.remote.fs, prefix), prefix)
            if len(parts) == 1 and parts[0].endswith(".parquet")
        ]

    def scan_skips(self) -> pl.LazyFrame:
        return self._scan(self.skip_files(), "batch")

    # -- DuckDB ------------------------------------------------------------------------

    def sql_table(self, table: str) -> str:
        """A table's objects, restricted to batches whose record object exists.

        Table objects are written before their batch's record (the commit marker), so a
        publish that was cut short leaves objects whose batch_id has no record: the
        semi-join hides them, and a batch counts from the moment its record exists.
        """
        records = self._sql_glob(*BATCHES, "*", f"{RECORD_TABLE}.parquet")
        read_records = f"read_parquet({records}, union_by_name = true)"
        if table == RECORD_TABLE:
            return read_records
        pattern = self._sql_glob(*BATCHES, "*", f"{table}.parquet")
        return (
            f"(SELECT * FROM read_parquet({pattern}, union_by_name = true) "
            f"WHERE batch_id IN (SELECT batch_id FROM {read_records}))"
        )

    def sql_skips(self) -> str:
        return f"read_parquet({self._sql_glob(*SKIPS, '*.parquet')}, union_by_name = true)"

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read the store through the lake's fsspec filesystem."""
        fs = self.remote.fs
        fs.invalidate_cache()  # DuckDB's globs list through it: see what is there now
        con.register_filesystem(fs)

    def allowed_directories(self) -> list[str]:
        # fsspec's listings spell some URLs with three slashes (memory:///bucket/...),
        # the user's text with two: both name the lake, and so does the escaped
        # spelling a glob of the views starts with.
        roots = [self.remote.url, self.remote.full_url()]
        return list(dict.fromkeys([*roots, *(glob_escape(r) for r in roots)]))

    def log_size(self) -> LogSize:
        fs = self.remote.fs
        fs.invalidate_cache()
        try:
            found = fs.find(self.remote.path(BATCHES[0]), detail=True)
        except FileNotFoundError:
            found = {}
        total = sum(int(info.get("size") or 0) for info in found.values())
        batches = [b for b in self.recorded_batch_ids() if b != EMPTY_BATCH]
        return LogSize(total, len(found), len(batches))

    # -- writes (under the writer lock) ----------------------------------------------

    def ensure(self) -> None:
        """The empty pseudo-batch and skip file, so the catalog's globs always match."""
        fs = self.remote.fs
        if not object_exists(fs, self._record(EMPTY_BATCH)):
            self.publish(EMPTY_BATCH, empty_tables(), missing_ok=True)
        empty_skips = self.remote.path(*SKIPS, f"{EMPTY_BATCH}.parquet")
        if not object_exists(fs, empty_skips):
            frame = pl.DataFrame(schema=TABLE_SCHEMAS[RECORD_TABLE])
            write_object(fs, empty_skips, parquet_bytes(frame), exclusive=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def clean_staging(self) -> int:
        """Empty the local work folder only: objects in the store are never deleted (a
        half-published batch is invisible and is overwritten when the batch is published
        again; deleting could race a writer on another machine)."""
        removed = 0
        if not self.staging_dir.is_dir():
            return removed
        for leftover in self.staging_dir.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def publish(
        self, name: str, tables: Mapping[str, Table], *, missing_ok: bool
    ) -> RemoteLocation:
        fs = self.remote.fs
        folder = self.remote / BATCHES[0] / BATCHES[1] / name
        record = self._record(name)
        # Write-once: a recorded batch's objects are never written again. This check
        # keeps a second writer (under the writer lock, a later run) from touching them;
        # the record's create-if-absent below settles writers that race past it.
        if object_exists(fs, record):
            if missing_ok:
                return folder
            raise BatchAlreadyRecorded(name)
        for table, frame in tables.items():
            if table == RECORD_TABLE:
                continue
            # Plain writes: an object already under this name is a leftover of a publish
            # that was cut short (no record, so no reader sees it); it is replaced whole.
            data = self._parquet_bytes(frame)
            write_object(fs, folder.path(f"{table}.parquet"), data, exclusive=False)
            del data
            crash_point("while-writing-parquet")
        crash_point("before-publish")
        if not write_object(fs, record, self._parquet_bytes(tables[RECORD_TABLE]), exclusive=True):
            if missing_ok:
                return folder
            raise BatchAlreadyRecorded(name)
        return folder

    def _parquet_bytes(self, table: Table) -> bytes:
        """A table as one object's bytes. A table read from files (a partitioned
        batch's) is encoded to a local file first, as it is read: only its encoded
        bytes are held, never the table."""
        if isinstance(table, pl.DataFrame):
            return parquet_bytes(table)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        aside = self.staging_dir / f"object-{uuid.uuid4().hex}.parquet"
        try:
            write_table(table, aside)
            return aside.read_bytes()
        finally:
            aside.unlink(missing_ok=True)

    def record_skip(self, run_id: str, batch_id: str, record: pl.DataFrame) -> RemoteLocation:
        data = parquet_bytes(record)
        skips = self.remote / SKIPS[0] / SKIPS[1]
        for n in itertools.count():
            suffix = f"-{n}" if n else ""
            target = skips / f"{run_id}-{batch_id}{suffix}.parquet"
            if write_object(self.remote.fs, target.root, data, exclusive=True):
                return target
        raise AssertionError("unreachable")  # pragma: no cover

    def quarantine(self, batch_id: str, name: str, data: bytes, reason: str) -> RemoteLocation:
        fs = self.remote.fs
        folder = self.remote / QUARANTINE / batch_id
        marker = folder.path(REASON_FILE)
        if object_exists(fs, marker):
            return folder  # kept before: never overwritten
        # Same batch id and name means the same bytes: an object left by a quarantine
        # that was cut short before its reason was written is kept as it is.
        write_object(fs, folder.path(PurePosixPath(name).name), data, exclusive=True)
        write_object(fs, marker, quarantine_reason(name, reason).encode(), exclusive=True)
        return folder

    # -- helpers -------------------------------------------------------------------------

    def _record(self, batch_id: str) -> str:
        return self.remote.path(*BATCHES, batch_id, f"{RECORD_TABLE}.parquet")

    def _sql_glob(self, *parts: str) -> str:
        """An SQL literal of a glob below the lake: the lake's own URL escaped."""
        return sql_text(f"{glob_escape(self.remote.full_url())}/{'/'.join(parts)}")

    def _scan(self, objects: list[str], table: str) -> pl.LazyFrame:
        """A lazy frame over the given Parquet objects with the table's schema (missing
        columns as nulls, as `missing_columns="insert"` does for local files)."""
        if not objects:
            return empty_scan(table)
        # Imported here: only remote lakes read through pyarrow's dataset API.
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        schema = pl.DataFrame(schema=TABLE_SCHEMAS[table]).to_arrow().schema
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(self.remote.fs))
        dataset = ds.dataset(objects, schema=schema, format="parquet", filesystem=filesystem)
        return pl.scan_pyarrow_dataset(dataset)


def _relative_parts(objects: Sequence[str], prefix: str) -> list[tuple[str, ...]]:
    """Each object's path below `prefix`, split into its parts."""
    base = prefix.rstrip("/") + "/"
    return [PurePosixPath(o[len(base) :]).parts for o in objects if o.startswith(base)]
