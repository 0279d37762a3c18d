"""The append-only Parquet event log (spec §6, §7).

Layout under the lake directory:

    events/batches/<batch_id>/   one folder per batch ever recorded, holding
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
    _staging/                    work in progress, invisible to readers

A batch folder is written in `_staging/` and renamed into place in one step, so a
reader sees all of a batch or none of it, and a batch id can be recorded once.
Nothing here rewrites or deletes a recorded file.

On an object store (a `RemoteLocation`: s3://, gs://, memory://, ...) there is no
rename and no folder, so the same layout is published object by object, each object
written once under its final name (docs/object-storage.md):

    events/batches/<batch_id>/<table>.parquet   the four other tables first, then
    events/batches/<batch_id>/batch.parquet     the batch record, last: the commit
                                 marker, created only if absent (S3 If-None-Match)
    events/skips/<run>-<batch_id>[-<n>].parquet  created only if absent
    quarantine/<batch_id>/<file name>, then reason.txt (the marker), only if absent

Readers (scan_table, batch_recorded, the catalog's views) see a batch only once its
batch record exists. A publish cut short leaves table objects without a record:
readers ignore them, and publishing the same batch again overwrites them (the only
objects ever overwritten are ones no reader can see). There is no `_staging/` in the
store; `staging_dir` of a remote lake is a local folder for work in progress.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Final, TypeVar, cast

import polars as pl

from claimsflow.faults import crash_point
from claimsflow.storage import (
    Location,
    RemoteLocation,
    list_objects,
    local_state,
    object_exists,
    write_object,
)

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
        "annual_deductible_cents": pl.Int64(),
        "coinsurance_percent": pl.Int64(),
        "fee_allowed_cents": pl.Int64(),
        "ruleset_name": pl.String(),
        "ruleset_version": pl.String(),
        "ruleset_parameters_hash": pl.String(),
        "decided_at": UTC_TS,
        "run_id": pl.String(),
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

#: A lake of either kind; the functions that return where they wrote return the same kind.
L = TypeVar("L", bound=Location)


class BatchAlreadyRecorded(Exception):
    """Another run recorded this batch id first."""


def batches_dir(lake: Path) -> Path:
    return lake / "events" / "batches"


def skips_dir(lake: Path) -> Path:
    return lake / "events" / "skips"


def quarantine_dir(lake: Path) -> Path:
    return lake / "quarantine"


def staging_dir(lake: Location) -> Path:
    """Local work in progress: in the lake, or for a remote lake in its local state folder."""
    if isinstance(lake, RemoteLocation):
        return local_state(lake) / "_staging"
    return lake / "_staging"


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with exactly the table's columns, in order and of its types."""
    schema = TABLE_SCHEMAS[table]
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns]
    return frame.with_columns(missing).select(pl.col(c).cast(t) for c, t in schema.items())


def ensure_lake(lake: Location) -> None:
    """Create the lake's folders and the empty pseudo-batch readers' globs rely on."""
    if isinstance(lake, RemoteLocation):
        _ensure_remote(lake)
        return
    for folder in (batches_dir(lake), skips_dir(lake), quarantine_dir(lake), staging_dir(lake)):
        folder.mkdir(parents=True, exist_ok=True)
    if not (batches_dir(lake) / EMPTY_BATCH).exists():
        empty = {t: pl.DataFrame(schema=s) for t, s in TABLE_SCHEMAS.items()}
        _publish_folder(lake, EMPTY_BATCH, empty, missing_ok=True)
    empty_skips = skips_dir(lake) / f"{EMPTY_BATCH}.parquet"
    if not empty_skips.exists():
        _write_parquet_atomically(pl.DataFrame(schema=TABLE_SCHEMAS["batch"]), empty_skips, lake)


def clean_staging(lake: Location) -> int:
    """Remove work a killed run left half-done; call only while holding the writer lock.

    For a remote lake that is its local work folder only: objects in the store are
    never deleted (a half-published batch is invisible and is overwritten when the
    batch is published again; deleting could race a writer on another machine).
    """
    removed = 0
    for leftover in staging_dir(lake).glob("*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def batch_recorded(lake: Location, batch_id: str) -> bool:
    if isinstance(lake, RemoteLocation):
        return object_exists(lake.fs, _record_object(lake, batch_id))
    return (batches_dir(lake) / batch_id).is_dir()


def has_event_log(lake: Location) -> bool:
    """Whether `lake` holds an event log (ensure_lake ran on it)."""
    if isinstance(lake, RemoteLocation):
        return object_exists(lake.fs, _record_object(lake, EMPTY_BATCH))
    return (batches_dir(lake) / EMPTY_BATCH).is_dir()


def record_batch(lake: L, batch_id: str, tables: dict[str, pl.DataFrame]) -> L:
    """Write one batch's event tables and make them visible at once."""
    unknown = set(tables) - set(BATCH_TABLES)
    if unknown:
        raise ValueError(f"unknown event tables: {sorted(unknown)}")
    full = {
        t: conform(t, tables.get(t, pl.DataFrame(schema=TABLE_SCHEMAS[t]))) for t in BATCH_TABLES
    }
    if isinstance(lake, RemoteLocation):
        return cast(L, _publish_remote(lake, batch_id, full, missing_ok=False))
    return cast(L, _publish_folder(cast(Path, lake), batch_id, full, missing_ok=False))


def record_skip(lake: L, run_id: str, record: pl.DataFrame) -> L:
    """Append a SKIPPED batch record (a file of its own, written aside then linked in).

    A run can skip the same bytes more than once (copies under several names):
    each skip gets a file of its own, and no earlier record is ever replaced.
    """
    batch_id = record["batch_id"][0]
    if isinstance(lake, RemoteLocation):
        return cast(L, _record_skip_remote(lake, run_id, batch_id, conform("batch", record)))
    local = cast(Path, lake)
    aside = _write_aside(conform("batch", record), local, f"skip-{batch_id}")
    try:
        for n in itertools.count():
            suffix = f"-{n}" if n else ""
            target = skips_dir(local) / f"{run_id}-{batch_id}{suffix}.parquet"
            if _link_new(aside, target):
                return cast(L, target)
    finally:
        aside.unlink(missing_ok=True)
    raise AssertionError("unreachable")  # pragma: no cover


def quarantine(lake: L, batch_id: str, name: str, data: bytes, reason: str) -> L:
    """Keep an unreadable file verbatim with its reason; never overwrite one kept before."""
    if isinstance(lake, RemoteLocation):
        return cast(L, _quarantine_remote(lake, batch_id, name, data, reason))
    local = cast(Path, lake)
    target = quarantine_dir(local) / batch_id
    if target.exists():
        return cast(L, target)
    aside = staging_dir(local) / f"q-{batch_id}-{uuid.uuid4().hex}"
    aside.mkdir(parents=True)
    (aside / Path(name).name).write_bytes(data)
    (aside / "reason.txt").write_text(f"{name}: {reason}\n", encoding="utf-8")
    try:
        os.rename(aside, target)
    except OSError:
        shutil.rmtree(aside, ignore_errors=True)  # kept already by a concurrent run
    return cast(L, target)


def scan_table(lake: Location, table: str) -> pl.LazyFrame:
    """Every recorded row of one event table (the empty pseudo-batch included).

    On a remote lake: the table objects of the batches committed when this is called.
    """
    ensure_lake(lake)
    if isinstance(lake, RemoteLocation):
        return _scan_objects(lake, committed_table_objects(lake, table), table)
    pattern = str(batches_dir(lake) / "*" / f"{table}.parquet")
    return pl.scan_parquet(pattern, schema=TABLE_SCHEMAS[table], missing_columns="insert")


def scan_skips(lake: Location) -> pl.LazyFrame:
    ensure_lake(lake)
    if isinstance(lake, RemoteLocation):
        return _scan_objects(lake, skip_objects(lake), "batch")
    pattern = str(skips_dir(lake) / "*.parquet")
    return pl.scan_parquet(pattern, schema=TABLE_SCHEMAS["batch"], missing_columns="insert")


def recorded_batch_ids(lake: Location) -> list[str]:
    """Ids of the batches `scan_table` reads (the empty pseudo-batch included), sorted."""
    ensure_lake(lake)
    if isinstance(lake, RemoteLocation):
        return committed_batch_ids(lake)
    return sorted(entry.name for entry in batches_dir(lake).iterdir() if entry.is_dir())


def scan_batches(lake: Location, table: str, batch_ids: Sequence[str]) -> pl.LazyFrame:
    """The rows of one event table that the given recorded batches hold.

    For reads that join two tables: joined a few recorded batches at a time, a join
    holds those batches in memory, not the whole log (claimsflow/history.py).
    """
    if isinstance(lake, RemoteLocation):
        names = [lake.path("events", "batches", b, f"{table}.parquet") for b in batch_ids]
        return _scan_objects(lake, names, table)
    paths = [batches_dir(lake) / b / f"{table}.parquet" for b in batch_ids]
    return pl.scan_parquet(paths, schema=TABLE_SCHEMAS[table], missing_columns="insert")


def _publish_folder(
    lake: Path, name: str, tables: dict[str, pl.DataFrame], *, missing_ok: bool
) -> Path:
    target = batches_dir(lake) / name
    aside = staging_dir(lake) / f"{name}.{uuid.uuid4().hex}"
    aside.mkdir(parents=True)
    try:
        for table, frame in tables.items():
            path = aside / f"{table}.parquet"
            # The streaming sink encodes row groups in parallel: ~1.5x faster than
            # write_parquet on a 10M-row table; same columns, types and statistics.
            frame.lazy().sink_parquet(
                path,
                compression="zstd",
                compression_level=ZSTD_LEVEL,
                row_group_size=ROW_GROUP_ROWS,
                statistics=True,
            )
            _fsync(path)
            crash_point("while-writing-parquet")
        _fsync(aside)
        crash_point("before-publish")
        try:
            os.rename(aside, target)
        except OSError as exc:
            if target.exists():
                if missing_ok:
                    return target
                raise BatchAlreadyRecorded(name) from exc
            raise
        _fsync(target.parent)
        return target
    finally:
        if aside.exists():
            shutil.rmtree(aside, ignore_errors=True)


def _write_parquet_atomically(frame: pl.DataFrame, target: Path, lake: Path) -> None:
    """Write `target` whole or not at all; an existing file is left as it is."""
    aside = _write_aside(frame, lake, target.name)
    try:
        _link_new(aside, target)
    finally:
        aside.unlink(missing_ok=True)


def _write_aside(frame: pl.DataFrame, lake: Path, stem: str) -> Path:
    aside = staging_dir(lake) / f"{stem}.{uuid.uuid4().hex}"
    frame.write_parquet(aside, compression="zstd")
    _fsync(aside)
    return aside


def _link_new(aside: Path, target: Path) -> bool:
    """Make `aside` visible as `target` in one step, unless `target` exists.

    Unlike rename, a hard link never replaces an existing file: False then.
    """
    try:
        os.link(aside, target)
    except FileExistsError:
        return False
    _fsync(target.parent)
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- object stores -------------------------------------------------------------------
# No rename, no hard link, no folder: each object is written once under its final
# name, and a batch becomes visible when its record object (written last) exists.


def committed_batch_ids(lake: RemoteLocation) -> list[str]:
    """Ids of the batches whose record exists (the empty pseudo-batch included), sorted."""
    prefix = lake.path("events", "batches")
    return sorted(
        parts[0]
        for parts in _relative_parts(list_objects(lake.fs, prefix), prefix)
        if parts[1:] == (f"{RECORD_TABLE}.parquet",)
    )


def committed_table_objects(lake: RemoteLocation, table: str) -> list[str]:
    """Object paths of one table, for committed batches only (one listing of the log)."""
    prefix = lake.path("events", "batches")
    present: dict[str, set[str]] = {}
    for parts in _relative_parts(list_objects(lake.fs, prefix), prefix):
        if len(parts) == 2:
            present.setdefault(parts[0], set()).add(parts[1])
    name = f"{table}.parquet"
    return [
        f"{prefix}/{batch_id}/{name}"
        for batch_id, names in sorted(present.items())
        if f"{RECORD_TABLE}.parquet" in names and name in names
    ]


def skip_objects(lake: RemoteLocation) -> list[str]:
    prefix = lake.path("events", "skips")
    return [
        f"{prefix}/{parts[0]}"
        for parts in _relative_parts(list_objects(lake.fs, prefix), prefix)
        if len(parts) == 1 and parts[0].endswith(".parquet")
    ]


def remote_log_size(lake: RemoteLocation) -> tuple[int, int, int]:
    """Bytes and objects under events/ (leftovers of a cut-short publish included, as
    they take space), and committed batches (not `_empty`)."""
    fs = lake.fs
    fs.invalidate_cache()
    try:
        found = fs.find(lake.path("events"), detail=True)
    except FileNotFoundError:
        found = {}
    total = sum(int(info.get("size") or 0) for info in found.values())
    batches = [b for b in committed_batch_ids(lake) if b != EMPTY_BATCH]
    return total, len(found), len(batches)


def _record_object(lake: RemoteLocation, batch_id: str) -> str:
    return lake.path("events", "batches", batch_id, f"{RECORD_TABLE}.parquet")


def _relative_parts(objects: Sequence[str], prefix: str) -> list[tuple[str, ...]]:
    """Each object's path below `prefix`, split into its parts."""
    base = prefix.rstrip("/") + "/"
    return [PurePosixPath(o[len(base) :]).parts for o in objects if o.startswith(base)]


def _ensure_remote(lake: RemoteLocation) -> None:
    """The empty pseudo-batch and skip file, so the catalog's globs always match."""
    fs = lake.fs
    if not object_exists(fs, _record_object(lake, EMPTY_BATCH)):
        empty = {t: pl.DataFrame(schema=s) for t, s in TABLE_SCHEMAS.items()}
        _publish_remote(lake, EMPTY_BATCH, empty, missing_ok=True)
    empty_skips = lake.path("events", "skips", f"{EMPTY_BATCH}.parquet")
    if not object_exists(fs, empty_skips):
        frame = pl.DataFrame(schema=TABLE_SCHEMAS[RECORD_TABLE])
        write_object(fs, empty_skips, _parquet_bytes(frame), exclusive=True)


def _publish_remote(
    lake: RemoteLocation, name: str, tables: dict[str, pl.DataFrame], *, missing_ok: bool
) -> RemoteLocation:
    fs = lake.fs
    folder = lake / "events" / "batches" / name
    record = _record_object(lake, name)
    # Write-once: a recorded batch's objects are never written again. This check keeps
    # a second writer (under the writer lock, a later run) from touching them; the
    # record's create-if-absent below settles writers that race past it.
    if object_exists(fs, record):
        if missing_ok:
            return folder
        raise BatchAlreadyRecorded(name)
    for table, frame in tables.items():
        if table == RECORD_TABLE:
            continue
        # Plain writes: an object already under this name is a leftover of a publish
        # that was cut short (no record, so no reader sees it); it is replaced whole.
        write_object(fs, folder.path(f"{table}.parquet"), _parquet_bytes(frame), exclusive=False)
        crash_point("while-writing-parquet")
    crash_point("before-publish")
    if not write_object(fs, record, _parquet_bytes(tables[RECORD_TABLE]), exclusive=True):
        if missing_ok:
            return folder
        raise BatchAlreadyRecorded(name)
    return folder


def _record_skip_remote(
    lake: RemoteLocation, run_id: str, batch_id: str, record: pl.DataFrame
) -> RemoteLocation:
    data = _parquet_bytes(record)
    skips = lake / "events" / "skips"
    for n in itertools.count():
        suffix = f"-{n}" if n else ""
        target = skips / f"{run_id}-{batch_id}{suffix}.parquet"
        if write_object(lake.fs, target.root, data, exclusive=True):
            return target
    raise AssertionError("unreachable")  # pragma: no cover


def _quarantine_remote(
    lake: RemoteLocation, batch_id: str, name: str, data: bytes, reason: str
) -> RemoteLocation:
    fs = lake.fs
    folder = lake / "quarantine" / batch_id
    marker = folder.path("reason.txt")
    if object_exists(fs, marker):
        return folder  # kept before: never overwritten
    # Same batch id and name means the same bytes: an object left by a quarantine that
    # was cut short before its reason was written is kept as it is.
    write_object(fs, folder.path(PurePosixPath(name).name), data, exclusive=True)
    write_object(fs, marker, f"{name}: {reason}\n".encode(), exclusive=True)
    return folder


def _scan_objects(lake: RemoteLocation, objects: list[str], table: str) -> pl.LazyFrame:
    """A lazy frame over the given Parquet objects with the table's schema (missing
    columns as nulls, as `missing_columns="insert"` does for local files)."""
    # Imported here: only remote lakes read through pyarrow's dataset API.
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    schema = pl.DataFrame(schema=TABLE_SCHEMAS[table]).to_arrow().schema
    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(lake.fs))
    dataset = ds.dataset(objects, schema=schema, format="parquet", filesystem=filesystem)
    return pl.scan_pyarrow_dataset(dataset)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
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
