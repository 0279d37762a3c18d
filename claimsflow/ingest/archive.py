"""The inbox archive (issue 19.7, spec §1 allows it): `--archive DIR`, off by default.

A batch file is moved out of the inbox only after its batch is recorded durably
(PROCESSED or REJECTED: its events published and synced; SKIPPED: its skip record
written), so a crash never loses a file whose outcome is not in the log. The move
goes to `DIR/<run date>/<name>` (a name already there gets the batch id's first 12
digits before its extension; nothing in the archive is ever replaced), and is then
recorded in the lake under `archive/` as one small Parquet file per move: what was
moved, where to, when, by which run, and the batch's status.

A crash between the move and its record leaves the file archived without a record:
nothing is lost (the batch is in the log; the file is in the archive) and nothing is
decided twice (the file is no longer in the inbox).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from claimsflow.lake.folder import fsync_path

ARCHIVE_LOG = "archive"


@dataclass(frozen=True)
class ArchivedFile:
    source: str
    archived_to: Path


def archive_file(source: Path, archive: Path, batch_id: str, moved_at: dt.datetime) -> Path:
    """Move `source` into `archive` without replacing anything; return where it went."""
    folder = archive / moved_at.astimezone(dt.UTC).date().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if target.exists() or target.is_symlink():
        target = folder / f"{source.stem}.{batch_id[:12]}{source.suffix}"
    counter = 1
    while target.exists() or target.is_symlink():  # the same bytes archived again today
        counter += 1
        target = folder / f"{source.stem}.{batch_id[:12]}.{counter}{source.suffix}"
    try:
        # A hard link then an unlink: never replaces a file that appeared meanwhile.
        os.link(source, target)
        os.unlink(source)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        shutil.copy2(source, target)  # another filesystem (or no hard links): copy
        fsync_path(target)
        os.unlink(source)
    fsync_path(folder)
    fsync_path(source.parent)
    return target


def record_move(
    lake: Path,
    *,
    run_id: str,
    batch_id: str,
    status: str,
    source: str,
    archived_to: Path,
    moved_at: dt.datetime,
) -> Path:
    """Append one move to the lake's archive log (a file of its own, written aside)."""
    folder = lake / ARCHIVE_LOG
    folder.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        {
            "batch_id": [batch_id],
            "source": [source],
            "status": [status],
            "archived_to": [str(archived_to)],
            "moved_at": [moved_at],
            "run_id": [run_id],
        },
        schema={
            "batch_id": pl.String,
            "source": pl.String,
            "status": pl.String,
            "archived_to": pl.String,
            "moved_at": pl.Datetime("us", "UTC"),
            "run_id": pl.String,
        },
    )
    name = f"{run_id}-{batch_id[:16]}-{uuid.uuid4().hex[:8]}.parquet"
    aside = folder / f".{name}.tmp"
    frame.write_parquet(aside)
    fsync_path(aside)
    os.replace(aside, folder / name)
    fsync_path(folder)
    return folder / name


def read_moves(lake: Path) -> pl.DataFrame:
    """Every recorded move, oldest first (empty frame when none)."""
    files = sorted((lake / ARCHIVE_LOG).glob("*.parquet")) if (lake / ARCHIVE_LOG).is_dir() else []
    if not files:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(f, glob=False) for f in files]).sort("moved_at")
