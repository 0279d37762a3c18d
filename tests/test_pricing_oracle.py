"""Property: `price()` (vectorised) agrees with §5 written as a loop (tests/pricing_oracle.py).

Random members with several spans per year (different deductibles, coinsurance
percents and maxima, 0 and none among them), random balances already applied per
member-year (spent at or past the maximum too), random batches (many cases per
member-year, ties in the dates, non-approved cases mixed in, file order apart from
case_id order), in the default order and in file order (`("row_number",)`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from claimsflow.core.pricing import PRICE_COLUMNS, PRICING_ORDER, price
from tests.hypothesis_support import examples
from tests.pricing_oracle import (
    APPROVED,
    Case,
    MemberYear,
    Priced,
    accumulated_frame,
    decisions_frame,
    price_cases,
)

START = dt.date(2024, 1, 1)
MEMBERS = ("M1", "M2", "M3")
DEDUCTIBLES = st.sampled_from([0, 1, 5_000, 20_000]) | st.integers(0, 60_000)
PERCENTS = st.sampled_from([0, 20, 50, 100]) | st.integers(0, 100)
MAXIMA = st.sampled_from([None, None, 0, 1, 6_000, 25_000]) | st.integers(0, 90_000)
STATUSES = st.sampled_from([APPROVED, APPROVED, APPROVED, "DENIED", "PENDED", "VOIDED"])
ORDERS = st.sampled_from([PRICING_ORDER, ("row_number",)])


@dataclass(frozen=True)
class Terms:
    start: int  # day offset from START where the span begins
    deductible: int | None
    percent: int | None
    oop_max: int | None


@dataclass(frozen=True)
class Batch:
    cases: list[Case]
    accumulated: dict[MemberYear, tuple[int, int]]
    order: tuple[str, ...]
    keyed: bool  # the frame carries the context's member key


@st.composite
def spans(draw: st.DrawFn) -> list[Terms]:
    """A member's spans over 2024-2025: consecutive, several per year; often with the
    terms of the span before but the percent (one span run for pricing)."""
    starts = sorted(draw(st.sets(st.integers(1, 729), max_size=5)) | {0})
    terms: list[Terms] = []
    for start in starts:
        same_terms = draw(st.booleans())
        if same_terms and terms:  # the same D and M, another percent (or not)
            terms.append(Terms(start, terms[-1].deductible, draw(PERCENTS), terms[-1].oop_max))
        else:
            terms.append(Terms(start, draw(DEDUCTIBLES), draw(PERCENTS), draw(MAXIMA)))
    if draw(st.integers(0, 9)) == 0:  # an approved case without terms (lenient rule sets)
        terms[-1] = Terms(terms[-1].start, None, None, None)
    return terms


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    terms_of = {member: draw(spans()) for member in MEMBERS}
    # Few distinct days: many ties in service and received dates.
    days = draw(st.lists(st.integers(0, 729), min_size=1, max_size=8))
    count = draw(st.integers(1, 60))
    numbers = draw(st.permutations(range(count)))  # case_id order apart from file order
    sorted_ids = draw(st.booleans())
    cases = []
    for row in range(count):
        member = draw(st.sampled_from(MEMBERS))
        day = draw(st.sampled_from(days))
        span = [t for t in terms_of[member] if t.start <= day][-1]
        service = START + dt.timedelta(days=day)
        cases.append(
            Case(
                case_id=f"C{(row if sorted_ids else numbers[row]):03d}",
                status=draw(STATUSES),
                member_id=member,
                service_date=service,
                received_date=service + dt.timedelta(days=draw(st.sampled_from([0, 0, 1, 9]))),
                row_number=row + 1,
                billed=draw(st.integers(1, 60_000)),
                fee_per_unit=draw(st.sampled_from([0, 1, 2_500, 8_000]) | st.integers(0, 30_000)),
                units=draw(st.integers(1, 3)),
                deductible=span.deductible,
                percent=span.percent,
                oop_max=span.oop_max,
            )
        )
    accumulated = {}
    for member in MEMBERS:
        for year in (2024, 2025):
            if draw(st.booleans()):
                accumulated[(member, year)] = (
                    draw(st.sampled_from([0, 5_000]) | st.integers(0, 70_000)),
                    draw(st.sampled_from([0, 6_000, 25_000]) | st.integers(0, 100_000)),
                )
    return Batch(cases, accumulated, draw(ORDERS), draw(st.booleans()))


def priced_rows(frame: pl.DataFrame) -> dict[str, Priced]:
    return {row[0]: Priced(*row[1:]) for row in frame.select("case_id", *PRICE_COLUMNS).iter_rows()}


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches())
def test_price_matches_the_spec_loop(batch: Batch) -> None:
    expected = price_cases(batch.cases, batch.accumulated, batch.order)
    for case in batch.cases:  # what the examples cover (--hypothesis-show-statistics)
        p = expected[case.case_id]
        if case.oop_max is not None and p.spent_before is not None:
            if p.spent_before >= case.oop_max:
                event("spent at or past the maximum")
            elif p.deductible + p.coinsurance == case.oop_max - p.spent_before:
                event("the cap is reached at this case")
    got = price(
        decisions_frame(batch.cases, keyed=batch.keyed),
        accumulated_frame(batch.accumulated),
        order=batch.order,
    )
    assert priced_rows(got) == expected
    assert got.select(PRICE_COLUMNS).schema == pl.Schema(dict.fromkeys(PRICE_COLUMNS, pl.Int64))


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_nothing_accumulated_is_the_same_as_none(batch: Batch) -> None:
    frame = decisions_frame(batch.cases)
    assert price(frame, None, order=batch.order).equals(
        price(frame, accumulated_frame({}), order=batch.order)
    )
    assert priced_rows(price(frame, order=batch.order)) == price_cases(batch.cases, {}, batch.order)


def test_oracle_by_hand() -> None:
    # The oracle itself, small enough to check by eye. M1: D = 100.00, 20 %, M = 150.00.
    # A: allowed min(300.00, 80.00 x 2) = 160.00; ded min(160.00, 100.00) = 100.00
    #    coins (6000 x 20 + 50) // 100 = 1200; room 15000 -> not capped; paid 160-100-12 = 48.00
    # B: allowed 80.00; ded 0; coins 1600; room 15000 - 11200 = 3800 -> 1600; paid 64.00
    # C: allowed 80.00; ded 0; coins 1600; room 15000 - 12800 = 2200 -> 1600 ... 12800+1600
    #    = 14400 < 15000: not capped; paid 64.00
    # D: allowed 80.00; ded 0; coins 1600; room 15000 - 14400 = 600 -> coins 600; paid 74.00
    def case(case_id: str, day: int, units: int, billed: int) -> Case:
        service = START + dt.timedelta(days=day)
        return Case(case_id, APPROVED, "M1", service, service, day, billed, 8_000, units,
                    10_000, 20, 15_000)  # fmt: skip

    priced = price_cases(
        [case("D", 4, 1, 9_000), case("A", 1, 2, 30_000), case("B", 2, 1, 9_000),
         case("C", 3, 1, 9_000)],
        {},
    )  # fmt: skip
    assert priced == {
        "A": Priced(16_000, 10_000, 1_200, 4_800, 0, 0),
        "B": Priced(8_000, 0, 1_600, 6_400, 10_000, 11_200),
        "C": Priced(8_000, 0, 1_600, 6_400, 10_000, 12_800),
        "D": Priced(8_000, 0, 600, 7_400, 10_000, 14_400),
    }
