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
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adjudicate.cli import app
from adjudicate.serving import Stack
from claimsflow.core.reference import ReferenceDataError, load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.ingest.inbox import (
    InboxFileUnavailable,
    NotRead,
    discover_inbox,
    list_inbox,
    read_inbox_file,
)
from claimsflow.ingest.sql_source import SqlSourceError, pull_increment
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.storage import RemoteLocation, parse_location
from claimsflow.pipeline.batch import RunContext, batch_id_of_bytes, process_batch
from claimsflow.pipeline.summary import RunSummary
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED
from tests.batch_helpers import (
    CASE_HEADER,
    FEE_SCHEDULE_CSV,
    MEMBERS_CSV,
    case_row,
    csv_bytes,
    write_reference,
)
from tests.lake_runner import RULESET_V1, run_lake
from tests.prefect_support import Api, adjudicate_run_command, cli_environment, settled

NOT_UTF8 = "is not valid UTF-8 text"
ID_SHAPE = "case_id: must be 1 to 64 characters of A-Z a-z 0-9 - _"
NOT_WHOLE = "units: must be a whole number"
NOT_AMOUNT = "billed_amount: must be a decimal amount with at most 2 decimal places"
FORMULA = "=cmd|' /C calc'!A0"
CR_ONLY = "its lines end in a carriage return alone (CR); a CSV's lines must end in LF or CRLF"
CORPUS = Path(__file__).parent / "corpus"
# A member id that must appear in no reason, error or log line (issue 18, item 9).
SECRET_MEMBER = "MEMBER-SECRET-42"  # pragma: allowlist secret


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
        # Issue 18: a file picked up while it was still being copied, cut inside the
        # last row's billed_amount (1234.56 arrives as 12, no prior_auth_id).
        "x1_cut_mid_copy.csv": cut_after(
            csv_bytes(
                [m002("X11", 23), m002("X12", 24, billed_amount="1234.56", prior_auth_id="PA-77")]
            ),
            b"1234.56",
            2,
        ),
        "x2_long_line.csv": csv_bytes([m002("X21", 25)])
        + b"X22,M002,P001,2024-04-26,2024-04-26,99213,J45.909,1,50.00,,spill,over\n",
        # JSON numbers are read from their text: no float rounds them to an amount.
        "x3_json_numbers.jsonl": jsonl_text(
            json_case(m002("X31", 27), billed_amount="80.00999999999999999", units="1"),
            json_case(m002("X32", 28), billed_amount="50", units="1"),
            json_case(m002("X33", 29), billed_amount='50.00, "billed_amount": 99.99'),
        ),
        # Carriage returns alone as line ends: the data rows would be header names.
        "x4_carriage_returns.csv": csv_bytes(
            [m002("X41", 30, member_id=SECRET_MEMBER), m002("X42", 30, member_id=SECRET_MEMBER)]
        ).replace(b"\n", b"\r"),
        "x5_repeated_header.csv": csv_bytes(
            [{**m002("X51", 30), "note": SECRET_MEMBER}], [*CASE_HEADER, "note", "note"]
        ),
    }


def cut_after(data: bytes, marker: bytes, keep: int) -> bytes:
    """`data` cut `keep` bytes into `marker` (a copy caught half-way)."""
    return data[: data.index(marker) + keep]


def json_case(case: dict[str, str], **numbers: str) -> str:
    """A JSON object of `case`, with `numbers` written as JSON number text (not strings)."""
    text = json.dumps({**case, **dict.fromkeys(numbers, "")})
    for key, number in numbers.items():
        text = text.replace(f'"{key}": ""', f'"{key}": {number}')
    return text


def jsonl_text(*lines: str) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


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
    "x1_cut_mid_copy.csv": Outcome(PROCESSED, 2, 1, 1),
    "x2_long_line.csv": Outcome(PROCESSED, 2, 1, 1),
    "x3_json_numbers.jsonl": Outcome(PROCESSED, 3, 1, 2),
    "x4_carriage_returns.csv": Outcome(REJECTED, reason=CR_ONLY),
    "x5_repeated_header.csv": Outcome(
        REJECTED, reason="has a repeated column name in its header (field 12)"
    ),
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
    (
        "x1_cut_mid_copy.csv",
        2,
        "X12",
        ["prior_auth_id: not in the line (it has 9 of the header's 10 fields)"],
    ),
    (
        "x2_long_line.csv",
        2,
        "X22",
        ["column 11: not in the header (the line has more than its 10 fields)"],
    ),
    ("x3_json_numbers.jsonl", 1, "X31", [NOT_AMOUNT]),  # not 80.01
    (
        "x3_json_numbers.jsonl",
        3,
        "X33",
        ["billed_amount: given more than once in this JSON object"],
    ),
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
    # M002's deductible is used up: 50.00 allowed, all of it paid.
    ("x1_cut_mid_copy.csv", "X11", "APPROVED", [], 5000, 0, 5000),
    ("x2_long_line.csv", "X21", "APPROVED", [], 5000, 0, 5000),
    ("x3_json_numbers.jsonl", "X32", "APPROVED", [], 5000, 0, 5000),
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
    outcome = process_batch(path, run)
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
STATUS_TWICE = "provider_id,status,in_network,status\nP001,ACTIVE,true,SUSPENDED\n"
NOTE_TWICE = MEMBERS_CSV.replace("\n", ",n,n\n", 1).replace("percent,n,n", "percent,note,note")
# A fee line cut before its optional max_units (empty would mean "no limit").
FEES_CUT = FEE_SCHEDULE_CSV + "99215,100.00,false"
MEMBERS_CR = (MEMBERS_CSV + f"{SECRET_MEMBER},2024-01-01,,100.00,10\n" * 2).replace("\n", "\r")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"providers": PROVIDERS_TWICE},
            "providers.csv: row 3, column provider_id: repeats the provider_id of row 1",
        ),
        (
            {"fee_schedule": FEES_TWICE},
            "fee_schedule.csv: row 2, column procedure_code: repeats the procedure_code of row 1",
        ),
        (
            {"members": OVERLAPPING},
            "members.csv: row 4, column coverage_start: this coverage span overlaps the span "
            "of row 1 of the same member",
        ),
        (
            {"providers": STATUS_TWICE},
            "providers.csv: column status appears more than once in the header",
        ),
        (
            {"members": NOTE_TWICE},
            "members.csv: the header repeats a column name (field 7)",
        ),
        (
            {"fee_schedule": FEES_CUT},
            "fee_schedule.csv: row 4, column max_units: not in the line (it has 3 of the "
            "header's 4 fields)",
        ),
        (
            {"members": MEMBERS_CR},
            "members.csv: its lines end in a carriage return alone (CR); a CSV's lines must "
            "end in LF or CRLF",
        ),
    ],
    ids=[
        "duplicate-provider",
        "duplicate-procedure",
        "overlapping-spans",
        "repeated-column",
        "repeated-other-column",
        "cut-line",
        "carriage-returns",
    ],
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


# A lake path with glob characters (issue 18, item 1) is read as itself: its history,
# its catalog and its reads never expand it as a pattern.

# (lake name, a sibling lake's name that the lake name matches as a glob pattern)
GLOB_LAKES = [
    ("lake[1]{x}?*", "lake1{x}Zdecoy"),
    ("la\\ke*", "lake-decoy"),
    ("[!a]**", "b-decoy"),
]


def glob_world(root: Path) -> tuple[Path, Path]:
    """An inbox whose second batch depends on the first: G1 resubmitted, G2 a duplicate
    of G1, G3 on the rest of M001's deductible (500.00, 20 % coinsurance; 99213 is
    allowed 100.00 a unit)."""
    inbox = root / "in[1]*"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(csv_bytes([case_row("G1", units="4", billed_amount="600.00")]))
    (inbox / "b.csv").write_bytes(
        csv_bytes(
            [
                case_row("G1", units="4", billed_amount="600.00"),
                case_row("G2", units="4", billed_amount="600.00", received_date="2024-05-11"),
                case_row(
                    "G3",
                    service_date="2024-06-01",
                    received_date="2024-06-02",
                    units="2",
                    billed_amount="250.00",
                ),
            ]
        )
    )
    return inbox, write_reference(root / "ref?")


GLOB_LAKE_DECISIONS = [
    # case, status, reason codes, allowed, deductible, coinsurance, paid
    ("G1", "APPROVED", [], 40000, 40000, 0, 0),
    ("G2", "DENIED", ["CO-18"], 0, 0, 0, 0),  # the same claim as G1
    ("G3", "APPROVED", [], 20000, 10000, 2000, 8000),  # 100.00 of deductible left
]
GLOB_LAKE_REJECTIONS = [
    ("G1", ["case_id: already has a decision from an earlier batch (resubmission)"])
]


@pytest.mark.parametrize(("name", "decoy"), GLOB_LAKES, ids=["brackets", "backslash", "stars"])
def test_a_lake_path_with_glob_characters_is_read_as_itself(
    tmp_path: Path, name: str, decoy: str
) -> None:
    inbox, reference = glob_world(tmp_path)
    # A lake the path would match as a pattern, where G3 is decided already: reading
    # it would reject G3 as a resubmission.
    decoy_inbox = tmp_path / "decoy-inbox"
    decoy_inbox.mkdir()
    (decoy_inbox / "d.csv").write_bytes(
        csv_bytes([case_row("G3", service_date="2024-06-01", received_date="2024-06-02")])
    )
    run_lake(decoy_inbox, reference, tmp_path / decoy)
    lake = tmp_path / name

    outcomes = run_lake(inbox, reference, lake)

    assert [(o.source, o.status, o.rows_decided, o.rows_rejected) for o in outcomes] == [
        ("a.csv", PROCESSED, 1, 0),
        ("b.csv", PROCESSED, 2, 1),
    ]
    assert catalog.catalog_path(lake).is_file()
    decisions = query(
        lake,
        "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, "
        "coinsurance_cents, paid_cents FROM case_decisions ORDER BY case_id",
    )
    assert decisions == GLOB_LAKE_DECISIONS
    assert query(lake, "SELECT case_id, errors FROM rejections") == GLOB_LAKE_REJECTIONS
    assert query(lake, "SELECT count(*) FROM batches") == [(2,)]
    # The same inbox again: every batch skipped, nothing decided twice.
    assert [o.status for o in run_lake(inbox, reference, lake)] == [SKIPPED, SKIPPED]
    assert query(lake, "SELECT count(*) FROM decision_events") == [(3,)]


# The inbox (issue 18, items 2 and 5): entries that cannot be examined, and files
# still being copied in, are left for a later run and named; discovery never fails.


def test_unresolvable_inbox_entries_are_left_untouched_and_named(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(csv_bytes([m002("U1", 1)]))
    (inbox / "z.csv").write_bytes(csv_bytes([m002("U2", 2)]))
    (inbox / ".junk").symlink_to(".junk")  # a loop, and hidden
    (inbox / "loop.csv").symlink_to("loop.csv")
    (inbox / "ping.csv").symlink_to("pong.csv")
    (inbox / "pong.csv").symlink_to("ping.csv")
    (inbox / "gone.csv").symlink_to("nowhere.csv")
    before = sorted((p.name, os.readlink(p)) for p in inbox.iterdir() if p.is_symlink())

    listing = list_inbox(inbox)

    assert [p.name for p in listing.batches] == ["a.csv", "z.csv"]
    assert [p.name for p in listing.ignored] == [".junk"]
    assert [str(n) for n in listing.not_read] == [
        "gone.csv (a link to nothing)",
        "loop.csv (a symbolic link loop)",
        "ping.csv (a symbolic link loop)",
        "pong.csv (a symbolic link loop)",
    ]
    not_read: list[NotRead] = []
    outcomes = run_lake(
        inbox, write_reference(tmp_path / "reference"), tmp_path / "lake", not_read=not_read
    )
    assert [(o.source, o.status) for o in outcomes] == [("a.csv", PROCESSED), ("z.csv", PROCESSED)]
    assert [n.name for n in not_read] == ["gone.csv", "loop.csv", "ping.csv", "pong.csv"]
    summary = RunSummary("run", "v1", outcomes, not_read=[str(n) for n in not_read])
    assert summary.lines()[-1] == (
        "not read, left for the next run: gone.csv (a link to nothing), loop.csv (a symbolic "
        "link loop), ping.csv (a symbolic link loop), pong.csv (a symbolic link loop)"
    )
    assert summary.needs_attention
    after = sorted((p.name, os.readlink(p)) for p in inbox.iterdir() if p.is_symlink())
    assert after == before  # left untouched


NOW = 1_750_000_000.0


def test_a_batch_file_still_being_copied_is_left_for_the_next_run(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    modified = {
        "old.csv": NOW - 60,  # left alone for a minute: ready
        "fresh.csv": NOW - 5,  # written 5 s ago: may still be growing
        "ahead.csv": NOW + 10,  # a clock a little ahead: still within the quiet period
        "clock.csv": NOW + 86_400,  # a day ahead: a wrong clock, not a copy going on
    }
    for name, at in modified.items():
        (inbox / name).write_bytes(csv_bytes([m002(name[:3], 1)]))
        os.utime(inbox / name, (at, at))

    listing = list_inbox(inbox, quiet_seconds=30, now=NOW)

    assert [p.name for p in listing.batches] == ["clock.csv", "old.csv"]
    assert [p.name for p in listing.not_ready] == ["ahead.csv", "fresh.csv"]
    everything = list_inbox(inbox, quiet_seconds=0, now=NOW)
    assert [p.name for p in everything.batches] == sorted(modified)
    assert list_inbox(inbox, quiet_seconds=4, now=NOW).not_ready == []
    summary = RunSummary("run", "v1", not_ready=["ahead.csv", "fresh.csv"], quiet_seconds=30)
    assert summary.lines()[-1] == (
        "not ready (modified in the last 30 s), left for the next run: ahead.csv, fresh.csv"
    )
    assert (summary.exit_code, summary.needs_attention) == (0, False)


def test_a_remote_batch_file_still_being_written_waits_too() -> None:
    inbox = parse_location(f"memory://inbox-{uuid.uuid4().hex[:12]}/in")
    assert isinstance(inbox, RemoteLocation)
    try:
        inbox.fs.pipe_file(inbox.path("a.csv"), csv_bytes([m002("R1", 1)]))
        [info] = inbox.fs.ls(inbox.root, detail=True)
        written = float(info["created"])  # the memory filesystem's modification time
        assert [p.name for p in list_inbox(inbox, quiet_seconds=30, now=written + 5).not_ready] == [
            "a.csv"
        ]
        assert [p.name for p in list_inbox(inbox, quiet_seconds=30, now=written + 60).batches] == [
            "a.csv"
        ]
    finally:
        inbox.fs.rm(inbox.root.rsplit("/", 1)[0], recursive=True)


def test_quiet_seconds_must_be_a_whole_number_of_seconds(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--inbox", str(tmp_path), "--quiet-seconds", "-1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "Invalid value for '--quiet-seconds'" in result.stderr


# The real command on a hostile inbox and a lake path with glob characters (issue 18,
# items 1, 2, 5, 6 and 9 together), on the session's Prefect server.


@pytest.mark.prefect
def test_adjudicate_run_on_a_hostile_inbox_end_to_end(
    tmp_path: Path, prefect_server: Stack
) -> None:
    root = tmp_path / "r[1]{x}?*"
    root.mkdir()
    inbox, reference = glob_world(root)  # a.csv, b.csv: resubmission, duplicate, deductible
    lake, stall = root / "lake[1]{x}?*", tmp_path / "stall"
    stall.mkdir()
    cr_only = csv_bytes([m002("S1", 1, member_id=SECRET_MEMBER)] * 2).replace(b"\n", b"\r")
    (inbox / "c_secret.csv").write_bytes(cr_only)
    (inbox / "d_gone.csv").write_bytes(csv_bytes([m002("D1", 2)]))
    (inbox / "e_fresh.csv").write_bytes(csv_bytes([m002("E1", 3)]))
    (inbox / "loop.csv").symlink_to("loop.csv")
    hour_ago = time.time() - 3600
    for name in ("a.csv", "b.csv", "c_secret.csv", "d_gone.csv"):
        os.utime(inbox / name, (hour_ago, hour_ago))  # e_fresh.csv: just written
    env = cli_environment(
        prefect_server,
        tmp_path / "prefect-home",
        {
            "PREFECT_LOGGING_LEVEL": "DEBUG",
            # Waits after reading a.csv, the inbox listed: d_gone.csv is taken away then.
            "CLAIMS_STALL_AT": "after-read",
            "CLAIMS_STALL_DIR": str(stall),
        },
    )
    command = adjudicate_run_command(
        inbox, reference, lake, tmp_path / "reports", "--quiet-seconds", "600"
    )
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 300
            while not (stall / "stalled").exists():
                assert process.poll() is None, err.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never reached the stall point"
                time.sleep(0.2)
            (inbox / "d_gone.csv").unlink()
            (stall / "go").touch()
            returncode = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stdout_text = out.read_text(encoding="utf-8")
    stderr_text = err.read_text(encoding="utf-8")
    assert returncode == 1, stderr_text[-3000:]  # a rejected batch, a rejected row
    lines = stdout_text.splitlines()
    assert "rule set claims-standard v1; batches: 2 processed, 0 skipped, 1 rejected" in lines
    assert f"rejected batch c_secret.csv: {CR_ONLY}" in lines
    assert "not ready (modified in the last 600 s), left for the next run: e_fresh.csv" in lines
    assert (
        "not read, left for the next run: loop.csv (a symbolic link loop), "
        "d_gone.csv (vanished after the inbox was listed)"
    ) in lines
    assert f"catalog: {lake.resolve() / 'catalog.duckdb'}" in lines

    decided = CliRunner().invoke(
        app,
        [
            "query",
            "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, "
            "coinsurance_cents, paid_cents FROM case_decisions ORDER BY case_id",
            "--lake",
            str(lake),
            "--format",
            "json",
        ],
    )
    assert decided.exit_code == 0, decided.output
    assert [tuple(r.values()) for r in json.loads(decided.stdout)] == [
        tuple(r) for r in GLOB_LAKE_DECISIONS
    ]
    assert query(lake, "SELECT case_id, errors FROM rejections") == GLOB_LAKE_REJECTIONS
    # The member id of the unreadable file is nowhere: output, reason, reason.txt, log.
    reasons = [r[0] for r in query(lake, "SELECT reason FROM batches WHERE reason IS NOT NULL")]
    assert reasons == [CR_ONLY]
    [kept] = eventlog.quarantine_dir(lake).iterdir()
    assert (kept / "reason.txt").read_text(encoding="utf-8") == f"c_secret.csv: {CR_ONLY}\n"
    assert SECRET_MEMBER not in stdout_text + stderr_text
    assert SECRET_MEMBER not in prefect_logs(prefect_server, lake)


def prefect_logs(server: Stack, lake: Path) -> str:
    """Every log line the Prefect server holds for the run on `lake`, once recorded."""
    api = Api(server.api_url)
    try:
        [run] = [r for r in api.flow_runs() if r["parameters"].get("lake") == str(lake)]
        settled(lambda: len(api.logs(run["id"])))
        logs = api.logs(run["id"])
    finally:
        api.close()
    assert any("c_secret.csv" in entry["message"] for entry in logs)  # the run's own log
    return "\n".join(entry["message"] for entry in logs)


def test_a_file_that_changes_while_it_is_read_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy still going on while the run reads the file: the bytes read are not the
    file's, so no batch is made of them."""
    growing = tmp_path / "a.csv"
    growing.write_bytes(csv_bytes([m002("C1", 1)]))
    read = Path.read_bytes

    def read_then_append(path: Path) -> bytes:
        data = read(path)
        with path.open("ab") as more:
            more.write(b"C2,M002\n")
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_append)
    with pytest.raises(InboxFileUnavailable) as raised:
        read_inbox_file(growing)
    assert (raised.value.name, raised.value.reason) == ("a.csv", "changed while it was read")


def test_a_sql_reader_error_never_quotes_a_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "staging.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE staging (ingest_seq INTEGER, member_id TEXT)"))
        connection.execute(sa.text(f"INSERT INTO staging VALUES (1, '{SECRET_MEMBER}')"))
    engine.dispose()

    def failing_read(*args: object, **kwargs: object) -> pl.DataFrame:
        raise pl.exceptions.ComputeError(
            f'could not append value: "{SECRET_MEMBER}" of type: str to the builder'
        )

    monkeypatch.setattr(pl, "read_database", failing_read)
    with pytest.raises(SqlSourceError) as raised:
        pull_increment(f"sqlite:///{database}", "staging", tmp_path / "lake")
    assert str(raised.value) == (
        f"sql:staging@sqlite:///{database}: its rows cannot be read as a table: could not "
        'append value: "..." of type: str to the builder'
    )
    assert not (tmp_path / "lake").exists()  # reading the high-water mark wrote nothing
