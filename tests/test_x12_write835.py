"""The 835 writer against §11: every rule with amounts worked out by hand, the
balancing rule as a property over random amounts, and pyx12's validator."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimsflow.x12 import write835
from claimsflow.x12.build import dollars
from claimsflow.x12.segments import Delimiters
from claimsflow.x12.write835 import REMIT_COLUMNS, remittance_835, write_835
from tests.hypothesis_support import examples
from tests.test_x12_helpers import validate_835

BATCH = "3f2a" * 16  # a SHA-256 hex batch id: 64 characters


def cases(*rows: dict[str, Any]) -> pl.DataFrame:
    """Case rows with defaults: an APPROVED 99213 of P1 paid in full."""
    base: dict[str, Any] = {
        "case_id": "C1",
        "provider_id": "P1",
        "status": "APPROVED",
        "reason_codes": [],
        "billed_cents": 10000,
        "allowed_cents": 10000,
        "deductible_cents": 0,
        "coinsurance_cents": 0,
        "paid_cents": 10000,
        "procedure_code": "99213",
        "units": 1,
        "service_date": dt.date(2024, 1, 2),
    }
    frame = pl.DataFrame(
        [{**base, **row} for row in rows],
        schema={
            "case_id": pl.String,
            "provider_id": pl.String,
            "status": pl.String,
            "reason_codes": pl.List(pl.String),
            "billed_cents": pl.Int64,
            "allowed_cents": pl.Int64,
            "deductible_cents": pl.Int64,
            "coinsurance_cents": pl.Int64,
            "paid_cents": pl.Int64,
            "procedure_code": pl.String,
            "units": pl.Int64,
            "service_date": pl.Date,
        },
    )
    return frame.select(REMIT_COLUMNS)


def segments(text: str, delimiters: Delimiters | None = None) -> list[list[str]]:
    d = delimiters or Delimiters("*", ":", "^", "~")
    return [s.strip("\r\n").split(d.element) for s in text.split(d.segment) if s.strip("\r\n")]


def lines(text: str) -> list[str]:
    return [s.strip("\r\n") for s in text.split("~") if s.strip("\r\n")]


def cents(amount: str) -> int:
    """'150.00' -> 15000, by integer arithmetic."""
    whole, _, fraction = amount.partition(".")
    assert len(fraction) == 2
    return int(whole) * 100 + int(fraction)


def claim_blocks(text: str) -> list[list[list[str]]]:
    """The segments of each CLP (up to the next CLP or SE)."""
    blocks: list[list[list[str]]] = []
    for seg in segments(text):
        if seg[0] == "CLP":
            blocks.append([seg])
        elif seg[0] in ("SE", "LX", "ST"):
            continue
        elif blocks and blocks[-1][-1][0] != "SE":
            blocks[-1].append(seg)
    return blocks


# --- §11 by hand ---------------------------------------------------------------------


def test_approved_case_with_contractual_deductible_and_coinsurance() -> None:
    # billed 150.00, allowed 100.00, deductible 20.00, coinsurance 16.00, paid 64.00:
    # CO-45 = 150.00 - 100.00 = 50.00; PR-1 20.00, PR-2 16.00; CLP05 = 36.00;
    # 150.00 - 64.00 = 86.00 = 50.00 + 20.00 + 16.00.
    text = write_835(
        cases(
            {
                "case_id": "C1",
                "billed_cents": 15000,
                "allowed_cents": 10000,
                "deductible_cents": 2000,
                "coinsurance_cents": 1600,
                "paid_cents": 6400,
            }
        ),
        batch_id=BATCH,
    )
    found = lines(text)
    claim = found[found.index("CLP*C1*1*150.00*64.00*36.00*12*C1") :]
    assert claim[:6] == [
        "CLP*C1*1*150.00*64.00*36.00*12*C1",
        "NM1*QC*1",
        "SVC*HC:99213*150.00*64.00**1",
        "DTM*472*20240102",
        "CAS*CO*45*50.00",
        "CAS*PR*1*20.00**2*16.00",
    ]
    assert "BPR*I*64.00*C*CHK************20260101" in found
    assert validate_835(text) == []


def test_only_a_deductible_or_only_coinsurance() -> None:
    text = write_835(
        cases(
            {
                "case_id": "A",
                "billed_cents": 5000,
                "allowed_cents": 5000,
                "deductible_cents": 5000,
                "paid_cents": 0,
            },
            {
                "case_id": "B",
                "billed_cents": 5000,
                "allowed_cents": 4000,
                "coinsurance_cents": 800,
                "paid_cents": 3200,
            },
        ),
        batch_id=BATCH,
    )
    found = lines(text)
    assert "CAS*PR*1*50.00" in found  # A: all of it deductible
    assert "CAS*CO*45*10.00" in found and "CAS*PR*2*8.00" in found  # B
    assert "CLP*A*1*50.00*0.00*50.00*12*A" in found
    assert "CLP*B*1*50.00*32.00*8.00*12*B" in found
    assert validate_835(text) == []


def test_paid_in_full_has_no_adjustment() -> None:
    text = write_835(cases({}), batch_id=BATCH)
    assert not any(line.startswith("CAS") for line in lines(text))
    assert "CLP*C1*1*100.00*100.00*0.00*12*C1" in lines(text)


def test_denied_case_adjusts_the_whole_billed_amount_under_its_first_reason() -> None:
    denied = {
        "status": "DENIED",
        "reason_codes": ["CO-29", "CO-96"],
        "billed_cents": 4250,
        "allowed_cents": 0,
        "paid_cents": 0,
    }
    text = write_835(cases(denied), batch_id=BATCH)
    found = lines(text)
    assert "CLP*C1*4*42.50*0.00*0.00*12*C1" in found
    assert "SVC*HC:99213*42.50*0.00**1" in found
    assert "CAS*CO*29*42.50" in found
    assert [line for line in found if line.startswith("CAS")] == ["CAS*CO*29*42.50"]
    assert validate_835(text) == []


def test_denied_under_a_patient_responsibility_group() -> None:
    text = write_835(
        cases({"status": "DENIED", "reason_codes": ["PR-B7"], "allowed_cents": 0, "paid_cents": 0}),
        batch_id=BATCH,
    )
    assert "CAS*PR*B7*100.00" in lines(text)


def test_transaction_that_pays_nothing_is_a_notification() -> None:
    denied = {"status": "DENIED", "reason_codes": ["CO-27"], "allowed_cents": 0, "paid_cents": 0}
    text = write_835(cases(denied), batch_id=BATCH)
    assert "BPR*H*0.00*C*NON************20260101" in lines(text)
    assert validate_835(text) == []


def test_one_transaction_per_provider_bpr02_sums_its_clp04_cases_in_case_id_order() -> None:
    text = write_835(
        cases(
            {
                "case_id": "C3",
                "provider_id": "P2",
                "paid_cents": 1000,
                "allowed_cents": 1000,
                "billed_cents": 1000,
            },
            {
                "case_id": "C2",
                "provider_id": "P1",
                "paid_cents": 2550,
                "allowed_cents": 2550,
                "billed_cents": 3000,
            },
            {
                "case_id": "C1",
                "provider_id": "P1",
                "paid_cents": 1025,
                "allowed_cents": 1025,
                "billed_cents": 1025,
            },
        ),
        batch_id=BATCH,
    )
    segs = segments(text)
    tags = [s[0] for s in segs]
    assert tags.count("ST") == 2 and tags.count("SE") == 2
    payees = [s[4] for s in segs if s[:2] == ["N1", "PE"]]
    assert payees == ["P1", "P2"]
    bprs = [s[2] for s in segs if s[0] == "BPR"]
    assert bprs == ["35.75", "10.00"]  # 25.50 + 10.25; 10.00
    assert [s[1] for s in segs if s[0] == "CLP"] == ["C1", "C2", "C3"]
    traces = [s[2] for s in segs if s[0] == "TRN"]
    assert traces == [BATCH[:40] + "-0001", BATCH[:40] + "-0002"]
    assert all(len(t) <= 50 for t in traces)
    assert ["GE", "2", "1"] in segs
    assert validate_835(text) == []


def test_se01_counts_the_segments_of_each_transaction() -> None:
    text = write_835(cases({"case_id": "A"}, {"case_id": "B", "provider_id": "P2"}), batch_id=BATCH)
    segs = segments(text)
    starts = [i for i, s in enumerate(segs) if s[0] == "ST"]
    ends = [i for i, s in enumerate(segs) if s[0] == "SE"]
    for start, end in zip(starts, ends, strict=True):
        assert int(segs[end][1]) == end - start + 1
        assert segs[end][2] == segs[start][2]


def test_member_id_when_given_names_the_patient() -> None:
    frame = cases({}).with_columns(pl.lit("M77").alias("member_id"))
    text = write_835(frame, batch_id=BATCH)
    assert "NM1*QC*1******MI*M77" in lines(text)  # NM103-NM107 empty
    assert validate_835(text) == []


def test_other_delimiters_and_no_line_breaks() -> None:
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\x1c")
    text = write_835(cases({}), batch_id=BATCH, delimiters=delimiters, line_break="")
    assert "\n" not in text
    assert "SVC|HC>99213|100.00|100.00||1" in text
    assert text[103:106] == "|>\x1c"
    assert validate_835(text) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "PENDED"}, "status"),
        ({"status": "DENIED", "reason_codes": [], "paid_cents": 0}, "reason code"),
        ({"status": "DENIED", "reason_codes": ["P-HIGH-DOLLAR"], "paid_cents": 0}, "reason code"),
        ({"paid_cents": -1}, "negative"),
        ({"paid_cents": 9000}, "balance"),
        ({"allowed_cents": 20000, "paid_cents": 20000}, "balance"),
        ({"status": "DENIED", "reason_codes": ["CO-29"]}, "pays something"),
        ({"case_id": "C*1"}, "delimiter"),
        ({"case_id": "C\u00e91"}, "not ASCII"),
    ],
)
def test_cases_that_cannot_be_remitted(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_835(cases(change), batch_id=BATCH)


@pytest.mark.parametrize("chunk_rows", [1, 2, 250_000])
def test_a_file_written_row_by_row_holds_the_same_bytes_as_the_string(
    chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two providers (two transaction sets), a denial, other delimiters, no line breaks,
    # chunks that cut a transaction set: the streamed file and the joined string must
    # agree byte for byte, and hold each segment once.
    monkeypatch.setattr(write835, "CHUNK_ROWS", chunk_rows)
    frame = cases(
        {"case_id": "A1", "provider_id": "P2"},
        {
            "case_id": "A2",
            "provider_id": "P1",
            "status": "DENIED",
            "reason_codes": ["CO-29"],
            "allowed_cents": 0,
            "paid_cents": 0,
        },
        {"case_id": "A3", "provider_id": "P1", "allowed_cents": 8000, "paid_cents": 8000},
    )
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="~")
    for plain in (True, False):
        remittance = (
            remittance_835(frame, batch_id=BATCH)
            if plain
            else remittance_835(frame, batch_id=BATCH, delimiters=delimiters, line_break="")
        )
        written = io.BytesIO()
        remittance.write_to(written)
        text = remittance.text()
        assert written.getvalue() == text.encode("ascii")
        assert text.count("ST*835*" if plain else "ST|835|") == 2
        assert text.count("CLP*" if plain else "CLP|") == 3
        assert text.endswith("IEA*1*000000001~\n" if plain else "IEA|1|000000001~")


def test_no_case_no_file() -> None:
    with pytest.raises(ValueError, match="no case"):
        write_835(cases({}).clear(), batch_id=BATCH)


# --- properties ----------------------------------------------------------------------


@st.composite
def remitted(draw: st.DrawFn) -> pl.DataFrame:
    count = draw(st.integers(1, 8))
    rows = []
    for number in range(count):
        billed = draw(st.integers(1, 99_999_999))
        provider = draw(st.sampled_from(["P1", "P2", "P3"]))
        if draw(st.booleans()):
            allowed = draw(st.integers(0, billed))
            deductible = draw(st.integers(0, allowed))
            coinsurance = draw(st.integers(0, allowed - deductible))
            rows.append(
                {
                    "case_id": f"C{number:03d}",
                    "provider_id": provider,
                    "billed_cents": billed,
                    "allowed_cents": allowed,
                    "deductible_cents": deductible,
                    "coinsurance_cents": coinsurance,
                    "paid_cents": allowed - deductible - coinsurance,
                }
            )
        else:
            reason = draw(st.sampled_from(["CO-29", "CO-96", "CO-B7", "PR-27", "OA-18", "PI-197"]))
            rows.append(
                {
                    "case_id": f"C{number:03d}",
                    "provider_id": provider,
                    "status": "DENIED",
                    "reason_codes": [reason, "CO-151"],
                    "billed_cents": billed,
                    "allowed_cents": 0,
                    "paid_cents": 0,
                }
            )
    return cases(*rows)


@settings(max_examples=examples(60), deadline=None)
@given(remitted())
def test_every_claim_balances_and_bpr02_sums_clp04(frame: pl.DataFrame) -> None:
    text = write_835(frame, batch_id=BATCH)
    for block in claim_blocks(text):
        clp = block[0]
        adjustments = 0
        for seg in block:
            if seg[0] == "CAS":
                # Triplets (reason, amount, quantity) from CAS02.
                adjustments += sum(cents(seg[i]) for i in range(3, len(seg), 3) if seg[i])
        assert cents(clp[3]) - cents(clp[4]) == adjustments
        svc = next(s for s in block if s[0] == "SVC")
        assert (svc[2], svc[3]) == (clp[3], clp[4])
    paid_by_transaction: list[int] = []
    declared: list[int] = []
    for seg in segments(text):
        if seg[0] == "BPR":
            declared.append(cents(seg[2]))
            paid_by_transaction.append(0)
        elif seg[0] == "CLP":
            paid_by_transaction[-1] += cents(seg[4])
    assert declared == paid_by_transaction
    providers = frame.get_column("provider_id").unique().sort().to_list()
    assert [s[4] for s in segments(text) if s[:2] == ["N1", "PE"]] == providers


@settings(max_examples=examples(15), deadline=None)
@given(remitted())
def test_every_835_passes_the_validator(frame: pl.DataFrame) -> None:
    assert validate_835(write_835(frame, batch_id=BATCH)) == []


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.integers(min_value=-(10**15), max_value=10**15), min_size=1, max_size=50))
def test_cents_are_written_as_dollars_with_two_decimals(amounts: list[int]) -> None:
    def by_hand(cents: int) -> str:
        sign = "-" if cents < 0 else ""
        return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"

    written = pl.select(dollars(pl.lit(pl.Series(amounts, dtype=pl.Int64)))).to_series()
    assert written.to_list() == [by_hand(c) for c in amounts]
    assert pl.select(dollars(pl.lit(pl.Series([0, 5, 100, 12345])))).to_series().to_list() == [
        "0.00",
        "0.05",
        "1.00",
        "123.45",
    ]
