"""The inbox archive (issue 19.7): a recorded batch's file moved out of the inbox,
nothing in the archive ever replaced, and each move recorded in the lake."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from claimsflow.ingest.archive import archive_file, read_moves, record_move

NIGHT = dt.datetime(2025, 1, 15, 2, 30, tzinfo=dt.UTC)
BATCH_ID = "ab" * 32


def test_a_file_moves_to_a_folder_per_day(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(b"case_id\nC1\n")
    target = archive_file(inbox / "a.csv", tmp_path / "archive", BATCH_ID, NIGHT)
    assert target == tmp_path / "archive" / "2025-01-15" / "a.csv"
    assert target.read_bytes() == b"case_id\nC1\n"
    assert list(inbox.iterdir()) == []


def test_a_name_already_archived_is_never_replaced(tmp_path: Path) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    day = archive / "2025-01-15"
    day.mkdir(parents=True)
    (day / "a.csv").write_bytes(b"earlier\n")
    (inbox / "a.csv").write_bytes(b"first\n")
    first = archive_file(inbox / "a.csv", archive, BATCH_ID, NIGHT)
    assert first == day / "a.abababababab.csv"
    (inbox / "a.csv").write_bytes(b"second\n")  # the same name and batch id again
    second = archive_file(inbox / "a.csv", archive, BATCH_ID, NIGHT)
    assert second == day / "a.abababababab.2.csv"
    assert [(p.name, p.read_bytes()) for p in sorted(day.iterdir())] == [
        ("a.abababababab.2.csv", b"second\n"),
        ("a.abababababab.csv", b"first\n"),
        ("a.csv", b"earlier\n"),
    ]


def test_each_move_is_recorded_in_the_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake[1]"  # glob characters in the lake's path
    for n, status in enumerate(("PROCESSED", "SKIPPED")):
        record_move(
            lake,
            run_id="run-1",
            batch_id=BATCH_ID,
            status=status,
            source=f"a{n}.csv",
            archived_to=tmp_path / "archive" / f"a{n}.csv",
            moved_at=NIGHT + dt.timedelta(seconds=n),
        )
    moves = read_moves(lake)
    assert moves.select("source", "status", "run_id").rows() == [
        ("a0.csv", "PROCESSED", "run-1"),
        ("a1.csv", "SKIPPED", "run-1"),
    ]
    assert moves["archived_to"].to_list() == [
        str(tmp_path / "archive" / "a0.csv"),
        str(tmp_path / "archive" / "a1.csv"),
    ]
    assert not [p for p in (lake / "archive").iterdir() if p.name.startswith(".")]
