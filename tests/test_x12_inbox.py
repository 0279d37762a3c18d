"""837 batches in the inbox (spec §10 through §1-§9): read into the same text frame as
a CSV, decided by the one batch path, broken files quarantined.

The decisions of tests/x12_files.py are worked out by hand there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimsflow.ingest.reading import UnreadableBatch, batch_format, read_batch_bytes
from tests.batch_helpers import case_row, write_csv, write_reference
from tests.hypothesis_support import whole_runs
from tests.lake_runner import run_lake
from tests.test_x12_helpers import SAMPLES, render, sample_files
from tests.test_x12_property import interchanges
from tests.x12_files import FIRST_837, SECOND_837, batch_id, interchange

DECISIONS = (
    "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, "
    "coinsurance_cents, paid_cents, decision_source, decided_by FROM case_decisions "
    "ORDER BY case_id"
)


def catalog(lake: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(lake / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "inbox", write_reference(tmp_path / "ref"), tmp_path / "lake"


def test_837_and_x12_names_are_batches() -> None:
    assert batch_format(Path("a.837")) == "x12"
    assert batch_format(Path("B.X12")) == "x12"
    assert batch_format(Path(".hidden.837")) is None


def test_an_837_batch_is_decided_like_csv_rows(world: tuple[Path, Path, Path]) -> None:
    inbox, ref, lake = world
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    [outcome] = run_lake(inbox, ref, lake)
    assert (outcome.status, outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (
        "PROCESSED",
        7,
        6,
        1,
    )
    assert outcome.batch_id == batch_id(FIRST_837)
    adjudication = ("ADJUDICATION", None)
    assert catalog(lake, DECISIONS) == [
        ("CLM1-1", "APPROVED", [], 40000, 40000, 0, 0, *adjudication),
        ("CLM1-2", "APPROVED", [], 25000, 10000, 3000, 12000, *adjudication),
        ("CLM1-3", "DENIED", ["CO-197"], 0, 0, 0, 0, *adjudication),
        ("CLM2-1", "DENIED", ["CO-242"], 0, 0, 0, 0, *adjudication),
        ("CLM3-1", "DENIED", ["CO-29"], 0, 0, 0, 0, *adjudication),
        ("CLM4-1", "PENDED", ["P-HIGH-DOLLAR"], 0, 0, 0, 0, *adjudication),
    ]
    [(row_number, case_id, errors, raw)] = catalog(
        lake, "SELECT row_number, case_id, errors, raw FROM rejections"
    )
    assert (row_number, case_id) == (4, "CLM1-4")
    assert len(errors) == 1 and errors[0].startswith("units")
    assert json.loads(str(raw)) == {
        "case_id": "CLM1-4",
        "member_id": "M001",
        "provider_id": "P001",
        "service_date": "2024-05-01",
        "received_date": "2024-05-10",
        "procedure_code": "99213",
        "diagnosis_code": "J45.90",
        "units": "0",
        "billed_amount": "80",
        "prior_auth_id": None,
        "claim_frequency": "1",
        "original_case_id": None,
        "claim_id": "CLM1",
        "line": "4",
    }
    # The case rows keep what the 837 said: the claim's DTP for CLM2, RD8's first day.
    assert catalog(
        lake,
        "SELECT case_id, provider_id, service_date::VARCHAR, diagnosis_code, billed_cents "
        "FROM cases WHERE case_id IN ('CLM1-2', 'CLM2-1', 'CLM4-1') ORDER BY case_id",
    ) == [
        ("CLM1-2", "P001", "2024-05-01", "E11.9", 30000),
        ("CLM2-1", "P003", "2024-05-02", "J45.90", 8000),
        ("CLM4-1", "P001", "2024-05-03", "J45.90", 1050000),
    ]


def test_837_corrections_void_and_replace(world: tuple[Path, Path, Path]) -> None:
    inbox, ref, lake = world
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    (inbox / "b.x12").write_text(SECOND_837, encoding="utf-8")
    _first, second = run_lake(inbox, ref, lake)
    assert (second.status, second.rows_decided, second.voided_originals) == ("PROCESSED", 2, 2)
    rows = {r[0]: r[1:] for r in catalog(lake, DECISIONS)}
    # CLM5 (frequency 8) voids CLM2-1; CLM6 (7) voids CLM3-1 and is adjudicated:
    # M002's 2024 span, deductible 250.00 at 0 %: 80.00 all deductible.
    assert rows["CLM2-1"] == ("VOIDED", [], 0, 0, 0, 0, "CORRECTION", "CLM5-1")
    assert rows["CLM5-1"][:2] == ("VOIDED", [])
    assert rows["CLM3-1"] == ("VOIDED", [], 0, 0, 0, 0, "CORRECTION", "CLM6-1")
    assert rows["CLM6-1"] == ("APPROVED", [], 8000, 8000, 0, 0, "ADJUDICATION", None)


def test_csv_and_837_batches_share_one_history(world: tuple[Path, Path, Path]) -> None:
    """A CSV batch earlier in name order uses M001's deductible: the 837 sees it (a
    month earlier: the same day would make CLM1-1 its duplicate)."""
    inbox, ref, lake = world
    earlier = case_row("EARLIER", service_date="2024-04-01", billed_amount="500.00", units="4")
    write_csv(inbox / "0.csv", [earlier])
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    run_lake(inbox, ref, lake)
    rows = {r[0]: r[1:] for r in catalog(lake, DECISIONS)}
    # EARLIER used 400.00 of 500.00; CLM1-1 (allowed 400.00) takes the last 100.00
    # and pays (300.00 x 80 %) = 240.00; CLM1-2 has no deductible left:
    # coinsurance 250.00 x 20 % = 50.00, paid 200.00.
    assert rows["EARLIER"][2:6] == (40000, 40000, 0, 0)
    assert rows["CLM1-1"][2:6] == (40000, 10000, 6000, 24000)
    assert rows["CLM1-2"][2:6] == (25000, 0, 5000, 20000)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (FIRST_837.replace("SE*49*0001", "SE*48*0001"), "SE01 '48' does not count"),
        (FIRST_837.replace("GE*1*1~", "GE*2*1~"), "GE01"),
        (FIRST_837.replace("IEA*1*000000001~\n", ""), "ISA without a matching IEA"),
        (interchange(["BHT*0019*00*0001*20240510*1200*CH"], version="004010X098A1"), "GS08"),
        ("case_id,member_id\nC1,M1\n", "not an X12 interchange"),
    ],
    ids=["se-count", "ge-count", "no-iea", "other-version", "a-csv"],
)
def test_a_broken_837_is_a_rejected_quarantined_batch(
    world: tuple[Path, Path, Path], text: str, reason: str
) -> None:
    inbox, ref, lake = world
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    (inbox / "z.837").write_text(text, encoding="utf-8")
    good, bad = run_lake(inbox, ref, lake)
    assert good.status == "PROCESSED"  # the run goes on with the other batches
    assert bad.status == "REJECTED"
    assert bad.reason is not None and reason in bad.reason
    assert bad.reason.startswith("is not a valid X12 837 batch") or "not an X12" in bad.reason
    kept = lake / "quarantine" / bad.batch_id
    assert (kept / "z.837").read_text(encoding="utf-8") == text
    assert catalog(
        lake, f"SELECT status, rows_in, reason FROM batches WHERE batch_id = '{bad.batch_id}'"
    ) == [("REJECTED", 0, bad.reason)]


def test_the_reader_error_becomes_an_unreadable_batch() -> None:
    with pytest.raises(UnreadableBatch, match=r"interchange 1, segment \d+: .*SE01"):
        read_batch_bytes(FIRST_837.replace("SE*49*", "SE*9*").encode(), "x12")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"shared X12 samples missing ({SAMPLES})")
def test_the_shared_837_samples_run_through_the_pipeline(world: tuple[Path, Path, Path]) -> None:
    """Every distinct 5010 sample is a processed batch with a row per service line
    (SV1 segment), every row decided or rejected; a sample whose bytes repeat an
    earlier one is SKIPPED (§6); the 4010 ones are rejected for their version."""
    inbox, ref, lake = world
    inbox.mkdir()
    expected: dict[str, int] = {}
    seen: set[bytes] = set()
    for path in sample_files("lfh-5010-837p"):
        data = path.read_bytes()
        (inbox / path.name).write_bytes(data)
        expected[path.name] = -1 if data in seen else len(re.findall(rb"~\s*SV1\*", data))
        seen.add(data)
    for path in sample_files("lfh-4010-837p"):
        (inbox / f"v4010-{path.name}").write_bytes(path.read_bytes())
    outcomes = {o.source: o for o in run_lake(inbox, ref, lake)}
    assert len(outcomes) == len(expected) + len(sample_files("lfh-4010-837p"))
    for name, lines in expected.items():
        o = outcomes[name]
        if lines < 0:
            assert o.status == "SKIPPED", name
            continue
        assert o.status == "PROCESSED", (name, o.reason)
        assert o.rows_in == lines > 0
        assert o.rows_decided + o.rows_rejected == o.rows_in
    for name, o in outcomes.items():
        if name.startswith("v4010-"):
            assert o.status == "REJECTED" and o.reason is not None and "GS08" in o.reason
    # ICD-9 diagnoses do not have the ICD-10 shape: every 5010 line is a rejected row
    # naming diagnosis_code (with whatever else each one lacks).
    errors = catalog(lake, "SELECT errors FROM rejections")
    assert len(errors) == sum(n for n in expected.values() if n > 0)
    assert all(any(e.startswith("diagnosis_code") for e in row[0]) for row in errors)


@whole_runs(8)
@given(built=st.lists(interchanges(), min_size=1, max_size=2), damage=st.integers(0, 4))
def test_generated_837s_with_any_delimiters_never_crash_a_run(
    tmp_path_factory: pytest.TempPathFactory, built: list[object], damage: int
) -> None:
    """Random delimiters, claim shapes and missing values: the batch is PROCESSED with
    every line decided or rejected; damaged, it is REJECTED. Never a crash."""
    root = tmp_path_factory.mktemp("gen837")
    inbox, lake = root / "inbox", root / "lake"
    ref = write_reference(root / "ref")
    inbox.mkdir()
    text = render(built)  # type: ignore[arg-type]
    if damage == 1:
        text = text[: len(text) * 2 // 3]  # cut short
    elif damage == 2:
        text = text.replace("ST*", "ST*X", 1) if "ST*" in text else "ISA"
    (inbox / "gen.837").write_text(text, encoding="utf-8")
    [outcome] = run_lake(inbox, ref, lake)
    if outcome.status == "PROCESSED":
        assert outcome.rows_decided + outcome.rows_rejected == outcome.rows_in
        assert catalog(lake, "SELECT count(*) FROM cases")[0][0] == outcome.rows_decided
    else:
        assert outcome.status == "REJECTED" and damage in (1, 2)
        assert outcome.reason and "\n" not in outcome.reason
