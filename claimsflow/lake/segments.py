"""Segments: the log's `cases` and `decisions` tables compacted for the history reads,
so that a batch's cost does not grow with the number of batches recorded before it.

Every batch is a folder of its own (claimsflow/lake/layout.py): after a year of
nights a log holds ~10,000 of them, and a history read that opens every batch's
files spends its time opening files, ~2 ms per recorded batch per read (issue 18,
item 12). The history reads (claimsflow/lake/history.py) read instead

    derived/segments/L<level>-<seq>/cases.parquet, decisions.parquet, batches.json
    + the batch folders no segment holds yet (the tail)

A segment is derived data, never an event: it holds, row for row, the `cases` and
`decisions` of the batches listed in its `batches.json`, and can be deleted and
rebuilt at any time (`rebuild_segments`). The events stay where they are.

Compaction is an LSM tree of fan-out FANOUT: once FANOUT batches are in the tail
they become one level-1 segment; once FANOUT segments of level n exist they become
one of level n+1. A read then opens fewer than FANOUT files per level plus fewer than
FANOUT tail batches: for 10,000 batches and a fan-out of 32, ~60 files instead of
10,000, and each batch's rows are rewritten once per level (log_32 of the batches).

Segments are written aside and renamed into place (whole or not at all), under the
writer lock, like a batch. The segments a merge replaced are deleted after the merged
one is in place; a crash in between leaves both, and a segment whose batches a
higher-level one holds is never read (and is deleted by the next compaction). Only
local lakes have segments: an object store's reads stay per batch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from claimsflow.lake.folder import FolderLake, fsync_path
from claimsflow.lake.layout import EMPTY_BATCH, ROW_GROUP_ROWS, TABLE_SCHEMAS, ZSTD_LEVEL

#: Batches (or segments of one level) that are compacted together.
FANOUT: Final = 32
#: The tables the history reads.
SEGMENT_TABLES: Final = ("cases", "decisions")
SEGMENTS: Final = ("derived", "segments")
_NAME = re.compile(r"^L(\d+)-(\d{8})$")
_MANIFEST = "batches.json"


@dataclass(frozen=True)
class Segment:
    folder: Path
    level: int
    seq: int
    batch_ids: frozenset[str]

    def file(self, table: str) -> str:
        return str(self.folder / f"{table}.parquet")


def segments_dir(lake: FolderLake) -> Path:
    return lake.root.joinpath(*SEGMENTS)


def segments(lake: FolderLake) -> list[Segment]:
    """Every complete segment of the lake, highest level first (then newest first)."""
    found: list[Segment] = []
    try:
        entries = list(os.scandir(segments_dir(lake)))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or not entry.is_dir():
            continue
        try:
            ids = json.loads((Path(entry.path) / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # pragma: no cover - renamed in whole, so complete
            continue
        found.append(Segment(Path(entry.path), int(match[1]), int(match[2]), frozenset(ids)))
    return sorted(found, key=lambda s: (-s.level, -s.seq))


def live_segments(lake: FolderLake) -> tuple[list[Segment], list[Segment]]:
    """The segments a read uses, and those a higher-level one supersedes (left by a
    merge cut short): no batch is ever read twice."""
    live: list[Segment] = []
    superseded: list[Segment] = []
    held: set[str] = set()
    for segment in segments(lake):
        if segment.batch_ids <= held:
            superseded.append(segment)
        else:
            live.append(segment)
            held |= segment.batch_ids
    return live, superseded


def history_files(lake: FolderLake) -> dict[str, list[str]]:
    """Each SEGMENT_TABLES table's files for a history read: the live segments, then
    the batches no segment holds (the empty pseudo-batch included, so no list is
    empty). One listing of the log for both tables."""
    live, _superseded = live_segments(lake)
    held = set().union(*(s.batch_ids for s in live)) if live else set()
    tail = [b for b in lake.recorded_batch_ids() if b not in held]
    return {
        table: [s.file(table) for s in live] + lake.table_files(table, tail)
        for table in SEGMENT_TABLES
    }


def compact(lake: FolderLake, fanout: int | None = None) -> int:
    """Fold the tail into level-1 segments and full levels into the next one (under
    the writer lock). Returns the number of segments written."""
    fanout = fanout or FANOUT
    live, superseded = live_segments(lake)
    for segment in superseded:
        shutil.rmtree(segment.folder, ignore_errors=True)
    held = set().union(*(s.batch_ids for s in live)) if live else set()
    tail = [b for b in lake.recorded_batch_ids() if b not in held and b != EMPTY_BATCH]
    written = 0
    seq = max((s.seq for s in live), default=0)
    while len(tail) >= fanout:
        group, tail = tail[:fanout], tail[fanout:]
        seq += 1
        _write_segment(lake, 1, seq, group, {t: lake.table_files(t, group) for t in SEGMENT_TABLES})
        written += 1
    level = 1
    while level <= max((s.level for s in segments(lake)), default=0):
        at_level = sorted((s for s in segments(lake) if s.level == level), key=lambda s: s.seq)
        while len(at_level) >= fanout:
            merged, at_level = at_level[:fanout], at_level[fanout:]
            seq += 1
            ids = sorted(set().union(*(s.batch_ids for s in merged)))
            files = {t: [s.file(t) for s in merged] for t in SEGMENT_TABLES}
            _write_segment(lake, level + 1, seq, ids, files)
            for segment in merged:  # the new segment holds their batches now
                shutil.rmtree(segment.folder, ignore_errors=True)
            written += 1
        level += 1
    return written


def rebuild_segments(lake: FolderLake, fanout: int | None = None) -> int:
    """Delete every segment and compact the log again (segments are derived data)."""
    shutil.rmtree(segments_dir(lake), ignore_errors=True)
    return compact(lake, fanout)


def _write_segment(
    lake: FolderLake,
    level: int,
    seq: int,
    batch_ids: Sequence[str],
    files: dict[str, list[str]],
) -> Path:
    target = segments_dir(lake) / f"L{level}-{seq:08d}"
    aside = lake.staging_dir / f"segment-{target.name}.{uuid.uuid4().hex}"
    aside.mkdir(parents=True)
    try:
        for table, inputs in files.items():
            path = aside / f"{table}.parquet"
            pl.scan_parquet(
                inputs, schema=TABLE_SCHEMAS[table], missing_columns="insert", glob=False
            ).sink_parquet(
                path,
                compression="zstd",
                compression_level=ZSTD_LEVEL,
                row_group_size=ROW_GROUP_ROWS,
                statistics=True,
            )
            fsync_path(path)
        manifest = aside / _MANIFEST
        manifest.write_text(json.dumps(sorted(batch_ids)), encoding="utf-8")
        fsync_path(manifest)
        fsync_path(aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(aside, target)
        fsync_path(target.parent)
        return target
    finally:
        if aside.exists():
            shutil.rmtree(aside, ignore_errors=True)
