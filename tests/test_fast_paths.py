"""The scale-driven rewrites give exactly what the plain expressions give.

`cents` slices the text instead of capturing with regexes; first-row-wins and
the duplicate rule find repeated values by sorting hashes instead of a hash
table (claimsflow/core/repeats.py); pricing reads the approved cases' amounts back by
rank; a case's coverage span is found one span rank at a time. Each is checked
against an oracle written independently (plain Python on generated values) or
against amounts worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimsflow.core.pricing import PRICE_COLUMNS, price
from claimsflow.core.repeats import hash_repeated, repeats_earlier_row
from claimsflow.core.rules import context
from claimsflow.core.rules.context import MEMBER_KEY
from claimsflow.core.validation import validate_batch
from schemas.text_checks import cents
from tests.hypothesis_support import examples
from tests.spec_helpers import case, text_batch

_AMOUNT = re.compile(r"[0-9]+(\.[0-9]{1,2})?")


def cents_oracle(text: str | None) -> int | None:
    """Spec §1: a decimal with at most 2 places, 13 significant integer digits at most."""
    if text is None or not _AMOUNT.fullmatch(text):
        return None
    whole, _, frac = text.partition(".")
    if len(whole.lstrip("0")) > 13:
        return None
    return int(whole) * 100 + int(frac.ljust(2, "0"))


amount_like = st.one_of(
    st.text(alphabet="0123456789.", max_size=20),
    st.text(alphabet="0123456789.-+eE ,x\n\u0663\uff11", max_size=10),
    st.builds(
        lambda zeros, digits, frac: "0" * zeros + digits + frac,
        st.integers(0, 25),
        st.text(alphabet="0123456789", min_size=1, max_size=16),
        st.sampled_from(["", ".", ".5", ".05", ".50", ".555", ".5.5"]),
    ),
    st.none(),
)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(amount_like, max_size=40))
def test_cents_matches_the_oracle(values: list[str | None]) -> None:
    frame = pl.DataFrame({"billed_amount": values}, schema={"billed_amount": pl.String})
    parsed = frame.select(cents(pl.col("billed_amount"))).to_series().to_list()
    assert parsed == [cents_oracle(v) for v in values]


def test_cents_by_hand() -> None:
    values = ["12", "12.5", "12.05", "0012.50", "0.07", "1234567890123.99", "12345678901234"]
    frame = pl.DataFrame({"billed_amount": [*values, "1.234", ".5", "5.", "1e3", " 1"]})
    assert frame.select(cents(pl.col("billed_amount"))).to_series().to_list() == [
        1200,
        1250,
        1205,
        1250,
        7,
        123456789012399,
        None,
        None,
        None,
        None,
        None,
        None,
    ]


def repeats_oracle(values: list[str | None]) -> list[bool]:
    seen: set[str] = set()
    out = []
    for value in values:
        out.append(value is not None and value in seen)
        if value is not None:
            seen.add(value)
    return out


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(["A", "B", "C", "D", ""]), st.text()), max_size=60
    )
)
def test_repeats_earlier_row_matches_the_oracle(values: list[str | None]) -> None:
    series = pl.Series("case_id", values, dtype=pl.String)
    assert repeats_earlier_row(series).to_list() == repeats_oracle(values)


def test_repeats_by_hand() -> None:
    series = pl.Series("case_id", ["C1", "C2", "C1", None, None, "C2", "C1", "C3"])
    assert repeats_earlier_row(series).to_list() == [
        False,
        False,
        True,
        False,
        False,
        True,
        True,
        False,
    ]


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.integers(0, 20), max_size=80))
def test_hash_repeated_is_occurs_more_than_once(values: list[int]) -> None:
    series = pl.Series("h", values, dtype=pl.UInt64)
    assert hash_repeated(series).to_list() == [values.count(v) > 1 for v in values]


def _decisions(statuses: list[str]) -> pl.DataFrame:
    n = len(statuses)
    return pl.DataFrame(
        {
            "case_id": [f"C{i}" for i in range(n)],
            "member_id": ["M1"] * n,
            "service_date": [dt.date(2024, 3, 1 + i) for i in range(n)],
            "received_date": [dt.date(2024, 3, 10)] * n,
            "billed_cents": [10_000] * n,
            "fee_allowed_cents": [8_000] * n,
            "units": [1] * n,
            "annual_deductible_cents": [5_000] * n,
            "coinsurance_percent": [20] * n,
            "status": statuses,
        }
    )


def test_amounts_go_back_to_their_cases() -> None:
    # Allowed 80.00 each; deductible 50.00 taken by C1 (the first approved), then
    # 30.00 left; coinsurance 20 % of the rest.
    priced = price(_decisions(["DENIED", "APPROVED", "PENDED", "APPROVED"]))
    # Balances before: C1 saw used 0, spent 0; C3 saw used 50.00, spent 50.00 + 6.00.
    assert priced.select(PRICE_COLUMNS).rows() == [
        (0, 0, 0, 0, None, None),
        (8_000, 5_000, 600, 2_400, 0, 0),
        (0, 0, 0, 0, None, None),
        (8_000, 0, 1_600, 6_400, 5_000, 5_600),
    ]


def test_no_approved_case_prices_to_zero() -> None:
    priced = price(_decisions(["DENIED", "PENDED"]))
    assert priced.schema["allowed_cents"] == pl.Int64
    assert priced.select(PRICE_COLUMNS).rows() == [(0, 0, 0, 0, None, None)] * 2


span_world = st.lists(  # per member: the lengths of its spans, then the gap after each
    st.lists(st.tuples(st.integers(1, 40), st.integers(0, 5)), min_size=1, max_size=12),
    min_size=1,
    max_size=6,
)


@settings(max_examples=examples(100), deadline=None)
@given(
    span_world,
    st.lists(st.tuples(st.integers(-1, 6), st.integers(-5, 400)), max_size=40),
    st.booleans(),
)
def test_covering_span_matches_the_oracle(
    world: list[list[tuple[int, int]]],
    cases: list[tuple[int, int]],
    by_search: bool,
) -> None:
    """Each case finds its member's span that starts on or before its day (and
    covers it or not: the caller checks the end), the latest such; by one step per
    span rank, or (`by_search`) by binary search."""
    day0 = dt.date(2024, 1, 1)
    rows = []  # member, start, end (days from day0), spans listed out of order
    for member, lengths in enumerate(world):
        start = 0
        for length, gap in lengths:
            rows.append((member, start, start + length - 1))
            start += length + gap
    rows.reverse()
    spans = pl.DataFrame(
        {
            MEMBER_KEY: [m for m, _, _ in rows],
            "coverage_start": [day0 + dt.timedelta(days=s) for _, s, _ in rows],
            "coverage_end": [day0 + dt.timedelta(days=e) for _, _, e in rows],
            "deductible_cents": [m * 1000 + s for m, s, _ in rows],
            "coinsurance_percent": [20] * len(rows),
            # Every other span has a maximum (the span's start day, in cents).
            "oop_max_cents": [None if s % 2 else s for _, s, _ in rows],
        },
        schema_overrides={MEMBER_KEY: pl.UInt32, "oop_max_cents": pl.Int64},
    )
    known = [(m if 0 <= m < len(world) else None, d) for m, d in cases]
    member_key = pl.Series(MEMBER_KEY, [m for m, _ in known], dtype=pl.UInt32)
    service = pl.Series("service_date", [day0 + dt.timedelta(days=d) for _, d in known])

    def oracle(member: int | None, day: int) -> int | None:
        starts = [s for m, s, _ in rows if m == member and s <= day]
        return None if not starts else max(starts)

    limit = 0 if by_search else context.UNROLLED_SPANS
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(context, "UNROLLED_SPANS", limit)
        found = context._covering_span(service, member_key, spans)
    expected = [oracle(m, d) for m, d in known]
    assert found["coverage_start"].to_list() == [
        None if s is None else day0 + dt.timedelta(days=s) for s in expected
    ]
    assert found["annual_deductible_cents"].to_list() == [
        None if s is None or m is None else m * 1000 + s
        for (m, _), s in zip(known, expected, strict=True)
    ]
    assert found["oop_max_cents"].to_list() == [None if s is None or s % 2 else s for s in expected]


def test_the_valid_cases_come_in_one_piece_whatever_pieces_the_batch_was_read_in() -> None:
    # A batch read in three pieces (as the CSV reader leaves a large file): the valid
    # cases' columns are each one piece, so the steps after validation do not copy
    # them again (issue 15). Row 2 is rejected (no member_id).
    rows = [case("A1"), case("A2", member=""), case("A3"), case("A4"), case("A5")]
    whole = text_batch(rows)
    pieces = pl.concat([whole.slice(0, 2), whole.slice(2, 2), whole.slice(4)], rechunk=False)
    assert pieces["case_id"].n_chunks() == 3

    validated = validate_batch(pieces)

    assert validated.cases["case_id"].to_list() == ["A1", "A3", "A4", "A5"]
    assert {validated.cases[c].n_chunks() for c in validated.cases.columns} == {1}


def test_a_batch_given_up_to_validation_gives_the_same_cases_and_is_left_empty() -> None:
    # release_raw takes the text columns out of the batch as validation is done with
    # them (issue 15): the same valid cases, in the same order (the void row B4 last),
    # the same rejections, and nothing left in the text frame. A2 is rejected (no
    # member_id); B4 voids the earlier case E1.
    rows = [
        case("A1") | {"claim_frequency": "", "original_case_id": ""},
        case("A2", member="") | {"claim_frequency": "", "original_case_id": ""},
        case("B4", member="M2") | {"claim_frequency": "8", "original_case_id": "E1"},
        case("A3", provider="P2") | {"claim_frequency": "1", "original_case_id": ""},
    ]
    whole = text_batch(rows)
    decided = pl.DataFrame({"case_id": ["E1"], "status": ["APPROVED"]})

    def pieces() -> pl.DataFrame:
        return pl.concat([whole.slice(0, 2), whole.slice(2)], rechunk=False)

    kept = validate_batch(pieces(), decided)
    given_up = pieces()
    released = validate_batch(given_up, decided, release_raw=True)

    assert released.cases["case_id"].to_list() == ["A1", "A3", "B4"]
    assert released.cases["member_id"].to_list() == ["M1", "M1", "M2"]
    assert released.cases["provider_id"].to_list() == ["P1", "P2", "P1"]
    assert released.cases["row_number"].to_list() == [1, 4, 3]
    assert released.cases.equals(kept.cases)
    assert released.rejections.equals(kept.rejections)
    assert released.rejections["case_id"].to_list() == ["A2"]
    assert given_up.width == 0
