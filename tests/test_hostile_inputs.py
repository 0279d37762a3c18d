"""Hostile input corpus (issue #7): every file ends as a processed batch with exact
rejections or as a rejected batch with a clear reason, and the run's other batches
are decided exactly as they would be without it.

The corpus is built here, at test time (the big files too). Its valid cases are
M002's, on dates of their own, so they cannot change the decisions of the two
good batches (M001) around them. The outcomes are written down in
docs/decisions.md (Input).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest
from typer.testing import CliRunner

from claimsflow import catalog, eventlog
from claimsflow.cli import app
from claimsflow.history import History
from claimsflow.pipeline import (
    PROCESSED,
    REJECTED,
    SKIPPED,
    RunContext,
    batch_id_of_bytes,
    discover_inbox,
    process_batch_file,
)
from claimsflow.reference import ReferenceDataError, load_reference
from claimsflow.rules.ruleset import load_ruleset
from tests.batch_helpers import CASE_HEADER, MEMBERS_CSV, case_row, csv_bytes, write_reference
from tests.lake_runner import RULESET_V1, run_lake

NOT_UTF8 = "is not valid UTF-8 text"
ID_SHAPE = "case_id: must be 1 to 64 characters of A-Z a-z 0-9 - _"
NOT_WHOLE = "units: must be a whole number"
NOT_AMOUNT = "billed_amount: must be a decimal amount with at most 2 decimal places"
FORMULA = "=cmd|' /C calc'!A0"
CORPUS = Path(__file__).parent / "corpus"


def m002(case_id: str, day: int, **overrides: str) -> dict[str, str]:
    """A valid case of member M002 (approved), on its own day of April 2024."""
    values = {
        "member_id": "M002",
        "service_date": f"2024-04-{day:02d}",
        "received_date": f"2024-04-{day:02d}",
        "billed_amount": "50.00",
    }
    values.update(overrides)
    return case_row(case_id, **values)


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def jsonl_bytes(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def good_files() -> dict[str, bytes]:
    return {
        "00_good.csv": csv_bytes([case_row("G1"), case_row("G2", member_id="M999")]),
        "99_good.csv": csv_bytes(
            [case_row("G3", service_date="2024-06-01", received_date="2024-06-02")]
        ),
    }


def corpus_files() -> dict[str, bytes]:
    wrong_types = pl.DataFrame(
        {
            "case_id": [1010, 1011, 1012],  # integers: "1010" is a valid case id
            "member_id": ["M002"] * 3,
            "provider_id": ["P001"] * 3,
            "service_date": [dt.date(2024, 4, 10), dt.date(2024, 4, 11), dt.date(2024, 4, 12)],
            "received_date": [  # a timestamp at midnight is a date; 13:30 is not
                dt.datetime(2024, 4, 10),
                dt.datetime(2024, 4, 11, 13, 30),
                dt.datetime(2024, 4, 12),
            ],
            "procedure_code": [99213] * 3,
            "diagnosis_code": ["J45.909"] * 3,
            "units": pl.Series([1, 1, 1], dtype=pl.Int16),
            "billed_amount": [50.5, 50.0, -3.0],  # a float 50.5 is 50.50; -3.0 is not an amount
            "prior_auth_id": [None, True, False],
        }
    )
    return {
        "01_empty.csv": b"",
        "02_header_only.csv": csv_bytes([]),
        "03_bom.csv": b"\xef\xbb\xbf" + csv_bytes([m002("H03", 3)]),
        "04_crlf.csv": csv_bytes([m002("H04", 4)]).replace(b"\n", b"\r\n"),
        "05_semicolon.csv": csv_bytes([m002("H05", 5)]).replace(b",", b";"),
        "06_quoted_newlines.csv": csv_bytes(
            [m002("H06", 6, prior_auth_id="PA\n123"), m002("H06\nX", 7)]
        ),
        "07_latin1.csv": csv_bytes([m002("H07", 8, member_id="Müller")]).decode().encode("latin-1"),
        "08_binary.csv": bytes(range(256)) * 4,
        "09_truncated.parquet": parquet_bytes(pl.DataFrame([m002("H09", 9)]))[:-100],
        "10_wrong_types.parquet": parquet_bytes(wrong_types),
        "11_arrays.jsonl": b'[1, 2, 3]\n["a"]\n',
        "12_scalars.jsonl": b'5\n"x"\ntrue\n',
        "13_nested_cells.jsonl": jsonl_bytes(
            {**m002("H13", 13), "units": [1, 2], "billed_amount": {"v": 1}}
        ),
        "14_formula.csv": csv_bytes(
            [
                m002("H14", 14, member_id=FORMULA),
                m002("=1+1", 15),
                m002("H14b", 16, prior_auth_id="@SUM(A1:A9)"),
            ]
        ),
        # A badly quoted cell: the reader's error would quote it; the reason does not.
        "15_bad_quotes.csv": ",".join(CASE_HEADER).encode() + b'\nH15,"M0"02,P001\n',
        # Damaged Parquet (found by tests/test_corruption_property.py) that makes the
        # Parquet reader panic instead of raising an error.
        "16_reader_panic.parquet": (CORPUS / "reader-panic.parquet").read_bytes(),
        # File names cannot hold "/", but may hold backslashes and shell syntax.
        "evil..\\..\\..\\escape.csv": b"\x00\xff\xfe not a table",
        "$(touch pwned).csv": csv_bytes([m002("H20", 20)]),
    }


class Outcome(NamedTuple):
    status: str
    rows_in: int = 0
    decided: int = 0
    rejected: int = 0
    reason: str | None = None


EXPECTED_BATCHES: dict[str, Outcome] = {
    "$(touch pwned).csv": Outcome(PROCESSED, 1, 1, 0),
    "00_good.csv": Outcome(PROCESSED, 2, 2, 0),
    "01_empty.csv": Outcome(REJECTED, reason="the file is empty"),
    "02_header_only.csv": Outcome(PROCESSED, 0, 0, 0),
    "03_bom.csv": Outcome(PROCESSED, 1, 1, 0),
    "04_crlf.csv": Outcome(PROCESSED, 1, 1, 0),
    "05_semicolon.csv": Outcome(
        REJECTED,
        reason="missing required column(s): case_id, member_id, provider_id, service_date, "
        "received_date, procedure_code, diagnosis_code, units, billed_amount",
    ),
    "06_quoted_newlines.csv": Outcome(PROCESSED, 2, 1, 1),
    "07_latin1.csv": Outcome(REJECTED, reason=f"{NOT_UTF8} (byte 126)"),
    "08_binary.csv": Outcome(REJECTED, reason=f"{NOT_UTF8} (byte 128)"),
    "09_truncated.parquet": Outcome(
        REJECTED,
        reason="cannot be read as parquet: parquet: File out of specification: "
        "The file must end with PAR1 or PARE",
    ),
    "10_wrong_types.parquet": Outcome(PROCESSED, 3, 1, 2),
    "11_arrays.jsonl": Outcome(
        REJECTED,
        reason="cannot be read as jsonl: NDJSON line expected to contain JSON object: list[str]",
    ),
    "12_scalars.jsonl": Outcome(
        REJECTED,
        reason="cannot be read as jsonl: NDJSON line expected to contain JSON object: str",
    ),
    "13_nested_cells.jsonl": Outcome(PROCESSED, 1, 0, 1),
    "14_formula.csv": Outcome(PROCESSED, 3, 2, 1),
    "15_bad_quotes.csv": Outcome(
        REJECTED,
        reason="cannot be read as csv: a field of column 'member_id' is not properly quoted",
    ),
    "16_reader_panic.parquet": Outcome(
        REJECTED, reason="cannot be read as parquet: the reader failed on its content"
    ),
    "99_good.csv": Outcome(PROCESSED, 1, 1, 0),
    "evil..\\..\\..\\escape.csv": Outcome(REJECTED, reason=f"{NOT_UTF8} (byte 1)"),
    "19_link_in.csv": Outcome(SKIPPED),  # a link to 00_good.csv inside the inbox
}

# (file, row_number, case_id, errors)
EXPECTED_REJECTIONS = [
    ("06_quoted_newlines.csv", 2, "H06\nX", [ID_SHAPE]),
    (
        "10_wrong_types.parquet",
        2,
        "1011",
        ["received_date: must be an ISO date YYYY-MM-DD"],
    ),
    ("10_wrong_types.parquet", 3, "1012", [NOT_AMOUNT]),
    ("13_nested_cells.jsonl", 1, "H13", [NOT_WHOLE, NOT_AMOUNT]),
    ("14_formula.csv", 2, "=1+1", [ID_SHAPE]),
]

# (file, case_id, status, reason codes, allowed, deductible, paid)
EXPECTED_DECISIONS = [
    ("$(touch pwned).csv", "H20", "APPROVED", [], 5000, 5000, 0),
    ("00_good.csv", "G1", "APPROVED", [], 8000, 8000, 0),
    ("00_good.csv", "G2", "DENIED", ["CO-31"], 0, 0, 0),
    ("03_bom.csv", "H03", "APPROVED", [], 5000, 5000, 0),
    ("04_crlf.csv", "H04", "APPROVED", [], 5000, 5000, 0),
    ("06_quoted_newlines.csv", "H06", "APPROVED", [], 5000, 5000, 0),
    # M002's deductible (250.00, coinsurance 0 %) runs out at 1010, after 4 x 50.00.
    ("10_wrong_types.parquet", "1010", "APPROVED", [], 5050, 5000, 50),
    ("14_formula.csv", "H14", "DENIED", ["CO-31"], 0, 0, 0),
    ("14_formula.csv", "H14b", "APPROVED", [], 5000, 0, 5000),
    ("99_good.csv", "G3", "APPROVED", [], 8000, 8000, 0),
]


@pytest.fixture(scope="module")
def corpus_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run over the good batches, the corpus and the non-batches around them."""
    root = tmp_path_factory.mktemp("hostile")
    inbox = root / "inbox"
    inbox.mkdir()
    for name, data in {**good_files(), **corpus_files()}.items():
        (inbox / name).write_bytes(data)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_bytes(csv_bytes([m002("OUT1", 21)]))
    (inbox / "17_link_out.csv").symlink_to(outside / "secret.csv")
    (inbox / "18_passwd.csv").symlink_to("/etc/passwd")
    (inbox / "19_link_in.csv").symlink_to(inbox / "00_good.csv")
    (inbox / "20_folder.csv").mkdir()
    (inbox / ".hidden.csv").write_bytes(csv_bytes([m002("HID1", 22)]))
    (inbox / "notes.txt").write_text("not a batch\n")
    lake = root / "lake"
    run_lake(inbox, write_reference(root / "reference"), lake)
    return lake


def query(lake: Path, sql: str) -> list[tuple[Any, ...]]:
    return catalog.run_query(lake, sql).rows


def test_every_corpus_file_ends_as_written_down(corpus_lake: Path) -> None:
    rows = query(
        corpus_lake,
        "SELECT source, status, rows_in, rows_decided, rows_rejected, reason FROM batches",
    )
    assert {row[0]: Outcome(*row[1:]) for row in rows} == EXPECTED_BATCHES


def test_rejected_rows_are_exact_and_keep_their_raw_values(corpus_lake: Path) -> None:
    rows = query(
        corpus_lake,
        "SELECT b.source, r.row_number, r.case_id, r.errors, r.raw FROM rejections r "
        "JOIN batches b USING (batch_id) ORDER BY b.source, r.row_number",
    )
    assert [row[:4] for row in rows] == EXPECTED_REJECTIONS
    raw = {(row[0], row[1]): json.loads(row[4]) for row in rows}
    assert raw["06_quoted_newlines.csv", 2]["case_id"] == "H06\nX"
    assert raw["10_wrong_types.parquet", 2]["received_date"] == "2024-04-11 13:30:00.000000"
    assert raw["10_wrong_types.parquet", 3]["billed_amount"] == "-3.0"
    assert raw["13_nested_cells.jsonl", 1]["units"] == "[1,2]"
    assert raw["14_formula.csv", 2]["case_id"] == "=1+1"


def test_decisions_of_processed_corpus_files(corpus_lake: Path) -> None:
    rows = query(
        corpus_lake,
        "SELECT b.source, d.case_id, d.status, d.reason_codes, d.allowed_cents, "
        "d.deductible_cents, d.paid_cents FROM case_decisions d JOIN batches b USING (batch_id) "
        "WHERE b.status = 'PROCESSED' ORDER BY b.source, d.case_id",
    )
    assert rows == EXPECTED_DECISIONS


def test_cells_are_kept_verbatim(corpus_lake: Path) -> None:
    rows = query(
        corpus_lake,
        "SELECT case_id, member_id, prior_auth_id, billed_cents FROM cases "
        "WHERE case_id IN ('H03', 'H04', 'H06', 'H14', 'H14b', '1010') ORDER BY case_id",
    )
    assert rows == [
        ("1010", "M002", None, 5050),
        ("H03", "M002", None, 5000),  # the BOM is not part of the first column's name
        ("H04", "M002", None, 5000),  # no carriage return left in the last column
        ("H06", "M002", "PA\n123", 5000),
        ("H14", FORMULA, None, 5000),  # a formula is text: kept as it is
        ("H14b", "M002", "@SUM(A1:A9)", 5000),
    ]


def test_other_batches_decide_as_without_the_corpus(corpus_lake: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, data in good_files().items():
        (inbox / name).write_bytes(data)
    alone = tmp_path / "lake"
    run_lake(inbox, write_reference(tmp_path / "reference"), alone)
    sql = (
        "SELECT case_id, batch_id, status, reason_codes, allowed_cents, deductible_cents, "
        "coinsurance_cents, paid_cents FROM case_decisions WHERE case_id LIKE 'G%' ORDER BY 1"
    )
    assert query(corpus_lake, sql) == query(alone, sql)
    assert [row[0] for row in query(alone, sql)] == ["G1", "G2", "G3"]


def test_unreadable_files_are_quarantined_verbatim_inside_the_lake(corpus_lake: Path) -> None:
    files = corpus_files()
    rejected = {n for n, o in EXPECTED_BATCHES.items() if o.status == REJECTED}
    kept = {p.name: p for p in eventlog.quarantine_dir(corpus_lake).iterdir()}
    assert sorted(kept) == sorted(batch_id_of_bytes(files[name]) for name in rejected)
    for name in rejected:
        folder = kept[batch_id_of_bytes(files[name])]
        assert sorted(p.name for p in folder.iterdir()) == sorted([name, "reason.txt"])
        assert (folder / name).read_bytes() == files[name]
        reason = EXPECTED_BATCHES[name].reason
        assert (folder / "reason.txt").read_text(encoding="utf-8") == f"{name}: {reason}\n"
    # Nothing was written next to the lake or the inbox by the hostile names.
    assert sorted(p.name for p in corpus_lake.parent.iterdir()) == [
        "inbox",
        "lake",
        "outside",
        "reference",
    ]
    assert not (Path.cwd() / "pwned").exists()


def test_links_out_of_the_inbox_and_non_batches_are_left_alone(corpus_lake: Path) -> None:
    inbox = corpus_lake.parent / "inbox"
    batches, ignored = discover_inbox(inbox)
    assert [p.name for p in ignored] == [
        ".hidden.csv",
        "17_link_out.csv",
        "18_passwd.csv",
        "20_folder.csv",
        "notes.txt",
    ]
    assert "19_link_in.csv" in [p.name for p in batches]
    outside = (corpus_lake.parent / "outside" / "secret.csv").read_bytes()
    recorded = [row[0] for row in query(corpus_lake, "SELECT batch_id FROM batches")]
    assert batch_id_of_bytes(outside) not in recorded
    assert query(corpus_lake, "SELECT count(*) FROM cases WHERE case_id IN ('OUT1', 'HID1')") == [
        (0,)
    ]


def test_csv_export_neutralises_formula_cells(corpus_lake: Path) -> None:
    sql = (
        "SELECT case_id, member_id, prior_auth_id, -1 AS minus_one FROM cases "
        "WHERE case_id IN ('H14', 'H14b') ORDER BY case_id"
    )
    as_csv = CliRunner().invoke(app, ["query", sql, "--lake", str(corpus_lake), "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines() == [
        "case_id,member_id,prior_auth_id,minus_one",
        "H14,'=cmd|' /C calc'!A0,,-1",  # a number stays a number
        "H14b,M002,'@SUM(A1:A9),-1",
    ]
    as_json = CliRunner().invoke(
        app, ["query", sql, "--lake", str(corpus_lake), "--format", "json"]
    )
    assert json.loads(as_json.stdout)[0]["member_id"] == FORMULA  # JSON keeps the text as is


# Big files, made at test time.


def single_file_run(tmp_path: Path, name: str, data: bytes) -> tuple[Any, Path]:
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    reference = load_reference(write_reference(tmp_path / "reference"))
    run = RunContext(lake, reference, load_ruleset(RULESET_V1), "big-run")
    path = tmp_path / name
    path.write_bytes(data)
    outcome, _history = process_batch_file(path, run, History.empty())
    catalog.refresh_catalog(lake)
    return outcome, lake


@pytest.mark.slow
def test_a_50_mb_field_is_one_rejected_row(tmp_path: Path) -> None:
    huge = "A" * (50 * 1024 * 1024)
    data = csv_bytes(
        [m002("BIG1", 1), m002("BIG2", 2, member_id=huge), m002("BIG3", 3, notes=huge)]
    )
    outcome, lake = single_file_run(tmp_path, "huge.csv", data)
    assert (outcome.status, outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (
        PROCESSED,
        3,
        2,
        1,
    )
    rows = query(lake, "SELECT row_number, case_id, errors, length(raw) FROM rejections")
    # raw is the row as read: the notes column of the file is there, empty.
    as_read = m002("BIG2", 2, member_id=huge, notes="")
    raw_length = len(json.dumps(as_read, separators=(",", ":")))
    assert rows == [(2, "BIG2", ["member_id: must be 1 to 32 characters"], raw_length)]
    decided = query(lake, "SELECT case_id, status FROM case_decisions ORDER BY case_id")
    assert decided == [("BIG1", "APPROVED"), ("BIG3", "APPROVED")]  # an extra column is ignored


def test_ten_thousand_columns(tmp_path: Path) -> None:
    extras = [f"extra_{i:05d}" for i in range(10_000 - len(CASE_HEADER))]
    header = [*CASE_HEADER, *extras]
    rows = [
        {**m002("W1", 1), **dict.fromkeys(extras, "x")},
        {**m002("W2", 2, units="0"), **dict.fromkeys(extras, "y")},
    ]
    data = csv_bytes(rows, header)
    outcome, lake = single_file_run(tmp_path, "wide.csv", data)
    assert (outcome.status, outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (
        PROCESSED,
        2,
        1,
        1,
    )
    ((errors, raw),) = query(lake, "SELECT errors, raw FROM rejections")
    assert errors == ["units: must be between 1 and 999"]
    kept = json.loads(raw)
    assert len(kept) == 10_000
    assert (kept["case_id"], kept["extra_09989"]) == ("W2", "y")


# Reference data with a duplicate key or overlapping spans stops the run.

PROVIDERS_TWICE = (
    "provider_id,status,in_network\nP001,ACTIVE,true\nP002,SUSPENDED,true\nP001,ACTIVE,false\n"
)
FEES_TWICE = (
    "procedure_code,allowed_amount,prior_auth_required,max_units\n"
    "99213,100.00,false,4\n99213,90.00,false,\n"
)
OVERLAPPING = MEMBERS_CSV + "M001,2024-06-01,2024-12-31,100.00,10\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"providers": PROVIDERS_TWICE},
            "providers.csv: row 3, column provider_id: 'P001' appears more than once",
        ),
        (
            {"fee_schedule": FEES_TWICE},
            "fee_schedule.csv: row 2, column procedure_code: '99213' appears more than once",
        ),
        (
            {"members": OVERLAPPING},
            "members.csv: row 4, column coverage_start: coverage span of member 'M001' "
            "overlaps another span of the same member",
        ),
    ],
    ids=["duplicate-provider", "duplicate-procedure", "overlapping-spans"],
)
def test_bad_reference_stops_the_run_before_anything_is_written(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    reference = write_reference(tmp_path / "reference", **overrides)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(csv_bytes([case_row("C1")]))
    lake = tmp_path / "lake"
    with pytest.raises(ReferenceDataError) as raised:
        run_lake(inbox, reference, lake)
    assert str(raised.value) == f"{reference}/{message}"
    assert not lake.exists()

    result = CliRunner().invoke(
        app,
        ["run", "--inbox", str(inbox), "--reference", str(reference), "--lake", str(lake)],
    )
    assert result.exit_code == 2
    assert result.stderr == f"adjudicate: error: {reference}/{message}\n"
    assert not lake.exists()
    assert os.listdir(inbox) == ["a.csv"]
