"""The 837 writer: valid under pyx12's 005010X222A1 map, read back to the same rows
by the reader and by pyx12, and its claim layout rules worked out by hand."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from claimsflow.x12 import CASE_COLUMNS, read_837
from claimsflow.x12.bench import bench_cases
from claimsflow.x12.segments import Delimiters
from claimsflow.x12.write837 import write_837
from tests.test_x12_helpers import pyx12_rows, validate_837


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {
        "case_id": "A-1",
        "member_id": "M1",
        "provider_id": "P1",
        "service_date": "2024-01-02",
        "received_date": "2024-01-05",
        "procedure_code": "99213",
        "diagnosis_code": "J45.909",
        "units": "1",
        "billed_amount": "125.00",
        "prior_auth_id": None,
        "claim_frequency": "1",
        "original_case_id": None,
    }
    return pl.DataFrame(
        [{**base, **row} for row in rows], schema=dict.fromkeys(CASE_COLUMNS, pl.String)
    )


def segments(text: str) -> list[str]:
    return [s.strip("\r\n") for s in text.split("~") if s.strip("\r\n")]


def test_sample_batch_is_valid_and_reads_back_to_the_same_rows() -> None:
    cases = bench_cases(600)
    text = write_837(cases)
    assert validate_837(text) == []
    back = read_837(text.encode())
    assert back.select(CASE_COLUMNS).equals(cases.select(CASE_COLUMNS))
    assert back.select(CASE_COLUMNS).to_dicts() == pyx12_rows(text)


@pytest.mark.parametrize(
    ("delimiters", "line_break"),
    [
        (Delimiters("|", ">", "!", "\x1c"), ""),
        (Delimiters("^", "\\", "{", "'"), "\r\n"),
        (Delimiters("*", ":", "^", "\n"), ""),
    ],
)
def test_any_delimiters(delimiters: Delimiters, line_break: str) -> None:
    cases = bench_cases(300)
    text = write_837(cases, delimiters=delimiters, line_break=line_break)
    assert text[103:106] == delimiters.element + delimiters.component + delimiters.segment
    assert validate_837(text) == []
    assert read_837(text.encode()).select(CASE_COLUMNS).equals(cases.select(CASE_COLUMNS))


def test_a_multi_line_claim_by_hand() -> None:
    text = write_837(
        frame(
            {"case_id": "A1-1", "billed_amount": "125.00"},
            {
                "case_id": "A1-2",
                "billed_amount": "80.5",
                "diagnosis_code": "E11.9",
                "prior_auth_id": "PA1",
            },
            {"case_id": "A1-3", "billed_amount": "10", "diagnosis_code": "J45.909", "units": "2"},
        )
    )
    found = segments(text)
    # CLM02 = 125.00 + 80.50 + 10.00 = 215.50; diagnoses in order of first use.
    claim = found[found.index("CLM*A1*215.50***11:B:1*Y*A*Y*Y") :]
    assert claim[:12] == [
        "CLM*A1*215.50***11:B:1*Y*A*Y*Y",
        "HI*ABK:J45909*ABF:E119",
        "LX*1",
        "SV1*HC:99213*125.00*UN*1***1",
        "DTP*472*D8*20240102",
        "LX*2",
        "SV1*HC:99213*80.5*UN*1***2",
        "DTP*472*D8*20240102",
        "REF*G1*PA1",
        "LX*3",
        "SV1*HC:99213*10*UN*2***1",
        "DTP*472*D8*20240102",
    ]
    assert "BHT*0019*00*0001*20240105*0000*CH" in found
    assert found[7:9] == ["HL*1**20*1", "NM1*85*2*BILLING PROVIDER*****XX*P1"]
    assert "HL*2*1*22*0" in found and "NM1*IL*1*SUBSCRIBER*PAT****MI*M1" in found
    assert validate_837(text) == []


def test_a_correction_carries_ref_f8_and_its_frequency() -> None:
    text = write_837(
        frame(
            {"case_id": "B7-1", "claim_frequency": "7", "original_case_id": "B6-1"},
            {"case_id": "B7-2", "claim_frequency": "7", "original_case_id": "B6-2"},
            {
                "case_id": "V1-1",
                "claim_frequency": "8",
                "original_case_id": "Q-1",
                "received_date": "2024-01-06",
            },
            {
                "case_id": "N-1",
                "claim_frequency": "1",
                "original_case_id": "IGNORED-1",
                "received_date": "2024-01-06",
            },
        )
    )
    found = segments(text)
    assert "CLM*B7*250.00***11:B:7*Y*A*Y*Y" in found and "REF*F8*B6" in found
    assert "CLM*V1*125.00***11:B:8*Y*A*Y*Y" in found and "REF*F8*Q" in found
    assert "REF*F8*IGNORED" not in found
    back = read_837(text.encode())
    assert back["original_case_id"].to_list() == ["B6-1", "B6-2", "Q-1", None]
    assert back["case_id"].to_list() == ["B7-1", "B7-2", "V1-1", "N-1"]
    assert validate_837(text) == []


def test_case_ids_without_a_line_number_are_one_line_claims() -> None:
    text = write_837(frame({"case_id": "CLM001000000001"}, {"case_id": "CLM001000000002"}))
    found = segments(text)
    assert "CLM*CLM001000000001*125.00***11:B:1*Y*A*Y*Y" in found
    assert read_837(text.encode())["case_id"].to_list() == [
        "CLM001000000001-1",
        "CLM001000000002-1",
    ]


def test_a_run_that_does_not_start_at_line_one_keeps_each_case_id_whole() -> None:
    text = write_837(frame({"case_id": "A-2"}, {"case_id": "A-3"}))
    assert read_837(text.encode())["case_id"].to_list() == ["A-2-1", "A-3-1"]


def test_a_new_claim_when_member_provider_or_received_date_changes() -> None:
    text = write_837(
        frame(
            {"case_id": "A-1"},
            {"case_id": "A-2", "member_id": "M2"},
            {"case_id": "B-1", "provider_id": "P2"},
            {"case_id": "B-2", "provider_id": "P2", "received_date": "2024-02-01"},
        )
    )
    found = segments(text)
    assert [s for s in found if s.startswith("CLM")] == [
        "CLM*A*125.00***11:B:1*Y*A*Y*Y",
        "CLM*A-2*125.00***11:B:1*Y*A*Y*Y",
        "CLM*B*125.00***11:B:1*Y*A*Y*Y",
        "CLM*B-2*125.00***11:B:1*Y*A*Y*Y",
    ]
    assert [s for s in found if s.startswith("ST*")] == [
        "ST*837*0001*005010X222A1",
        "ST*837*0002*005010X222A1",
    ]
    assert [s for s in found if s.startswith("HL*")] == [
        "HL*1**20*1",
        "HL*2*1*22*0",
        "HL*3*1*22*0",
        "HL*4**20*1",
        "HL*5*4*22*0",
        "HL*1**20*1",
        "HL*2*1*22*0",
    ]
    assert validate_837(text) == []


def test_more_than_twelve_diagnoses_split_the_claim() -> None:
    codes = [f"A{n:02d}.1" for n in range(13)]
    text = write_837(
        frame(*({"case_id": f"X-{n + 1}", "diagnosis_code": c} for n, c in enumerate(codes)))
    )
    assert sum(s.startswith("CLM") for s in segments(text)) == 13
    assert validate_837(text) == []
    assert read_837(text.encode())["diagnosis_code"].to_list() == codes


def test_fifty_lines_at_most_per_claim() -> None:
    text = write_837(frame(*({"case_id": f"X-{n}"} for n in range(1, 53))))
    assert [s for s in segments(text) if s.startswith("CLM")][:2] == [
        "CLM*X*6250.00***11:B:1*Y*A*Y*Y",
        "CLM*X-51*125.00***11:B:1*Y*A*Y*Y",
    ]
    assert validate_837(text) == []


def test_missing_values_read_back_missing() -> None:
    row = {
        "case_id": "E-1",
        "member_id": "",
        "provider_id": None,
        "procedure_code": None,
        "diagnosis_code": None,
        "units": None,
        "billed_amount": None,
        "claim_frequency": None,
    }
    back = read_837(write_837(frame(row)).encode()).row(0, named=True)
    assert back["member_id"] is None and back["provider_id"] is None
    assert back["procedure_code"] is None and back["diagnosis_code"] is None
    assert back["units"] is None and back["billed_amount"] is None
    assert back["claim_frequency"] == "1"  # CLM05-3 is required: missing is written as 1 (§1)


def test_invalid_values_read_back_as_written() -> None:
    rows = frame(
        {
            "service_date": "2024-02-30",
            "units": "0",
            "billed_amount": "12.345",
            "procedure_code": "9921",
        }
    )
    back = read_837(write_837(rows).encode()).row(0, named=True)
    assert (back["service_date"], back["units"], back["billed_amount"], back["procedure_code"]) == (
        "2024-02-30",
        "0",
        "12.345",
        "9921",
    )


def test_values_holding_a_delimiter_are_refused() -> None:
    with pytest.raises(ValueError, match="member_id"):
        write_837(frame({"member_id": "M*1"}))
    with pytest.raises(ValueError, match="distinct"):
        write_837(frame({}), delimiters=Delimiters("*", "*", "^", "~"))


def test_no_rows_is_an_interchange_without_claims() -> None:
    text = write_837(frame({}).clear())
    assert segments(text)[-2:] == ["GE*0*1", "IEA*1*000000001"]
    assert read_837(text.encode()).height == 0
