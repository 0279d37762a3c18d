"""Spec §5 as the spec writes it: a loop over the cases in order, one step at a time.

The test oracle of `claimsflow.core.pricing.price` (tests/test_pricing_oracle.py).
Loops are fine here: it is short, plain and obviously the spec, not fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from claimsflow.core.rules.context import MEMBER_KEY

APPROVED = "APPROVED"
MemberYear = tuple[str, int]


@dataclass(frozen=True)
class Case:
    """An adjudicated case with the terms of the span covering its service date."""

    case_id: str
    status: str
    member_id: str
    service_date: dt.date
    received_date: dt.date
    row_number: int
    billed: int
    fee_per_unit: int
    units: int
    deductible: int | None  # D; None: no covering span (no terms at all)
    percent: int | None
    oop_max: int | None  # M; None: no maximum


@dataclass(frozen=True)
class Priced:
    allowed: int
    deductible: int
    coinsurance: int
    paid: int
    used_before: int | None  # the `used` the case saw (None unless APPROVED)
    spent_before: int | None  # the `spent` it saw


NOT_PRICED = Priced(0, 0, 0, 0, None, None)


def price_cases(
    cases: Iterable[Case],
    accumulated: Mapping[MemberYear, tuple[int, int]],
    order: Sequence[str] = ("service_date", "received_date", "case_id"),
) -> dict[str, Priced]:
    """case_id -> amounts, given (used, spent) already applied per member-year."""
    used = {key: u for key, (u, _) in accumulated.items()}
    spent = {key: s for key, (_, s) in accumulated.items()}
    priced: dict[str, Priced] = {}
    for case in sorted(cases, key=lambda c: tuple(getattr(c, name) for name in order)):
        if case.status != APPROVED:  # non-approved cases carry 0 and consume nothing
            priced[case.case_id] = NOT_PRICED
            continue
        year = (case.member_id, case.service_date.year)
        used_before, spent_before = used.get(year, 0), spent.get(year, 0)
        annual = case.deductible or 0  # no terms: no deductible,
        percent = case.percent or 0  # no coinsurance and no maximum
        # 1. allowed
        allowed = min(case.billed, case.fee_per_unit * case.units)
        # 2. deductible
        deductible = min(allowed, max(0, annual - used_before))
        # 3. coinsurance, half up
        coinsurance = ((allowed - deductible) * percent + 50) // 100
        # 4. out-of-pocket maximum
        if case.oop_max is not None:
            room = max(0, case.oop_max - spent_before)
            deductible = min(deductible, room)
            coinsurance = min(coinsurance, room - deductible)
        # 5. paid
        paid = allowed - deductible - coinsurance
        used[year] = used_before + deductible
        spent[year] = spent_before + deductible + coinsurance
        priced[case.case_id] = Priced(
            allowed, deductible, coinsurance, paid, used_before, spent_before
        )
    return priced


# --- the same cases as the frames `price()` takes -------------------------------------


def decisions_frame(cases: list[Case], *, keyed: bool = False) -> pl.DataFrame:
    """The cases as adjudicated decisions (`keyed`: with the context's member key)."""
    frame = pl.DataFrame(
        {
            "case_id": [c.case_id for c in cases],
            "row_number": [c.row_number for c in cases],
            "status": [c.status for c in cases],
            "member_id": [c.member_id for c in cases],
            "service_date": [c.service_date for c in cases],
            "received_date": [c.received_date for c in cases],
            "billed_cents": [c.billed for c in cases],
            "fee_allowed_cents": [c.fee_per_unit for c in cases],
            "units": [c.units for c in cases],
            "annual_deductible_cents": [c.deductible for c in cases],
            "coinsurance_percent": [c.percent for c in cases],
            "oop_max_cents": [c.oop_max for c in cases],
        },
        schema_overrides={
            "annual_deductible_cents": pl.Int64,
            "coinsurance_percent": pl.Int64,
            "oop_max_cents": pl.Int64,
        },
    )
    if keyed:  # an integer per member, in another order than member_id's
        key = pl.col("member_id").rank("dense", descending=True) - 1
        frame = frame.with_columns(key.cast(pl.UInt32).alias(MEMBER_KEY))
    return frame


def accumulated_frame(accumulated: Mapping[MemberYear, tuple[int, int]]) -> pl.DataFrame:
    """(member, year) -> (used, spent) as `price()`'s `accumulated` frame."""
    return pl.DataFrame(
        [
            {"member_id": m, "service_year": y, "used_cents": u, "spent_cents": s}
            for (m, y), (u, s) in accumulated.items()
        ],
        schema={
            "member_id": pl.String,
            "service_year": pl.Int32,
            "used_cents": pl.Int64,
            "spent_cents": pl.Int64,
        },
    )
