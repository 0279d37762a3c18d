"""Spec §3 (rejected batches), §6 (order, idempotency) and §7 (the analyst catalog).

Batches go through claimsflow.pipeline.batch.process_batch as the nightly flow does
(without Prefect); the catalog is then queried with plain, read-only DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from claimsflow.lake.catalog import refresh_catalog
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED
from tests.batch_helpers import CsvWriter, InboxRunner, RunFactory, case_row, csv_bytes, run_inbox

CASE_DECISION_TYPES = {
    "case_id": "VARCHAR",
    "batch_id": "VARCHAR",
    "status": "VARCHAR",
    "reason_codes": "VARCHAR[]",
    "allowed_cents": "BIGINT",
    "deductible_cents": "BIGINT",
    "coinsurance_cents": "BIGINT",
    "paid_cents": "BIGINT",
    "ruleset_version": "VARCHAR",
    "decided_at": "TIMESTAMP WITH TIME ZONE",
}
REJECTION_TYPES = {
    "batch_id": "VARCHAR",
    "row_number": "BIGINT",
    "case_id": "VARCHAR",
    "errors": "VARCHAR[]",
    "raw": "VARCHAR",
}
BATCH_COLUMNS = (
    "batch_id",
    "source",
    "status",
    "rows_in",
    "rows_decided",
    "rows_rejected",
    "reason",
    "processed_at",
)
AMOUNTS = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Catalog:
    """Read-only queries on catalog.duckdb, refreshed from the lake on creation."""

    def __init__(self, lake: Path) -> None:
        self.path = refresh_catalog(lake)
        assert self.path == lake / "catalog.duckdb"
        self.con = duckdb.connect(str(self.path), read_only=True)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def records(self, sql: str) -> list[dict[str, Any]]:
        relation = self.con.execute(sql)
        names = [d[0] for d in relation.description or []]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]

    def types(self, view: str) -> dict[str, str]:
        return {
            name: kind
            for name, kind in self.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                view,
            )
        }

    def close(self) -> None:
        self.con.close()


OpenCatalog = Callable[[], Catalog]


@pytest.fixture
def open_catalog(lake: Path) -> Iterator[OpenCatalog]:
    opened: list[Catalog] = []

    def open_() -> Catalog:
        catalog = Catalog(lake)
        opened.append(catalog)
        return catalog

    yield open_
    for catalog in opened:
        catalog.close()


def lake_files(lake: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of the event log and quarantine: relative path -> (inode, mtime_ns, size)."""
    found = {}
    for folder in (lake / "events", lake / "quarantine"):
        for path in folder.rglob("*"):
            if path.is_file():
                stat = path.stat()
                found[str(path.relative_to(lake))] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


@pytest.fixture
def mixed_inbox(write_batch: CsvWriter, inbox: Path) -> Path:
    """a.csv: approved, denied and rejected rows; b.parquet: really CSV; c.csv: clean."""
    write_batch(
        "a.csv",
        [
            case_row("A1"),  # APPROVED
            case_row("A2", member_id="NOBODY", provider_id="P002", billed_amount="20000.00"),
            case_row("A3", units="0"),  # rejected
            case_row("A4", procedure_code="99214", member_id="M002", note="x"),  # CO-197
            case_row("A1", units="2"),  # rejected: repeated case_id
            case_row("A5", member_id="M002", billed_amount="10000.01", units="4"),  # PENDED
        ],
    )
    (inbox / "b.parquet").write_bytes(csv_bytes([case_row("B1")]))
    write_batch(
        "c.csv",
        [
            case_row("C1", member_id="M002", procedure_code="J1100"),  # APPROVED
            case_row("C2", diagnosis_code="j45"),  # rejected
        ],
    )
    return inbox


# --- the views and their types ----------------------------------------------------------


def test_fresh_lake_catalog_is_queryable_and_empty(lake: Path, open_catalog: OpenCatalog) -> None:
    catalog = open_catalog()
    for view in ("case_decisions", "rejections", "batches", "events"):
        assert catalog.rows(f"SELECT count(*) FROM {view}") == [(0,)], view
    assert {c: catalog.types("case_decisions")[c] for c in CASE_DECISION_TYPES} == (
        CASE_DECISION_TYPES
    )
    assert {c: catalog.types("rejections")[c] for c in REJECTION_TYPES} == REJECTION_TYPES
    assert set(BATCH_COLUMNS) <= set(catalog.types("batches"))


def test_view_columns_and_duckdb_types(
    mixed_inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    run_fixture_inbox()
    catalog = open_catalog()
    decision_types = catalog.types("case_decisions")
    assert list(decision_types)[: len(CASE_DECISION_TYPES)] == list(CASE_DECISION_TYPES)
    assert {c: decision_types[c] for c in CASE_DECISION_TYPES} == CASE_DECISION_TYPES
    rejection_types = catalog.types("rejections")
    assert list(rejection_types)[: len(REJECTION_TYPES)] == list(REJECTION_TYPES)
    assert {c: rejection_types[c] for c in REJECTION_TYPES} == REJECTION_TYPES
    batch_types = catalog.types("batches")
    assert list(batch_types)[: len(BATCH_COLUMNS)] == list(BATCH_COLUMNS)
    for column in ("rows_in", "rows_decided", "rows_rejected"):
        assert batch_types[column] in ("BIGINT", "INTEGER")
    # The values really are of those types, not only declared so.
    typed = catalog.rows(
        "SELECT DISTINCT typeof(reason_codes), typeof(allowed_cents), typeof(paid_cents), "
        "typeof(decided_at) FROM case_decisions"
    )
    assert typed == [("VARCHAR[]", "BIGINT", "BIGINT", "TIMESTAMP WITH TIME ZONE")]


def test_case_decisions_content(
    mixed_inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    run_fixture_inbox()
    catalog = open_catalog()
    rows = {r["case_id"]: r for r in catalog.records("SELECT * FROM case_decisions")}
    assert sorted(rows) == ["A1", "A2", "A4", "A5", "C1"]
    a_id = sha256(mixed_inbox / "a.csv")
    assert {rows[c]["batch_id"] for c in ("A1", "A2", "A4", "A5")} == {a_id}
    assert rows["C1"]["batch_id"] == sha256(mixed_inbox / "c.csv")
    # APPROVED: empty list (not NULL), priced in cents.
    assert rows["A1"]["status"] == "APPROVED"
    assert rows["A1"]["reason_codes"] == []
    assert rows["A1"]["allowed_cents"] == 8000
    assert rows["C1"]["status"] == "APPROVED"
    assert rows["C1"]["reason_codes"] == []
    # Reason codes in rule order.
    assert rows["A2"]["status"] == "DENIED"
    assert rows["A2"]["reason_codes"] == ["CO-31", "CO-B7", "P-HIGH-DOLLAR"]
    assert rows["A4"]["reason_codes"] == ["CO-197"]
    assert rows["A5"]["status"] == "PENDED"
    assert rows["A5"]["reason_codes"] == ["P-HIGH-DOLLAR"]
    for case in ("A2", "A4", "A5"):
        assert [rows[case][a] for a in AMOUNTS] == [0, 0, 0, 0]
    for row in rows.values():
        assert row["ruleset_version"] == "1"
        assert row["decided_at"].utcoffset() is not None
    assert catalog.rows("SELECT count(*) FROM case_decisions WHERE reason_codes IS NULL") == [(0,)]
    assert catalog.rows(
        "SELECT count(*) FROM case_decisions WHERE status = 'APPROVED' AND len(reason_codes) > 0"
    ) == [(0,)]


def test_rejections_content(
    mixed_inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    run_fixture_inbox()
    catalog = open_catalog()
    rows = catalog.records("SELECT * FROM rejections ORDER BY batch_id, row_number")
    by_key = {(r["batch_id"], r["row_number"]): r for r in rows}
    a_id, c_id = sha256(mixed_inbox / "a.csv"), sha256(mixed_inbox / "c.csv")
    assert set(by_key) == {(a_id, 3), (a_id, 5), (c_id, 2)}
    assert by_key[(a_id, 3)]["case_id"] == "A3"
    assert [e.split(":")[0] for e in by_key[(a_id, 3)]["errors"]] == ["units"]
    assert [e.split(":")[0] for e in by_key[(a_id, 5)]["errors"]] == ["case_id"]
    assert [e.split(":")[0] for e in by_key[(c_id, 2)]["errors"]] == ["diagnosis_code"]
    raw = json.loads(by_key[(a_id, 5)]["raw"])
    assert raw["case_id"] == "A1" and raw["units"] == "2"
    assert raw["note"] == "", "extra columns are kept in the raw copy"
    raw_c = json.loads(by_key[(c_id, 2)]["raw"])
    assert raw_c == case_row("C2", diagnosis_code="j45")


def test_batches_content_and_rows_balance(
    mixed_inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    outcomes = run_fixture_inbox()
    assert [(o.source, o.status) for o in outcomes] == [
        ("a.csv", PROCESSED),
        ("b.parquet", REJECTED),
        ("c.csv", PROCESSED),
    ]
    catalog = open_catalog()
    rows = {r["source"]: r for r in catalog.records("SELECT * FROM batches")}
    assert set(rows) == {"a.csv", "b.parquet", "c.csv"}
    for name, row in rows.items():
        assert row["batch_id"] == sha256(mixed_inbox / name)
    assert (rows["a.csv"]["rows_in"], rows["a.csv"]["rows_decided"]) == (6, 4)
    assert rows["a.csv"]["rows_rejected"] == 2
    assert (rows["c.csv"]["rows_in"], rows["c.csv"]["rows_decided"]) == (2, 1)
    assert rows["a.csv"]["reason"] is None and rows["c.csv"]["reason"] is None
    assert rows["b.parquet"]["status"] == REJECTED
    assert rows["b.parquet"]["reason"]
    assert catalog.rows(
        "SELECT count(*) FROM batches WHERE rows_in <> rows_decided + rows_rejected"
    ) == [(0,)]
    # The batch counts agree with the other views.
    assert catalog.rows(
        "SELECT b.source, b.rows_decided, count(DISTINCT d.case_id) FROM batches b "
        "LEFT JOIN case_decisions d USING (batch_id) WHERE b.status = 'PROCESSED' "
        "GROUP BY ALL ORDER BY 1"
    ) == [("a.csv", 4, 4), ("c.csv", 1, 1)]
    assert catalog.rows(
        "SELECT b.source, b.rows_rejected, count(r.row_number) FROM batches b "
        "LEFT JOIN rejections r USING (batch_id) WHERE b.status = 'PROCESSED' "
        "GROUP BY ALL ORDER BY 1"
    ) == [("a.csv", 2, 2), ("c.csv", 1, 1)]


# --- unreadable files -------------------------------------------------------------------


def test_unreadable_file_is_quarantined_verbatim_and_the_run_goes_on(
    mixed_inbox: Path, lake: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    original = (mixed_inbox / "b.parquet").read_bytes()
    outcomes = {o.source: o for o in run_fixture_inbox()}
    rejected = outcomes["b.parquet"]
    assert rejected.status == REJECTED and rejected.reason
    batch_id = hashlib.sha256(original).hexdigest()
    kept = lake / "quarantine" / batch_id
    assert (kept / "b.parquet").read_bytes() == original
    assert rejected.reason in (kept / "reason.txt").read_text(encoding="utf-8")
    # Nothing in the inbox is deleted.
    assert (mixed_inbox / "b.parquet").read_bytes() == original
    # The batches around it were processed as usual.
    assert outcomes["a.csv"].status == PROCESSED and outcomes["c.csv"].status == PROCESSED
    catalog = open_catalog()
    assert catalog.rows(
        "SELECT status, rows_in, rows_decided, rows_rejected, reason FROM batches "
        "WHERE batch_id = ?",
        batch_id,
    ) == [(REJECTED, 0, 0, 0, rejected.reason)]
    assert catalog.rows("SELECT count(*) FROM case_decisions WHERE batch_id = ?", batch_id) == [
        (0,)
    ]
    assert catalog.rows("SELECT count(*) FROM case_decisions WHERE case_id = 'B1'") == [(0,)]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.csv", b""),
        ("latin1.csv", "case_id\nM\xfcller\n".encode("latin-1")),
        # Lines ending in a carriage return alone (a line with more fields than the
        # header is a rejected row, not a rejected file: tests/test_hostile_inputs.py).
        ("cr.csv", csv_bytes([case_row("R1")]).replace(b"\n", b"\r")),
        ("truncated.parquet", b"PAR1\x00\x00\x00"),
        ("object.jsonl", b'{"case_id": "J1"}\n[1, 2]\n'),
        ("missing.csv", b"case_id,member_id\nX1,M001\n"),
    ],
)
def test_each_kind_of_unreadable_file_is_a_rejected_batch(
    name: str,
    data: bytes,
    inbox: Path,
    lake: Path,
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    open_catalog: OpenCatalog,
) -> None:
    (inbox / name).write_bytes(data)
    write_batch("zz.csv", [case_row("Z1")])
    outcomes = {o.source: o for o in run_fixture_inbox()}
    assert outcomes[name].status == REJECTED
    assert outcomes["zz.csv"].status == PROCESSED and outcomes["zz.csv"].rows_decided == 1
    batch_id = hashlib.sha256(data).hexdigest()
    assert (lake / "quarantine" / batch_id / name).read_bytes() == data
    catalog = open_catalog()
    assert catalog.rows("SELECT status FROM batches WHERE source = ?", name) == [(REJECTED,)]
    assert catalog.rows("SELECT reason IS NOT NULL FROM batches WHERE source = ?", name) == [
        (True,)
    ]


def test_header_only_file_is_a_processed_empty_batch(
    inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    (inbox / "a.csv").write_bytes(csv_bytes([]))
    [outcome] = run_fixture_inbox()
    assert (outcome.status, outcome.rows_in, outcome.rows_decided) == (PROCESSED, 0, 0)
    catalog = open_catalog()
    assert catalog.rows("SELECT status, rows_in FROM batches") == [(PROCESSED, 0)]


# --- identity and idempotency -----------------------------------------------------------


def test_same_bytes_under_another_name_is_skipped(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    first = write_batch("a.csv", [case_row("C1"), case_row("C2", units="0")])
    shutil.copyfile(first, inbox / "b.csv")
    outcomes = run_fixture_inbox()
    assert [(o.source, o.status) for o in outcomes] == [("a.csv", PROCESSED), ("b.csv", SKIPPED)]
    assert outcomes[1].batch_id == outcomes[0].batch_id == sha256(first)
    catalog = open_catalog()
    assert catalog.rows(
        "SELECT source, status, rows_in, rows_decided, rows_rejected, reason FROM batches "
        "ORDER BY source"
    ) == [("a.csv", PROCESSED, 2, 1, 1, None), ("b.csv", SKIPPED, 0, 0, 0, None)]
    assert catalog.rows("SELECT count(*) FROM case_decisions") == [(1,)]
    assert catalog.rows("SELECT count(*) FROM rejections") == [(1,)]


def test_same_bytes_as_a_rejected_batch_is_skipped(
    inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    (inbox / "a.parquet").write_bytes(b"not parquet")
    (inbox / "b.csv").write_bytes(b"not parquet")  # would read as CSV, but bytes were seen
    outcomes = run_fixture_inbox()
    assert [(o.source, o.status) for o in outcomes] == [("a.parquet", REJECTED), ("b.csv", SKIPPED)]


def test_same_bytes_in_a_later_run_under_a_new_name_is_skipped(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    first = write_batch("a.csv", [case_row("C1")])
    run_fixture_inbox()
    first.rename(inbox / "renamed.csv")
    [outcome] = run_fixture_inbox()
    assert (outcome.source, outcome.status) == ("renamed.csv", SKIPPED)
    catalog = open_catalog()
    assert catalog.rows("SELECT source, status FROM batches ORDER BY processed_at") == [
        ("a.csv", PROCESSED),
        ("renamed.csv", SKIPPED),
    ]


def test_every_copy_of_seen_bytes_is_recorded_as_skipped(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    first = write_batch("a.csv", [case_row("C1")])
    shutil.copyfile(first, inbox / "b.csv")
    shutil.copyfile(first, inbox / "c.csv")
    outcomes = run_fixture_inbox()
    assert [o.status for o in outcomes] == [PROCESSED, SKIPPED, SKIPPED]
    catalog = open_catalog()
    assert catalog.rows("SELECT source, status FROM batches ORDER BY source") == [
        ("a.csv", PROCESSED),
        ("b.csv", SKIPPED),
        ("c.csv", SKIPPED),
    ]


def test_running_the_same_inbox_twice_changes_nothing(
    mixed_inbox: Path,
    lake: Path,
    inbox: Path,
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    open_catalog: OpenCatalog,
) -> None:
    shutil.copyfile(inbox / "c.csv", inbox / "d.csv")  # a copy: skipped already in run 1
    first_outcomes = run_fixture_inbox()
    before_files = lake_files(lake)
    catalog = open_catalog()
    decisions_query = "SELECT * FROM case_decisions ORDER BY case_id"
    rejections_query = "SELECT * FROM rejections ORDER BY batch_id, row_number"
    before = (catalog.rows(decisions_query), catalog.rows(rejections_query))
    catalog.close()

    second_outcomes = run_fixture_inbox()

    assert [o.source for o in second_outcomes] == [o.source for o in first_outcomes]
    assert {o.status for o in second_outcomes} == {SKIPPED}
    after_files = lake_files(lake)
    # Append-only: every file recorded before is still there, untouched.
    for path, identity in before_files.items():
        assert after_files.get(path) == identity, f"{path} was rewritten or removed"
    new_files = set(after_files) - set(before_files)
    assert all(p.startswith(os.path.join("events", "skips")) for p in new_files), new_files
    catalog = open_catalog()
    assert (catalog.rows(decisions_query), catalog.rows(rejections_query)) == before
    assert catalog.rows("SELECT status, count(*) FROM batches GROUP BY status ORDER BY status") == [
        (PROCESSED, 2),
        (REJECTED, 1),
        (SKIPPED, 5),
    ]


def test_history_sees_every_decision_before_it_across_runs(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    write_batch("a.csv", [case_row("C1")])
    run_fixture_inbox()
    write_batch("b.csv", [case_row("C1", units="2"), case_row("C2")])
    outcomes = {o.source: o for o in run_fixture_inbox()}
    assert outcomes["a.csv"].status == SKIPPED
    assert (outcomes["b.csv"].rows_decided, outcomes["b.csv"].rows_rejected) == (1, 1)
    catalog = open_catalog()
    errors = catalog.rows("SELECT errors FROM rejections")
    assert [[e.split(":")[0] for e in row[0]] for row in errors] == [["case_id"]]


# --- order --------------------------------------------------------------------------------


def test_batches_are_processed_in_file_name_order(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    # Written in the opposite order of their names, with mtimes to match.
    later = write_batch("b.csv", [case_row("C1", billed_amount="70.00"), case_row("C2")])
    earlier = write_batch("a.csv", [case_row("C1", billed_amount="60.00")])
    os.utime(later, (1_000_000, 1_000_000))
    os.utime(earlier, (2_000_000, 2_000_000))
    outcomes = run_fixture_inbox()
    assert [o.source for o in outcomes] == ["a.csv", "b.csv"]
    catalog = open_catalog()
    # C1 is a.csv's; in b.csv it is a resubmission.
    assert catalog.rows(
        "SELECT d.case_id, b.source FROM case_decisions d JOIN batches b USING (batch_id) "
        "ORDER BY case_id"
    ) == [("C1", "a.csv"), ("C2", "b.csv")]
    assert catalog.rows(
        "SELECT r.case_id, r.row_number, b.source FROM rejections r JOIN batches b USING (batch_id)"
    ) == [("C1", 1, "b.csv")]


def test_name_order_is_lexicographic_not_numeric(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    write_batch("9.csv", [case_row("C1")])
    write_batch("10.csv", [case_row("C1", units="2")])
    outcomes = run_fixture_inbox()
    assert [o.source for o in outcomes] == ["10.csv", "9.csv"]
    assert [(o.rows_decided, o.rows_rejected) for o in outcomes] == [(1, 0), (0, 1)]


def test_duplicate_claim_seen_across_batches_in_name_order(
    write_batch: CsvWriter, inbox: Path, run_fixture_inbox: InboxRunner, open_catalog: OpenCatalog
) -> None:
    # Same (member, provider, service date, procedure) under new case ids.
    write_batch("a.csv", [case_row("C1")])
    write_batch("b.csv", [case_row("C2")])
    run_fixture_inbox()
    catalog = open_catalog()
    assert catalog.rows("SELECT case_id, status, reason_codes FROM case_decisions ORDER BY 1") == [
        ("C1", "APPROVED", []),
        ("C2", "DENIED", ["CO-18"]),
    ]


# --- the events view ------------------------------------------------------------------------


def test_events_view_contains_every_event(
    mixed_inbox: Path,
    inbox: Path,
    run_fixture_inbox: InboxRunner,
    open_catalog: OpenCatalog,
) -> None:
    shutil.copyfile(inbox / "c.csv", inbox / "d.csv")
    run_fixture_inbox()
    catalog = open_catalog()
    assert catalog.rows("SELECT count(*) FROM events") != [(0,)]
    # Every batch record (processed, rejected, skipped) is an event.
    batch_events = catalog.rows(
        "SELECT batch_id, count(*) FROM events WHERE case_id IS NULL GROUP BY 1 ORDER BY 1"
    )
    assert batch_events == catalog.rows(
        "SELECT batch_id, count(*) FROM batches GROUP BY 1 ORDER BY 1"
    )
    # Every decided case and every rejected row is there, with its batch.
    decided = catalog.rows("SELECT batch_id, case_id FROM case_decisions ORDER BY 1, 2")
    for event_type_filter in ("case_decided", "case_received"):
        assert (
            catalog.rows(
                "SELECT batch_id, case_id FROM events WHERE event_type = ? ORDER BY 1, 2",
                event_type_filter,
            )
            == decided
        )
    rejected = catalog.rows("SELECT batch_id, case_id FROM rejections ORDER BY 1, 2")
    assert (
        catalog.rows(
            "SELECT batch_id, case_id FROM events WHERE event_type = 'row_rejected' ORDER BY 1, 2"
        )
        == rejected
    )
    # One rule-hit event per reason code of each decision.
    hits = catalog.rows("SELECT sum(len(reason_codes)) FROM case_decisions")[0][0]
    assert catalog.rows("SELECT count(*) FROM events WHERE event_type = 'rule_hit'") == [(hits,)]
    # Raw payloads are JSON.
    for (payload,) in catalog.rows("SELECT payload FROM events"):
        assert isinstance(json.loads(payload), dict)


def test_catalog_uses_no_extension_and_opens_read_only(
    mixed_inbox: Path, lake: Path, run_fixture_inbox: InboxRunner
) -> None:
    run_fixture_inbox()
    path = refresh_catalog(lake)
    con = duckdb.connect(
        str(path),
        read_only=True,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        assert con.execute("SELECT count(*) FROM case_decisions").fetchone() == (5,)
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE t (x INT)")
    finally:
        con.close()


def test_catalog_sees_batches_recorded_after_it_was_built(
    write_batch: CsvWriter, lake: Path, make_run: RunFactory, inbox: Path
) -> None:
    refresh_catalog(lake)
    write_batch("a.csv", [case_row("C1")])
    run_inbox(inbox, make_run("later"))
    con = duckdb.connect(str(lake / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT case_id FROM case_decisions").fetchall() == [("C1",)]
    finally:
        con.close()
