"""Append-only, read-only for analysts (issue #7).

`adjudicate query` refuses anything but a query (exit 2, one line, no traceback)
and cannot read outside the lake; the catalog's connection itself is read-only,
confined to the lake and locked. The pipeline never rewrites or deletes a
recorded file: file identities (path, inode, mtime, size) survive every later run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.lake import catalog, eventlog
from claimsflow.pipeline.batch import batch_record
from claimsflow.vocabulary import SKIPPED
from tests.batch_helpers import case_row, csv_bytes, write_reference
from tests.lake_runner import file_identities, run_lake

READ_ONLY = "refused: the catalog is read-only; {} statements are not allowed (only SELECT queries)"
NO_FILES = (
    'Permission Error: Cannot access file "{}" - '
    "file system operations are disabled by configuration"
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("access")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(csv_bytes([case_row("C1"), case_row("C2", units="0")]))
    (inbox / "b.jsonl").write_bytes(b"not json\n")
    lake = root / "lake"
    run_lake(inbox, write_reference(root / "reference"), lake)
    return lake


def refusals(lake: Path) -> list[tuple[str, str]]:
    outside = lake.parent / "reference" / "members.csv"
    return [
        ("INSERT INTO batches VALUES (1)", READ_ONLY.format("INSERT")),
        ("UPDATE batches SET status = 'PROCESSED'", READ_ONLY.format("UPDATE")),
        ("DELETE FROM rejections", READ_ONLY.format("DELETE")),
        ("DROP VIEW case_decisions", READ_ONLY.format("DROP")),
        ("CREATE TABLE t AS SELECT * FROM batches", READ_ONLY.format("CREATE")),
        ("CREATE OR REPLACE VIEW batches AS SELECT 1", READ_ONLY.format("CREATE")),
        ("ALTER VIEW batches RENAME TO b", READ_ONLY.format("ALTER")),
        (f"COPY batches TO '{lake}/events/batches/forged.parquet'", READ_ONLY.format("COPY")),
        (
            f"COPY (SELECT * FROM case_decisions) TO '{lake.parent}/out.csv'",
            READ_ONLY.format("COPY"),
        ),
        (f"COPY batches FROM '{outside}'", READ_ONLY.format("COPY")),
        (f"EXPORT DATABASE '{lake.parent}/export'", READ_ONLY.format("EXPORT")),
        (f"ATTACH '{lake.parent}/other.duckdb' AS other", READ_ONLY.format("ATTACH")),
        ("DETACH catalog", READ_ONLY.format("DETACH")),
        ("INSTALL httpfs", READ_ONLY.format("INSTALL")),
        ("FORCE INSTALL httpfs", READ_ONLY.format("FORCE")),
        ("LOAD httpfs", READ_ONLY.format("LOAD")),
        ("SET enable_external_access = true", READ_ONLY.format("SET")),
        ("RESET lock_configuration", READ_ONLY.format("RESET")),
        ("PRAGMA enable_profiling", READ_ONLY.format("PRAGMA")),
        ("CALL pragma_version()", READ_ONLY.format("CALL")),
        ("CHECKPOINT", READ_ONLY.format("CHECKPOINT")),
        ("VACUUM", READ_ONLY.format("VACUUM")),
        ("USE memory", READ_ONLY.format("USE")),
        ("BEGIN TRANSACTION", READ_ONLY.format("BEGIN")),
        ("CREATE SECRET s (TYPE s3)", READ_ONLY.format("CREATE")),
        # EXPLAIN ANALYZE runs what it explains.
        (f"EXPLAIN ANALYZE COPY batches TO '{lake}/x.csv'", READ_ONLY.format("COPY")),
        ("EXPLAIN ANALYZE INSERT INTO batches VALUES (1)", READ_ONLY.format("INSERT")),
        ("SELECT 1; DROP VIEW batches", "give exactly one SQL statement (got 2)"),
        ("", "give exactly one SQL statement (got 0)"),
        # Queries, but of files outside the lake.
        ("SELECT * FROM read_csv('/etc/passwd')", NO_FILES.format("/etc/passwd")),
        (f"SELECT * FROM read_text('{outside}')", NO_FILES.format(outside)),
        (
            f"SELECT * FROM read_text('{lake}/../reference/members.csv')",
            NO_FILES.format(f"{lake}/../reference/members.csv"),
        ),
        ("SELECT * FROM glob('/etc/*')", NO_FILES.format("/etc/*")),
        ("SELECT * FROM read_blob('/etc/hostname')", NO_FILES.format("/etc/hostname")),
        (
            "SELECT * FROM 'https://example.com/cases.parquet'",
            NO_FILES.format("https://example.com/cases.parquet"),
        ),
        (
            "SELECT * FROM query('DROP VIEW batches')",
            "Parser Error: Expected a single SELECT statement",
        ),
    ]


def test_refused_statements_are_one_line_exit_2_and_change_nothing(lake: Path) -> None:
    before = file_identities(lake)
    catalog_digest = hashlib.sha256(catalog.catalog_path(lake).read_bytes()).hexdigest()
    for sql, message in refusals(lake):
        result = CliRunner().invoke(app, ["query", sql, "--lake", str(lake)])
        assert (result.exit_code, result.stdout) == (2, ""), sql
        assert result.stderr == f"adjudicate: error: {message}\n", sql
    assert file_identities(lake) == before
    assert hashlib.sha256(catalog.catalog_path(lake).read_bytes()).hexdigest() == catalog_digest
    assert sorted(p.name for p in lake.parent.iterdir()) == ["inbox", "lake", "reference"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT status, count(*) FROM batches GROUP BY ALL ORDER BY ALL",
        "WITH s AS (SELECT * FROM batches) SELECT status, count(*) FROM s GROUP BY ALL ORDER BY 1",
        "FROM batches SELECT status, count(*) GROUP BY ALL ORDER BY ALL",
    ],
)
def test_queries_are_answered(lake: Path, sql: str) -> None:
    assert catalog.run_query(lake, sql).rows == [("PROCESSED", 1), ("REJECTED", 1)]


def test_explain_and_describe_are_answered(lake: Path) -> None:
    assert catalog.run_query(lake, "EXPLAIN SELECT * FROM batches").columns == [
        "explain_key",
        "explain_value",
    ]
    analyzed = catalog.run_query(lake, "EXPLAIN ANALYZE SELECT count(*) FROM case_decisions")
    assert analyzed.rows[0][0] == "analyzed_plan"
    described = catalog.run_query(lake, "DESCRIBE rejections").rows
    assert [row[0] for row in described] == [
        "batch_id",
        "row_number",
        "case_id",
        "errors",
        "raw",
        "rejected_at",
    ]


def test_the_catalog_connection_itself_cannot_write_or_be_unlocked(lake: Path) -> None:
    """Below the statement check: read-only database, no files outside the lake,
    configuration locked."""
    con = catalog.connect_read_only(lake)
    try:
        for sql, message in [
            ("CREATE TABLE t (x INTEGER)", 'Cannot execute statement of type "CREATE"'),
            ("DROP VIEW batches", 'Cannot execute statement of type "DROP"'),
            ("SET enable_external_access = true", "the configuration has been locked"),
            ("SET lock_configuration = false", "the configuration has been locked"),
            ("SET allowed_directories = ['/']", "the configuration has been locked"),
            (f"COPY (SELECT 1) TO '{lake.parent}/x.csv'", "file system operations are disabled"),
            ("INSTALL httpfs", "file system operations are disabled"),
            (f"ATTACH '{lake.parent}/x.duckdb' AS x", "file system operations are disabled"),
        ]:
            with pytest.raises(duckdb.Error, match=message):
                con.execute(sql)
        settings = con.execute(
            "SELECT current_setting('enable_external_access'), "
            "current_setting('lock_configuration')"
        ).fetchone()
        assert settings == (False, True)
    finally:
        con.close()


def test_a_damaged_catalog_is_a_clear_error(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    catalog.catalog_path(lake).write_bytes(b"not a database" * 100)
    result = CliRunner().invoke(app, ["query", "SELECT 1", "--lake", str(lake)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"adjudicate: error: {lake}/catalog.duckdb: cannot be opened: IO Error:"
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP VIEW batches", READ_ONLY.format("DROP")),
        ("SELECT * FROM read_csv('/etc/passwd')", NO_FILES.format("/etc/passwd")),
    ],
)
def test_the_real_command_refuses_in_one_line(lake: Path, sql: str, message: str) -> None:
    adjudicate = str(Path(sys.executable).with_name("adjudicate"))
    result = subprocess.run(
        [adjudicate, "query", sql, "--lake", str(lake)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"adjudicate: error: {message}\n"


# Append-only: nothing recorded is ever rewritten or deleted.


def test_later_runs_never_touch_a_recorded_file(tmp_path: Path) -> None:
    inbox, lake = tmp_path / "inbox", tmp_path / "lake"
    inbox.mkdir()
    reference = write_reference(tmp_path / "reference")
    (inbox / "a.csv").write_bytes(csv_bytes([case_row("C1"), case_row("C2", units="0")]))
    (inbox / "b.parquet").write_bytes(b"PAR1 truncated")
    run_lake(inbox, reference, lake, run_id="run-1")
    first = recorded_files(lake)
    assert len(first) == 2 * 5 + 5 + 1 + 2  # a, b, _empty; skips/_empty; b's quarantine

    # More runs: the same files again, copies, a new batch that resubmits C1 and a
    # new unreadable file; the same run id twice.
    (inbox / "a-copy.csv").write_bytes((inbox / "a.csv").read_bytes())
    (inbox / "c.csv").write_bytes(csv_bytes([case_row("C1"), case_row("C3")]))
    (inbox / "d.jsonl").write_bytes(b"[]\n")
    inbox_before = file_identities(inbox)
    run_lake(inbox, reference, lake, run_id="run-2")
    run_lake(inbox, reference, lake, run_id="run-2")

    later = recorded_files(lake)
    assert {path: later[path] for path in first} == first  # same inode, mtime and size
    added = sorted(set(later) - set(first))
    assert len([p for p in added if p.startswith("events/batches/")]) == 2 * 5  # c and d
    assert len([p for p in added if p.startswith("quarantine/")]) == 2  # d and its reason
    skips = [p for p in added if p.startswith("events/skips/")]
    # The 2nd run skips a-copy, a and b; the 3rd (same run id) all five files.
    assert len(skips) == 3 + 5
    assert file_identities(inbox) == inbox_before  # the inbox is never touched
    skipped = pl.read_parquet(eventlog.skips_dir(lake) / "*.parquet")
    assert skipped.filter(pl.col("status") == SKIPPED).height == len(skips)


def recorded_files(lake: Path) -> dict[str, tuple[int, int, int]]:
    return {
        path: identity
        for path, identity in file_identities(lake).items()
        if path.startswith(("events/", "quarantine/"))
    }


def test_quarantine_never_overwrites_a_kept_file(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    folder = eventlog.quarantine(lake, "b" * 64, "bad.csv", b"first bytes", "first reason")
    kept = file_identities(folder)
    again = eventlog.quarantine(lake, "b" * 64, "bad.csv", b"other bytes", "other reason")
    assert again == folder
    assert file_identities(folder) == kept
    assert (folder / "bad.csv").read_bytes() == b"first bytes"
    assert (folder / "reason.txt").read_text(encoding="utf-8") == "bad.csv: first reason\n"
    assert list(eventlog.staging_dir(lake).iterdir()) == []


def test_a_skip_record_never_replaces_another(tmp_path: Path) -> None:
    """Two copies of one file in one run are two skips: both recorded, in two files."""
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    first = eventlog.record_skip(
        lake, "run-1", batch_record("f" * 64, "copy-1.csv", SKIPPED, "run-1", now)
    )
    kept = first.stat()
    second = eventlog.record_skip(
        lake, "run-1", batch_record("f" * 64, "copy-2.csv", SKIPPED, "run-1", now)
    )
    assert (first.name, second.name) == (f"run-1-{'f' * 64}.parquet", f"run-1-{'f' * 64}-1.parquet")
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    assert pl.read_parquet(first)["source"].to_list() == ["copy-1.csv"]
    assert pl.read_parquet(second)["source"].to_list() == ["copy-2.csv"]
    assert list(eventlog.staging_dir(lake).iterdir()) == []
