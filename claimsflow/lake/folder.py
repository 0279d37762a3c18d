"""A lake in a local folder: rename-based publication, hard-linked skips, a local
catalog file and writer lock (docs/reliability.md).

A batch folder is written in `_staging/` and renamed into place in one step, so a
reader sees all of a batch or none of it, and a batch id can be recorded once.
Nothing here rewrites or deletes a recorded file.

No path of the lake ever reaches Polars or DuckDB as a glob pattern it did not mean:
Polars reads explicit file lists (`glob=False`), and DuckDB's views glob only the
batch folder's name, below the lake's path with its glob characters escaped (a lake
under `/srv/lake[1]` or `/data/*new*` is read like any other).
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from claimsflow.faults import crash_point
from claimsflow.lake.layout import (
    BATCHES,
    EMPTY_BATCH,
    QUARANTINE,
    REASON_FILE,
    SKIPS,
    TABLE_SCHEMAS,
    BatchAlreadyRecorded,
    LogSize,
    Table,
    empty_scan,
    empty_tables,
    quarantine_reason,
    write_table,
)
from claimsflow.lake.storage import glob_escape, sql_text

STAGING = "_staging"


@dataclass(frozen=True)
class FolderLake:
    """The event log in the local folder `root` (see claimsflow/lake/layout.py)."""

    root: Path

    @property
    def location(self) -> Path:
        return self.root

    @property
    def batches_dir(self) -> Path:
        return self.root.joinpath(*BATCHES)

    @property
    def skips_dir(self) -> Path:
        return self.root.joinpath(*SKIPS)

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE

    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING

    @property
    def state_dir(self) -> Path:
        """Where the writer lock and the catalog file live: the lake itself."""
        return self.root

    # -- what is there ---------------------------------------------------------------

    def has_event_log(self) -> bool:
        return (self.batches_dir / EMPTY_BATCH).is_dir()

    def batch_recorded(self, batch_id: str) -> bool:
        return (self.batches_dir / batch_id).is_dir()

    def recorded_batch_ids(self) -> list[str]:
        try:
            with os.scandir(self.batches_dir) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []  # no event log: nothing recorded (and nothing created)

    # -- reads -------------------------------------------------------------------------

    def table_files(self, table: str, batch_ids: Sequence[str] | None = None) -> list[str]:
        ids = self.recorded_batch_ids() if batch_ids is None else batch_ids
        folder = self.batches_dir
        return [str(folder / b / f"{table}.parquet") for b in ids]

    def scan(self, table: str, batch_ids: Sequence[str] | None = None) -> pl.LazyFrame:
        return scan_files(self.table_files(table, batch_ids), table)

    def skip_files(self) -> list[str]:
        try:
            with os.scandir(self.skips_dir) as entries:
                names = sorted(e.name for e in entries if e.name.endswith(".parquet"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [str(self.skips_dir / name) for name in names]

    def scan_skips(self) -> pl.LazyFrame:
        return scan_files(self.skip_files(), "batch")

    # -- DuckDB ------------------------------------------------------------------------

    def sql_table(self, table: str) -> str:
        """A FROM item reading one event table's rows in the whole log."""
        root = self.root.resolve()
        if _globs_cannot_name(root):
            return _read_parquet_list(
                [str(root.joinpath(*BATCHES, b, f"{table}.parquet")) for b in self._ids(root)]
            )
        pattern = f"{glob_escape(str(root))}/{'/'.join(BATCHES)}/*/{table}.parquet"
        return f"read_parquet({sql_text(pattern)}, union_by_name = true)"

    def sql_skips(self) -> str:
        root = self.root.resolve()
        if _globs_cannot_name(root):
            return _read_parquet_list(FolderLake(root).skip_files())
        pattern = f"{glob_escape(str(root))}/{'/'.join(SKIPS)}/*.parquet"
        return f"read_parquet({sql_text(pattern)}, union_by_name = true)"

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Nothing to register: DuckDB reads local files itself."""

    def allowed_directories(self) -> list[str]:
        root = str(self.root.resolve())
        # DuckDB checks a glob's text against this list: the escaped spelling of the
        # lake's path is the lake too (its bracket classes match exactly one name).
        return list(dict.fromkeys([root, glob_escape(root)]))

    def log_size(self) -> LogSize:
        total = files = 0
        for folder, _dirs, names in os.walk(self.root / BATCHES[0]):
            for name in names:
                try:
                    total += (Path(folder) / name).stat().st_size
                except FileNotFoundError:  # pragma: no cover - nothing is deleted
                    continue
                files += 1
        batches = [b for b in self.recorded_batch_ids() if b != EMPTY_BATCH]
        return LogSize(total, files, len(batches))

    # -- writes (under the writer lock) ----------------------------------------------

    def ensure(self) -> None:
        """Create the lake's folders and the empty pseudo-batch readers' globs rely on."""
        for folder in (self.batches_dir, self.skips_dir, self.quarantine_dir, self.staging_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if not (self.batches_dir / EMPTY_BATCH).exists():
            self.publish(EMPTY_BATCH, empty_tables(), missing_ok=True)
        empty_skips = self.skips_dir / f"{EMPTY_BATCH}.parquet"
        if not empty_skips.exists():
            self._write_atomically(pl.DataFrame(schema=TABLE_SCHEMAS["batch"]), empty_skips)

    def clean_staging(self) -> int:
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

    def publish(self, name: str, tables: Mapping[str, Table], *, missing_ok: bool) -> Path:
        target = self.batches_dir / name
        aside = self.staging_dir / f"{name}.{uuid.uuid4().hex}"
        aside.mkdir(parents=True)
        try:
            for table, frame in tables.items():
                path = aside / f"{table}.parquet"
                write_table(frame, path)
                fsync_path(path)
                crash_point("while-writing-parquet")
            fsync_path(aside)
            crash_point("before-publish")
            try:
                os.rename(aside, target)
            except OSError as exc:
                if target.exists():
                    if missing_ok:
                        return target
                    raise BatchAlreadyRecorded(name) from exc
                raise
            fsync_path(target.parent)
            return target
        finally:
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)

    def record_skip(self, run_id: str, batch_id: str, record: pl.DataFrame) -> Path:
        aside = self._write_aside(record, f"skip-{batch_id}")
        try:
            for n in itertools.count():
                suffix = f"-{n}" if n else ""
                target = self.skips_dir / f"{run_id}-{batch_id}{suffix}.parquet"
                if _link_new(aside, target):
                    return target
        finally:
            aside.unlink(missing_ok=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def quarantine(self, batch_id: str, name: str, data: bytes, reason: str) -> Path:
        target = self.quarantine_dir / batch_id
        if target.exists():
            return target
        aside = self.staging_dir / f"q-{batch_id}-{uuid.uuid4().hex}"
        aside.mkdir(parents=True)
        (aside / Path(name).name).write_bytes(data)
        (aside / REASON_FILE).write_text(quarantine_reason(name, reason), encoding="utf-8")
        try:
            os.rename(aside, target)
        except OSError:
            shutil.rmtree(aside, ignore_errors=True)  # kept already by a concurrent run
        return target

    # -- helpers -------------------------------------------------------------------------

    def _ids(self, root: Path) -> list[str]:
        return FolderLake(root).recorded_batch_ids()

    def _write_atomically(self, frame: pl.DataFrame, target: Path) -> None:
        """Write `target` whole or not at all; an existing file is left as it is."""
        aside = self._write_aside(frame, target.name)
        try:
            _link_new(aside, target)
        finally:
            aside.unlink(missing_ok=True)

    def _write_aside(self, frame: pl.DataFrame, stem: str) -> Path:
        aside = self.staging_dir / f"{stem}.{uuid.uuid4().hex}"
        frame.write_parquet(aside, compression="zstd")
        fsync_path(aside)
        return aside


def scan_files(files: list[str], table: str) -> pl.LazyFrame:
    """A lazy frame over exactly these Parquet files: no glob expansion of their names."""
    if not files:
        return empty_scan(table)
    return pl.scan_parquet(files, schema=TABLE_SCHEMAS[table], missing_columns="insert", glob=False)


def _globs_cannot_name(root: Path) -> bool:
    """DuckDB's glob takes a backslash for a path separator, whatever the platform: no
    pattern can name a folder under such a path, so its files are named one by one."""
    return "\\" in str(root)


def _read_parquet_list(files: list[str]) -> str:
    listed = ", ".join(sql_text(f) for f in files)
    return f"read_parquet([{listed}], union_by_name = true)"


def _link_new(aside: Path, target: Path) -> bool:
    """Make `aside` visible as `target` in one step, unless `target` exists.

    Unlike rename, a hard link never replaces an existing file: False then.
    """
    try:
        os.link(aside, target)
    except FileExistsError:
        return False
    fsync_path(target.parent)
    return True


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
