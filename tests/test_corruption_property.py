"""Property tests (issue #7): batches with random corruption never crash the
pipeline, and nothing is lost: every row read is decided or rejected, once.

A valid batch (CSV, JSON Lines or Parquet) is drawn, then damaged at the byte
level: truncated, bytes flipped, delimiters, quotes, line breaks, NULs or invalid
UTF-8 inserted, slices dropped or repeated. Reading either refuses the file
(`UnreadableBatch`, a rejected batch) or gives a table whose rows all come out
as decisions or rejections.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.ingest.reading import UnreadableBatch, read_batch_bytes
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import (
    RunContext,
    batch_id_of_bytes,
    decide_batch,
    process_batch,
)
from claimsflow.vocabulary import PROCESSED, REJECTED
from schemas.case_batch import CASE_COLUMNS
from tests.batch_helpers import CASE_HEADER, case_row, write_reference
from tests.hypothesis_support import examples
from tests.lake_runner import RULESET_V1

SUFFIX = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}

# Values a column may take: valid ones, invalid ones, and hostile text.
CELL_VALUES: dict[str, list[str]] = {
    "member_id": ["M001", "M002", "M999", "", "M" * 40],
    "provider_id": ["P001", "P002", "P003", "P404", ""],
    "service_date": ["2024-05-01", "2024-02-30", "05/01/2024", "", "2023-06-01"],
    "received_date": ["2024-05-10", "2026-01-01", "2024-04-01", "x"],
    "procedure_code": ["99213", "99214", "J1100", "9921", "ABCDE"],
    "diagnosis_code": ["J45.909", "I10", "j45", "Z99.12345"],
    "units": ["1", "4", "5", "0", "1000", "2.0", "-1", ""],
    "billed_amount": ["80.00", "12000.00", "0", "1.234", "1e3", "9999999.99", "10000000.00"],
    "prior_auth_id": ["", "PA-1"],
}
HOSTILE_TEXT = ["=1+1", "a,b", 'say "hi"', "line\nbreak", "\r", "\x00", "é", ";", "{}", "[]"]
INSERTS = [b",", b'"', b"\n", b"\r\n", b";", b"\x00", b"\xff", b"\xef\xbb\xbf", b"{", b"]", b"PAR1"]


@st.composite
def case_rows(draw: st.DrawFn) -> list[dict[str, str]]:
    count = draw(st.integers(0, 6))
    rows = []
    for i in range(count):
        overrides = {
            column: draw(st.sampled_from(values + HOSTILE_TEXT))
            for column, values in CELL_VALUES.items()
            if draw(st.booleans())
        }
        # Case ids repeat now and then (first row wins, later ones are rejected).
        case_id = draw(st.sampled_from([f"C{i}", "C0", "", "bad id"]))
        rows.append(case_row(case_id, **overrides))
    return rows


def encode(rows: list[dict[str, str]], fmt: str) -> bytes:
    if fmt == "csv":
        buffer = io.StringIO()
        # RFC 4180 line ends: with "\n" alone, Python's writer leaves a lone "\r" in a
        # cell unquoted, and a cell ending in "\r" reads as a CRLF line end.
        writer = csv.DictWriter(buffer, fieldnames=list(CASE_HEADER), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")
    if fmt == "jsonl":
        return b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    frame = pl.DataFrame(rows, schema=dict.fromkeys(CASE_HEADER, pl.String))
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "drop", "repeat"]))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "insert":
            piece = draw(st.sampled_from(INSERTS) | st.binary(min_size=1, max_size=8))
            data = data[:at] + piece + data[at:]
        elif kind == "drop":
            data = data[:at] + data[at + draw(st.integers(1, 40)) :]
        elif kind == "repeat":
            data = data[:at] + data[at : at + draw(st.integers(1, 60))] + data[at:]
    return data


@st.composite
def damaged_batches(draw: st.DrawFn) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(sorted(SUFFIX)))
    return fmt, draw(corrupted(encode(draw(case_rows()), fmt)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return load_reference(write_reference(tmp_path_factory.mktemp("property") / "reference"))


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_ruleset(RULESET_V1)


def assert_every_row_accounted_for(
    frame: pl.DataFrame, reference: Reference, ruleset: RuleSet
) -> None:
    decision = decide_batch(frame, reference, ruleset, MemoryHistory())
    assert decision.rows_in == frame.height
    assert decision.rows_in == decision.decisions.height + decision.rejections.height
    # Each row is decided or rejected, exactly once.
    decided = decision.cases["row_number"].to_list()
    rejected = decision.rejections["row_number"].to_list()
    assert sorted(decided + rejected) == list(range(1, frame.height + 1))
    assert decision.decisions.height == decision.cases.height
    assert decision.decisions["case_id"].n_unique() == decision.decisions.height
    # Each error names its column: one of the contract's, a column of the file (a
    # JSON key given twice), or a field past the header ("column 11").
    named = {*CASE_COLUMNS, *frame.columns}
    for errors in decision.rejections["errors"].to_list():
        assert errors
        for error in errors:
            column = error.split(": ", 1)[0]
            assert column in named or re.fullmatch(r"column \d+", column), error


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=damaged_batches())
def test_corrupted_batches_never_crash_and_lose_no_row(
    batch: tuple[str, bytes], reference: Reference, ruleset: RuleSet
) -> None:
    fmt, data = batch
    try:
        frame = read_batch_bytes(data, fmt)
    except UnreadableBatch as exc:
        assert str(exc)  # a reason for the batch record
        return
    assert_every_row_accounted_for(frame, reference, ruleset)


cell_text = st.text(max_size=12) | st.sampled_from(HOSTILE_TEXT)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(
        st.lists(cell_text, min_size=len(CASE_HEADER), max_size=len(CASE_HEADER)), max_size=5
    ),
    fmt=st.sampled_from(sorted(SUFFIX)),
)
def test_any_text_in_well_formed_files_is_read_verbatim(
    cells: list[list[str]], fmt: str, reference: Reference, ruleset: RuleSet
) -> None:
    """Properly quoted or encoded text of any kind is never lost or altered: the
    file reads as one row per record, and `raw` keeps every cell as written."""
    rows = [dict(zip(CASE_HEADER, values, strict=True)) for values in cells]
    if fmt == "jsonl" and not rows:  # no line, no column: a 0-byte file
        with pytest.raises(UnreadableBatch, match="the file is empty"):
            read_batch_bytes(encode(rows, fmt), fmt)
        return
    frame = read_batch_bytes(encode(rows, fmt), fmt)
    assert frame.height == len(rows)
    assert [json.loads(raw) for raw in frame["raw"].to_list()] == rows
    assert_every_row_accounted_for(frame, reference, ruleset)


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=damaged_batches())
def test_recorded_batches_match_what_was_decided(
    batch: tuple[str, bytes], reference: Reference, ruleset: RuleSet
) -> None:
    fmt, data = batch
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lake = root / "lake"
        eventlog.ensure_lake(lake)
        path = root / f"batch{SUFFIX[fmt]}"
        path.write_bytes(data)
        run = RunContext(lake, reference, ruleset, "property-run")
        outcome = process_batch(path, run)
        batch_id = batch_id_of_bytes(data)
        recorded = read_recorded(lake, batch_id)
        assert recorded["batch"] == [
            {
                "status": outcome.status,
                "rows_in": outcome.rows_in,
                "rows_decided": outcome.rows_decided,
                "rows_rejected": outcome.rows_rejected,
            }
        ]
        assert outcome.status in (PROCESSED, REJECTED)
        assert outcome.rows_in == outcome.rows_decided + outcome.rows_rejected
        assert len(recorded["decisions"]) == outcome.rows_decided
        assert len(recorded["rejections"]) == outcome.rows_rejected
        kept = eventlog.quarantine_dir(lake) / batch_id / path.name
        assert kept.exists() is (outcome.status == REJECTED)
        if outcome.status == REJECTED:
            assert kept.read_bytes() == data
        assert list(eventlog.staging_dir(lake).iterdir()) == []


def read_recorded(lake: Path, batch_id: str) -> dict[str, list[dict[str, Any]]]:
    folder = eventlog.batches_dir(lake) / batch_id
    batch = pl.read_parquet(folder / "batch.parquet").select(
        "status", "rows_in", "rows_decided", "rows_rejected"
    )
    return {
        "batch": batch.to_dicts(),
        "decisions": pl.read_parquet(folder / "decisions.parquet").to_dicts(),
        "rejections": pl.read_parquet(folder / "rejections.parquet").to_dicts(),
    }
