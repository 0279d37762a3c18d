"""Spec §1 input formats and §3 unreadable files: claimsflow.ingest.reading and inbox discovery."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from claimsflow.ingest.inbox import discover_inbox
from claimsflow.ingest.reading import UnreadableBatch, batch_format, read_batch_bytes
from claimsflow.vocabulary import RAW, READ_ERRORS, ROW_NUMBER
from tests.batch_helpers import CASE_HEADER, REQUIRED_HEADER, case_row, csv_bytes

# The same two cases in every format. Text formats carry them as the spec says;
# the Parquet file carries typed columns (Date, Int64, Decimal, Float64).
ROWS = [
    case_row("A-1", billed_amount="80.00", prior_auth_id="PA-7"),
    case_row(
        "B_2",
        member_id="M002",
        service_date="2024-06-02",
        received_date="2024-06-03",
        diagnosis_code="I10",
        units="2",
        billed_amount="125.50",
    ),
]
EXPECTED_TEXT = {
    "case_id": ["A-1", "B_2"],
    "member_id": ["M001", "M002"],
    "provider_id": ["P001", "P001"],
    "service_date": ["2024-05-01", "2024-06-02"],
    "received_date": ["2024-05-10", "2024-06-03"],
    "procedure_code": ["99213", "99213"],
    "diagnosis_code": ["J45.909", "I10"],
    "units": ["1", "2"],
    "billed_amount": ["80.00", "125.50"],
}


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def typed_parquet(billed: pl.Series) -> bytes:
    frame = pl.DataFrame(
        {
            "case_id": ["A-1", "B_2"],
            "member_id": ["M001", "M002"],
            "provider_id": ["P001", "P001"],
            "service_date": [dt.date(2024, 5, 1), dt.date(2024, 6, 2)],
            "received_date": [dt.date(2024, 5, 10), dt.date(2024, 6, 3)],
            "procedure_code": ["99213", "99213"],
            "diagnosis_code": ["J45.909", "I10"],
            "units": pl.Series([1, 2], dtype=pl.Int64),
            "billed_amount": billed,
            "prior_auth_id": ["PA-7", None],
            "extra_note": ["first", "second"],
        }
    )
    return parquet_bytes(frame)


def jsonl_bytes() -> bytes:
    """JSON Lines with numbers and strings mixed in one column, and blank lines."""
    first = {k: v for k, v in ROWS[0].items() if k != "units"} | {"units": 1}
    second = dict(ROWS[1]) | {"billed_amount": "125.50", "extra_note": "second"}
    lines = [json.dumps(first), "", json.dumps(second), "", ""]
    return "\n".join(lines).encode("utf-8")


def required_text(frame: pl.DataFrame) -> dict[str, list[str | None]]:
    return {c: frame[c].to_list() for c in REQUIRED_HEADER}


# --- one text frame whatever the format ---------------------------------------


def test_csv_reads_every_column_as_text() -> None:
    frame = read_batch_bytes(csv_bytes(ROWS), "csv")
    assert required_text(frame) == EXPECTED_TEXT
    assert all(frame.schema[c] == pl.String for c in CASE_HEADER)
    assert frame["prior_auth_id"].to_list() == ["PA-7", ""]


def test_csv_keeps_leading_zeros_and_does_not_infer_numbers() -> None:
    rows = [case_row("007", member_id="0042", units="01", billed_amount="080.00")]
    frame = read_batch_bytes(csv_bytes(rows), "csv")
    assert frame["case_id"].to_list() == ["007"]
    assert frame["member_id"].to_list() == ["0042"]
    assert frame["units"].to_list() == ["01"]
    assert frame["billed_amount"].to_list() == ["080.00"]


def test_parquet_with_typed_columns_reads_as_the_same_text_decimal() -> None:
    billed = pl.Series([Decimal("80.00"), Decimal("125.50")], dtype=pl.Decimal(12, 2))
    frame = read_batch_bytes(typed_parquet(billed), "parquet")
    assert required_text(frame) == EXPECTED_TEXT
    assert frame["prior_auth_id"].to_list() == ["PA-7", None]
    assert all(frame.schema[c] == pl.String for c in CASE_HEADER)


def test_parquet_float_amount_is_rendered_as_plain_decimal_text() -> None:
    frame = read_batch_bytes(typed_parquet(pl.Series([80.25, 125.5])), "parquet")
    assert frame["billed_amount"].to_list() == ["80.25", "125.5"]
    assert frame["service_date"].to_list() == ["2024-05-01", "2024-06-02"]
    assert frame["units"].to_list() == ["1", "2"]


def test_jsonl_numbers_and_strings_mixed_and_blank_lines() -> None:
    frame = read_batch_bytes(jsonl_bytes(), "jsonl")
    assert frame.height == 2
    assert required_text(frame) == EXPECTED_TEXT
    assert frame[ROW_NUMBER].to_list() == [1, 2]


def test_all_formats_give_the_same_required_text() -> None:
    billed = pl.Series([Decimal("80.00"), Decimal("125.50")], dtype=pl.Decimal(12, 2))
    frames = [
        read_batch_bytes(csv_bytes(ROWS), "csv"),
        read_batch_bytes(typed_parquet(billed), "parquet"),
        read_batch_bytes(jsonl_bytes(), "jsonl"),
    ]
    texts = [required_text(f) for f in frames]
    assert texts[0] == texts[1] == texts[2] == EXPECTED_TEXT


# --- row identity ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_row_number_is_one_based_in_file_order(fmt: str) -> None:
    # case ids deliberately not in sorted order: row_number follows the file.
    rows = [case_row(c) for c in ("Z9", "A1", "M5", "B2")]
    if fmt == "csv":
        data = csv_bytes(rows)
    elif fmt == "jsonl":
        data = "\n".join(json.dumps(r) for r in rows).encode()
    else:
        data = parquet_bytes(pl.DataFrame(rows))
    frame = read_batch_bytes(data, fmt)
    assert frame[ROW_NUMBER].to_list() == [1, 2, 3, 4]
    assert frame["case_id"].to_list() == ["Z9", "A1", "M5", "B2"]


def test_raw_is_json_of_the_row_and_keeps_extra_columns() -> None:
    rows = [case_row("C1", note="hello, world", batch_ref="77")]
    frame = read_batch_bytes(csv_bytes(rows), "csv")
    raw = json.loads(frame[RAW][0])
    assert raw["note"] == "hello, world"
    assert raw["batch_ref"] == "77"
    assert raw["case_id"] == "C1"
    assert raw["billed_amount"] == "80.00"
    assert ROW_NUMBER not in raw and RAW not in raw


def test_raw_of_jsonl_keeps_extra_columns() -> None:
    frame = read_batch_bytes(jsonl_bytes(), "jsonl")
    raws = [json.loads(r) for r in frame[RAW].to_list()]
    assert raws[1]["extra_note"] == "second"
    assert raws[1]["case_id"] == "B_2"


def test_raw_of_parquet_keeps_extra_columns() -> None:
    frame = read_batch_bytes(typed_parquet(pl.Series([80.0, 125.5])), "parquet")
    raws = [json.loads(r) for r in frame[RAW].to_list()]
    assert [r["extra_note"] for r in raws] == ["first", "second"]
    assert raws[0]["service_date"] == "2024-05-01"


def test_column_names_are_matched_exactly() -> None:
    header = ["Case_ID", *REQUIRED_HEADER[1:]]
    data = csv_bytes([case_row("C1") | {"Case_ID": "C1"}], header)
    with pytest.raises(UnreadableBatch, match="case_id"):
        read_batch_bytes(data, "csv")


# --- header only -------------------------------------------------------------------


def test_header_only_csv_is_a_zero_row_batch() -> None:
    frame = read_batch_bytes(",".join(CASE_HEADER).encode() + b"\n", "csv")
    assert frame.height == 0
    assert set(REQUIRED_HEADER) <= set(frame.columns)


def test_header_only_csv_without_final_newline_is_a_zero_row_batch() -> None:
    frame = read_batch_bytes(",".join(REQUIRED_HEADER).encode(), "csv")
    assert frame.height == 0


# --- unreadable files ----------------------------------------------------------------


def _reason(data: bytes, fmt: str) -> str:
    with pytest.raises(UnreadableBatch) as caught:
        read_batch_bytes(data, fmt)
    reason = str(caught.value)
    assert reason.strip(), "an unreadable batch needs a reason"
    assert "\n" not in reason.strip(), "the reason is one line"
    return reason


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_zero_byte_file_is_unreadable(fmt: str) -> None:
    assert "empty" in _reason(b"", fmt)


def test_non_utf8_csv_is_unreadable() -> None:
    data = csv_bytes([case_row("C1", member_id="Müller")]).decode().encode("latin-1")
    assert "UTF-8" in _reason(data, "csv")


def test_non_utf8_jsonl_is_unreadable() -> None:
    data = json.dumps(case_row("C1", member_id="Müller"), ensure_ascii=False).encode("latin-1")
    assert "UTF-8" in _reason(data, "jsonl")


MORE_FIELDS = "not in the header (the line has more than its 10 fields)"
NINE_OF_TEN = "not in the line (it has 9 of the header's 10 fields)"


def test_csv_line_with_more_fields_than_the_header_is_a_row_error() -> None:
    data = csv_bytes([case_row("C1")]) + b"C2,M001,P001,2024-05-01,2024-05-10,99213,I10,1,5,,x,y\n"
    frame = read_batch_bytes(data, "csv")
    assert frame.select("case_id", "prior_auth_id", READ_ERRORS).rows() == [
        ("C1", "", None),
        (
            "C2",
            "",
            [
                {
                    "column": "column 11",
                    "error": "not in the header (the line has more than its 10 fields)",
                }
            ],
        ),
    ]


def test_csv_line_with_fewer_fields_than_the_header_names_each_missing_column() -> None:
    # A file picked up while it was being copied: its last line cut inside billed_amount.
    data = csv_bytes([case_row("C1")]) + b"C2,M001,P001,2024-05-01,2024-05-10,99213,I10,1,12"
    frame = read_batch_bytes(data, "csv")
    assert frame.select("case_id", "billed_amount", "prior_auth_id", READ_ERRORS).rows() == [
        ("C1", "80.00", "", None),
        (
            "C2",
            "12",
            None,  # not in the line: null, not an empty cell
            [
                {
                    "column": "prior_auth_id",
                    "error": "not in the line (it has 9 of the header's 10 fields)",
                }
            ],
        ),
    ]


def test_unterminated_quote_is_unreadable() -> None:
    data = csv_bytes([case_row("C1")]) + b'"C2,M001,P001\n'
    _reason(data, "csv")


def test_truncated_parquet_is_unreadable() -> None:
    data = parquet_bytes(pl.DataFrame(ROWS))
    assert "parquet" in _reason(data[: len(data) // 2], "parquet")


def test_parquet_name_with_csv_bytes_is_unreadable() -> None:
    assert "parquet" in _reason(csv_bytes(ROWS), "parquet")


def test_csv_name_with_parquet_bytes_is_unreadable() -> None:
    _reason(parquet_bytes(pl.DataFrame(ROWS)), "csv")


@pytest.mark.parametrize("line", ["[1, 2, 3]", "42", '"text"', "not json at all"])
def test_jsonl_with_a_non_object_line_is_unreadable(line: str) -> None:
    data = json.dumps(ROWS[0]) + "\n" + line + "\n" + json.dumps(ROWS[1]) + "\n"
    assert "jsonl" in _reason(data.encode(), "jsonl")


@pytest.mark.parametrize("missing", REQUIRED_HEADER)
def test_missing_required_column_is_unreadable_and_named(missing: str) -> None:
    header = [c for c in CASE_HEADER if c != missing]
    reason = _reason(csv_bytes(ROWS, header), "csv")
    assert "missing required column" in reason
    assert missing in reason


def test_missing_required_column_in_parquet_and_jsonl() -> None:
    frame = pl.DataFrame(ROWS).drop("billed_amount")
    assert "billed_amount" in _reason(parquet_bytes(frame), "parquet")
    lines = "\n".join(json.dumps(r) for r in frame.to_dicts())
    assert "billed_amount" in _reason(lines.encode(), "jsonl")


def test_repeated_column_name_in_csv_header_is_unreadable() -> None:
    header = [*CASE_HEADER, "units"]
    data = ",".join(header).encode() + b"\n" + csv_bytes([case_row("C1")]).split(b"\n")[1] + b",2\n"
    _reason(data, "csv")


def test_prior_auth_id_column_is_optional() -> None:
    frame = read_batch_bytes(csv_bytes(ROWS, REQUIRED_HEADER), "csv")
    assert frame.height == 2


# --- what is a batch -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.parquet", "parquet"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        (".a.csv", None),
        (".hidden", None),
        ("a.txt", None),
        ("a.csv.bak", None),
        ("a.json", None),
        ("README", None),
    ],
)
def test_batch_format_by_name(name: str, fmt: str | None) -> None:
    assert batch_format(Path(name)) == fmt


def test_discover_inbox_orders_batches_by_name_and_names_the_rest(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("b.csv", "a10.jsonl", "a2.parquet", "A.csv", "c.ndjson", ".hidden.csv"):
        (inbox / name).write_bytes(b"x")
    for name in ("notes.txt", "batch.csv.tmp", "data.json"):
        (inbox / name).write_bytes(b"x")
    (inbox / "sub.csv").mkdir()
    before = sorted((p.name, p.read_bytes()) for p in inbox.iterdir() if p.is_file())

    batches, ignored = discover_inbox(inbox)

    assert [p.name for p in batches] == ["A.csv", "a10.jsonl", "a2.parquet", "b.csv", "c.ndjson"]
    assert sorted(p.name for p in ignored) == sorted(
        [".hidden.csv", "notes.txt", "batch.csv.tmp", "data.json", "sub.csv"]
    )
    # Nothing is touched by discovery.
    assert sorted((p.name, p.read_bytes()) for p in inbox.iterdir() if p.is_file()) == before


def test_links_leading_out_of_the_inbox_are_not_batches(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_bytes(csv_bytes(ROWS))
    (inbox / "link.csv").symlink_to(outside)
    (inbox / "real.csv").write_bytes(csv_bytes(ROWS))
    batches, ignored = discover_inbox(inbox)
    assert [p.name for p in batches] == ["real.csv"]
    assert [p.name for p in ignored] == ["link.csv"]


def test_discover_missing_inbox_is_empty(tmp_path: Path) -> None:
    assert discover_inbox(tmp_path / "nowhere") == ([], [])


def test_jsonl_keys_and_kinds_after_the_first_thousand_objects_are_read() -> None:
    # The keys and types are learnt from the first objects: what comes later is read
    # all the same (another key, a list where there was text, a repeated key).
    first = [json.dumps({**case_row(f"C{i}"), "units": [1]}) for i in range(1000)]
    later = [
        json.dumps({**case_row("L1"), "note": "late key"}),
        json.dumps(case_row("L2")),
        json.dumps(case_row("L3")).replace('"units": "1"', '"units": 2, "units": 3'),
    ]
    frame = read_batch_bytes("\n".join([*first, *later]).encode(), "jsonl")
    assert frame.height == 1003
    tail = frame.tail(3).select("case_id", "units", "note", READ_ERRORS).rows()
    assert tail == [
        ("L1", "1", "late key", None),
        ("L2", "1", None, None),
        (
            "L3",
            "2",
            None,
            [{"column": "units", "error": "given more than once in this JSON object"}],
        ),
    ]
    assert frame["units"][0] == "[1]"
