"""The log's segments (claimsflow/lake/segments.py): a batch's history reads a number
of files that does not grow with the number of recorded batches (issue 18, item 12),
and reads exactly the rows the batch folders hold."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from bench.year_of_nights import small_batch
from claimsflow.core.history import MemoryHistory
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import validate_batch
from claimsflow.ingest.reading import read_batch_bytes
from claimsflow.lake import eventlog, segments
from claimsflow.lake.folder import FolderLake
from claimsflow.lake.history import LakeHistory
from tests.batch_helpers import case_row, csv_bytes


def year(lake: Path, nights: int, *, fanout: int = 4, compact_each: bool = True) -> None:
    """`nights` small batches recorded (3 cases each), compacted as runs do."""
    eventlog.ensure_lake(lake)
    for night in range(nights):
        eventlog.record_batch(lake, f"night-{night:06d}", small_batch(night))
        if compact_each:
            segments.compact(FolderLake(lake), fanout)


def read_files(lake: Path, table: str) -> list[str]:
    return segments.history_files(FolderLake(lake))[table]


def test_a_history_read_opens_few_files_however_many_batches(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    year(lake, 70)
    # Fan-out 4, 70 batches: 70 = 4 x 17 + 2 -> 17 level-1 segments, folded four at a
    # time: 4 level-2 (16 level-1), folded into 1 level-3; left: 1 level-1 segment and
    # 2 batches in the tail. Files: 1 (L3) + 1 (L1) + 2 + the empty pseudo-batch = 5.
    levels = sorted(s.folder.name[:2] for s in segments.segments(FolderLake(lake)))
    assert levels == ["L1", "L3"]
    assert len(read_files(lake, "decisions")) == 5
    # Every batch folder is still there: segments are derived, the events untouched.
    assert len(eventlog.recorded_batch_ids(lake)) == 71
    # The same rows as the batch folders, each once.
    through_segments = eventlog.scan_history(lake, "cases").collect().sort("case_id")
    folders = eventlog.scan_table(lake, "cases").collect().sort("case_id")
    assert through_segments.height == 70 * 3
    assert through_segments.equals(folders)


def test_a_merge_cut_short_reads_no_batch_twice(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    year(lake, 16)  # 4 level-1 segments, folded into one level-2 segment
    (level2,) = segments.segments(FolderLake(lake))
    assert level2.level == 2
    # The merged segments' copies left behind, as by a crash before their deletion.
    for i, night in enumerate(range(0, 16, 4)):
        ids = [f"night-{n:06d}" for n in range(night, night + 4)]
        segments._write_segment(
            FolderLake(lake),
            1,
            100 + i,
            ids,
            {t: FolderLake(lake).table_files(t, ids) for t in segments.SEGMENT_TABLES},
        )
    live, superseded = segments.live_segments(FolderLake(lake))
    assert ([s.level for s in live], len(superseded)) == ([2], 4)
    assert LakeHistory(lake).decision_count() == 16 * 3
    segments.compact(FolderLake(lake), 4)  # deletes what is superseded
    assert [s.level for s in segments.segments(FolderLake(lake))] == [2]


def test_segments_are_derived_and_rebuilt_the_same(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    year(lake, 9, compact_each=False)
    assert segments.segments(FolderLake(lake)) == []  # nothing compacted yet
    before = eventlog.scan_history(lake, "decisions").collect().sort("case_id")
    assert segments.compact(FolderLake(lake), 4) == 2  # 9 = 4 + 4 + 1 in the tail
    shutil.rmtree(segments.segments_dir(FolderLake(lake)))  # lost: read from the folders
    assert eventlog.scan_history(lake, "decisions").collect().sort("case_id").equals(before)
    assert segments.rebuild_segments(FolderLake(lake), 4) == 2
    assert eventlog.scan_history(lake, "decisions").collect().sort("case_id").equals(before)


def test_the_history_through_segments_is_the_whole_logs(
    tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    """What a batch sees (prior claims, used/spent, statuses) is the same whether the
    log is read through segments or batch by batch."""
    lake = tmp_path / "lake"
    year(lake, 23)
    # Members of the year's batches: M0000003 (night 1), M0000004 (night 1), keys of
    # night 1's cases (its service date), and a case id decided on night 5.
    rows = [
        case_row(
            "N1",
            member_id="M0000003",
            provider_id="P0001",
            service_date="2025-01-02",
            received_date="2025-01-09",
        ),
        case_row("Y000005-1", member_id="M0000016", service_date="2025-01-06"),
    ]
    raw = read_batch_bytes(csv_bytes(rows), "csv")
    cases = validate_batch(raw).cases
    whole = MemoryHistory.of(
        eventlog.scan_table(lake, "decisions")
        .join(eventlog.scan_table(lake, "cases").drop("batch_id"), on="case_id")
        .sort("decided_at")
        .collect()
    )
    seen = LakeHistory(lake).for_batch(cases, ruleset_v1)
    expected = whole.for_batch(cases, ruleset_v1)
    assert seen.prior_claims["case_id"].to_list() == ["Y000001-0"]
    assert sorted(seen.prior_claims.rows(), key=str) == sorted(
        expected.prior_claims.rows(), key=str
    )
    # Night 1's M0000003 case: coinsurance 20.00, no deductible.
    assert seen.accumulated.filter(pl.col("member_id") == "M0000003").rows() == [
        ("M0000003", 2025, 0, 2_000)
    ]
    assert sorted(seen.accumulated.rows()) == sorted(expected.accumulated.rows())
    assert LakeHistory(lake).decided_among(raw["case_id"]).rows() == [("Y000005-1", "APPROVED")]


@pytest.mark.parametrize("fanout", [2, 3])
def test_any_fanout_keeps_every_row_once(tmp_path: Path, fanout: int) -> None:
    lake = tmp_path / "lake"
    year(lake, 11, fanout=fanout)
    ids = eventlog.scan_history(lake, "decisions").collect()["case_id"]
    assert ids.len() == 33 and ids.n_unique() == 33
