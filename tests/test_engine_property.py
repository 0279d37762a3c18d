"""Property test: the vectorised pipeline against a row-at-a-time model of §4 and §5.

Hypothesis builds small random worlds (members with one to three coverage spans,
providers, a fee schedule, and one to three batches of 1-40 valid cases whose
keys collide and whose dates sit on the boundaries), runs them through
`claimsflow.pipeline.batch.decide_batch` batch after batch, and compares every case's
status, reason codes and four amounts with `model_decisions` below: a plain loop
over the cases in the spec's orders, written straight from the spec's text.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from claimsflow.core.history import MemoryHistory
from tests.hypothesis_support import examples
from tests.spec_helpers import (
    Fee,
    Provider,
    Span,
    advance,
    build_reference,
    case,
    decide,
    ruleset_v1,
    write_reference,
)

APPROVED, PENDED, DENIED = "APPROVED", "PENDED", "DENIED"
TIMELY_FILING_DAYS = 365
HIGH_DOLLAR_CENTS = 1_000_000
DENY_CODES = ("CO-31", "CO-26", "CO-27", "CO-B7", "CO-242", "CO-29", "CO-96", "CO-197", "CO-151")


# --- the world -------------------------------------------------------------------------


@dataclass(frozen=True)
class MSpan:
    member_id: str
    start: dt.date
    end: dt.date | None
    deductible: int  # cents
    percent: int


@dataclass(frozen=True)
class MProvider:
    provider_id: str
    suspended: bool
    in_network: bool


@dataclass(frozen=True)
class MFee:
    procedure_code: str
    fee: int  # cents per unit
    auth_required: bool
    max_units: int | None


@dataclass(frozen=True)
class MCase:
    case_id: str
    member_id: str
    provider_id: str
    service: dt.date
    received: dt.date
    procedure_code: str
    units: int
    billed: int  # cents
    auth: str | None

    @property
    def key(self) -> tuple[str, str, dt.date, str]:
        return (self.member_id, self.provider_id, self.service, self.procedure_code)


@dataclass(frozen=True)
class World:
    spans: list[MSpan]
    providers: list[MProvider]
    fees: list[MFee]
    batches: list[list[MCase]]


@dataclass(frozen=True)
class Outcome:
    status: str
    codes: list[str]
    amounts: tuple[int, int, int, int]  # allowed, deductible, coinsurance, paid


# --- the model: §4 and §5, one case at a time -------------------------------------------


def model_decisions(world: World) -> dict[str, Outcome]:
    spans_of: dict[str, list[MSpan]] = {}
    for span in world.spans:
        spans_of.setdefault(span.member_id, []).append(span)
    providers = {p.provider_id: p for p in world.providers}
    fees = {f.procedure_code: f for f in world.fees}

    def covering(c: MCase) -> MSpan | None:
        for span in spans_of.get(c.member_id, []):
            if span.start <= c.service and (span.end is None or c.service <= span.end):
                return span
        return None

    def deny_codes(c: MCase) -> list[str]:
        """Reason codes of rules 1-8, in table order."""
        codes: list[str] = []
        spans = spans_of.get(c.member_id)
        if spans is None:
            codes.append("CO-31")
        elif covering(c) is None:
            earliest = min(s.start for s in spans)
            codes.append("CO-26" if c.service < earliest else "CO-27")
        provider = providers.get(c.provider_id)
        if provider is None or provider.suspended:
            codes.append("CO-B7")
        if provider is not None and not provider.in_network:
            codes.append("CO-242")
        if (c.received - c.service).days > TIMELY_FILING_DAYS:
            codes.append("CO-29")
        fee = fees.get(c.procedure_code)
        if fee is None:
            codes.append("CO-96")
        if fee is not None and fee.auth_required and not c.auth:
            codes.append("CO-197")
        if fee is not None and fee.max_units is not None and c.units > fee.max_units:
            codes.append("CO-151")
        return codes

    live_before: set[tuple[str, str, dt.date, str]] = set()  # APPROVED/PENDED, earlier batches
    used: dict[tuple[str, int], int] = {}  # (member, year) -> deductible applied
    results: dict[str, Outcome] = {}
    for batch in world.batches:
        # Rule 9, in the order (received_date, case_id).
        duplicate: dict[str, bool] = {}
        live_in_batch: set[tuple[str, str, dt.date, str]] = set()
        for c in sorted(batch, key=lambda c: (c.received, c.case_id)):
            duplicate[c.case_id] = c.key in live_before or c.key in live_in_batch
            base_denied = bool(deny_codes(c))
            if not base_denied:  # base outcome APPROVED or PENDED
                live_in_batch.add(c.key)
        status: dict[str, str] = {}
        codes: dict[str, list[str]] = {}
        for c in batch:
            high = c.billed > HIGH_DOLLAR_CENTS
            codes[c.case_id] = (
                deny_codes(c)
                + (["CO-18"] if duplicate[c.case_id] else [])
                + (["P-HIGH-DOLLAR"] if high else [])
            )
            if any(code in DENY_CODES or code == "CO-18" for code in codes[c.case_id]):
                status[c.case_id] = DENIED
            elif high:
                status[c.case_id] = PENDED
            else:
                status[c.case_id] = APPROVED
        # §5, in the order (service_date, received_date, case_id).
        priced: dict[str, tuple[int, int, int, int]] = {}
        for c in sorted(batch, key=lambda c: (c.service, c.received, c.case_id)):
            if status[c.case_id] != APPROVED:
                priced[c.case_id] = (0, 0, 0, 0)
                continue
            terms = covering(c)
            assert terms is not None
            allowed = min(c.billed, fees[c.procedure_code].fee * c.units)
            year_key = (c.member_id, c.service.year)
            before = used.get(year_key, 0)
            deductible = min(allowed, max(0, terms.deductible - before))
            used[year_key] = before + deductible
            coinsurance = ((allowed - deductible) * terms.percent + 50) // 100
            paid = allowed - deductible - coinsurance
            priced[c.case_id] = (allowed, deductible, coinsurance, paid)
        for c in batch:
            results[c.case_id] = Outcome(status[c.case_id], codes[c.case_id], priced[c.case_id])
            if status[c.case_id] in (APPROVED, PENDED):
                live_before.add(c.key)
    return results


# --- random worlds ------------------------------------------------------------------------

BASE = dt.date(2024, 1, 1)
MEMBERS = ("M1", "M2", "M3")
PROVIDERS = ("P1", "P2", "P3")
PROCEDURES = ("99213", "99214", "J1100")


def _day(offset: int) -> dt.date:
    return BASE + dt.timedelta(days=offset)


LENGTHS = st.sampled_from([0, 30, 181, 364, 365, 400]) | st.integers(0, 420)
DEDUCTIBLES = st.sampled_from([0, 1, 5_000, 25_000]) | st.integers(0, 60_000)
PERCENTS = st.sampled_from([0, 20, 50, 100]) | st.integers(0, 100)
FEES = st.sampled_from([0, 1, 2_500, 8_000]) | st.integers(1, 120_000)
ANY_DAY = st.integers(-60, 760).map(_day)
CASE_MEMBERS = st.sampled_from([*MEMBERS, "M1", "MX"])  # MX: unknown
CASE_PROVIDERS = st.sampled_from([*PROVIDERS, "P1", "P1", "PX"])  # PX: unknown
CASE_PROCEDURES = st.sampled_from([*PROCEDURES, "99213", "99999"])  # 99999: not on schedule
DELAYS = st.sampled_from([0, 1, 364, 365, 366]) | st.integers(0, 30)
UNITS = st.sampled_from([1, 1, 2, 3, 4]) | st.integers(1, 999)
BILLED = (
    st.sampled_from([1, 150, 999_999, 1_000_000, 1_000_001, 999_999_999])
    | st.integers(1, 60_000)
    | st.integers(1, 1_500_000)
)
AUTHS = st.sampled_from([None, "PA-1"])


@st.composite
def worlds(draw: st.DrawFn) -> World:
    spans: list[MSpan] = []
    for member in MEMBERS:
        start = _day(draw(st.integers(-40, 40)))
        count = draw(st.integers(1, 3))
        for index in range(count):
            open_ended = index == count - 1 and draw(st.booleans())
            end = None if open_ended else start + dt.timedelta(days=draw(LENGTHS))
            spans.append(MSpan(member, start, end, draw(DEDUCTIBLES), draw(PERCENTS)))
            if end is None:
                break
            start = end + dt.timedelta(days=1 + draw(st.sampled_from([0, 0, 1, 45])))
    providers = [MProvider(p, draw(st.booleans()), draw(st.booleans())) for p in PROVIDERS]
    # P1 is always eligible, so that approvals (and pricing) are common.
    providers[0] = MProvider("P1", False, True)
    fees = [
        MFee(code, draw(FEES), draw(st.booleans()), draw(st.none() | st.integers(1, 3)))
        for code in PROCEDURES
        if code == "99213" or draw(st.integers(0, 4)) > 0
    ]
    # Dates near the boundaries: span starts and ends, the days around them, New Year.
    inside: set[dt.date] = set()
    outside = {dt.date(2024, 12, 31), dt.date(2025, 1, 1), dt.date(2025, 12, 31)}
    for span in spans:
        inside.add(span.start)
        outside.add(span.start - dt.timedelta(days=1))
        if span.end is not None:
            inside.add(span.end)
            outside.add(span.end + dt.timedelta(days=1))
    covered_dates = st.sampled_from(sorted(inside))
    service_dates = st.sampled_from(sorted(inside | outside)) | ANY_DAY
    count = draw(st.integers(1, 40))
    cases: list[MCase] = []
    for i in range(count):
        kind = draw(st.integers(0, 5))
        auth = draw(AUTHS)
        if cases and kind <= 1:
            # Same key as an earlier case; everything else may differ.
            twin = cases[draw(st.integers(0, len(cases) - 1))]
            member, provider = twin.member_id, twin.provider_id
            service, procedure = twin.service, twin.procedure_code
        elif kind <= 3:
            # A case that passes rules 1-4, 6 and 7 (so approvals are common).
            member, provider = draw(st.sampled_from(MEMBERS)), "P1"
            service, procedure, auth = draw(covered_dates), "99213", "PA-1"
        else:
            member, provider = draw(CASE_MEMBERS), draw(CASE_PROVIDERS)
            service, procedure = draw(service_dates), draw(CASE_PROCEDURES)
        cases.append(
            MCase(
                case_id=f"C{i}",
                member_id=member,
                provider_id=provider,
                service=service,
                received=service + dt.timedelta(days=draw(DELAYS)),
                procedure_code=procedure,
                units=draw(UNITS),
                billed=draw(BILLED),
                auth=auth,
            )
        )
    file_order = draw(st.permutations(cases))
    cuts = sorted(draw(st.lists(st.integers(1, count), max_size=2, unique=True)))
    bounds = [0, *[c for c in cuts if c < count], count]
    batches = [list(file_order[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    # members.csv need not list a member's spans in date order.
    return World(draw(st.permutations(spans)), providers, fees, batches)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _iso(day: dt.date) -> str:
    return day.isoformat()


def reference_rows(world: World) -> tuple[list[Span], list[Provider], list[Fee]]:
    """The world's reference data as the rows of the three CSV files."""
    members = [
        Span(
            s.member_id,
            _iso(s.start),
            "" if s.end is None else _iso(s.end),
            _money(s.deductible),
            s.percent,
        )
        for s in world.spans
    ]
    providers = [
        Provider(p.provider_id, "SUSPENDED" if p.suspended else "ACTIVE", p.in_network)
        for p in world.providers
    ]
    fees = [
        Fee(
            f.procedure_code,
            _money(f.fee),
            f.auth_required,
            "" if f.max_units is None else str(f.max_units),
        )
        for f in world.fees
    ]
    return members, providers, fees


def pipeline_decisions(world: World) -> dict[str, Outcome]:
    # Typed frames built directly (the CSV loader costs ~0.1 s per example; the
    # sanity test below checks both routes give the same Reference).
    reference = build_reference(*reference_rows(world))
    history = MemoryHistory()
    results: dict[str, Outcome] = {}
    for batch in world.batches:
        rows = [
            case(
                c.case_id,
                member=c.member_id,
                provider=c.provider_id,
                service=_iso(c.service),
                received=_iso(c.received),
                procedure=c.procedure_code,
                units=c.units,
                billed=_money(c.billed),
                auth=c.auth or "",
            )
            for c in batch
        ]
        decision = decide(rows, reference, ruleset_v1(), history)
        history = advance(history, decision)
        for row in decision.decisions.iter_rows(named=True):
            results[row["case_id"]] = Outcome(
                row["status"],
                list(row["reason_codes"]),
                (
                    row["allowed_cents"],
                    row["deductible_cents"],
                    row["coinsurance_cents"],
                    row["paid_cents"],
                ),
            )
    return results


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(worlds())
def test_pipeline_matches_row_at_a_time_model(world: World) -> None:
    expected = model_decisions(world)
    for outcome in expected.values():  # what the examples cover (--hypothesis-show-statistics)
        event(outcome.status)
        for code in outcome.codes:
            event(code)
        if 0 < outcome.amounts[1] < outcome.amounts[0]:
            event("deductible partly applied")
    event(f"{len(world.batches)} batch(es)")
    got = pipeline_decisions(world)
    assert got.keys() == expected.keys()
    for case_id in sorted(expected):
        assert got[case_id] == expected[case_id], case_id


def test_model_sanity_on_a_fixed_world() -> None:
    # The model itself, on a world small enough to check by eye.
    world = World(
        spans=[MSpan("M1", dt.date(2024, 1, 1), None, 10_000, 20)],
        providers=[MProvider("P1", False, True)],
        fees=[MFee("99213", 8_000, False, None)],
        batches=[
            [
                MCase("B", "M1", "P1", dt.date(2024, 3, 1), dt.date(2024, 3, 3), "99213", 1,
                      8_000, None),
                MCase("A", "M1", "P1", dt.date(2024, 3, 1), dt.date(2024, 3, 2), "99213", 1,
                      8_000, None),
                MCase("C", "M1", "P1", dt.date(2024, 3, 2), dt.date(2024, 3, 2), "99213", 2,
                      20_000, None),
            ]
        ],
    )  # fmt: skip
    expected = {
        "A": Outcome(APPROVED, [], (8_000, 8_000, 0, 0)),
        "B": Outcome(DENIED, ["CO-18"], (0, 0, 0, 0)),
        # allowed min(20000, 16000) = 16000; ded 10000 - 8000 = 2000;
        # coins (14000 x 20 + 50) // 100 = 2800; paid 16000 - 2000 - 2800 = 11200
        "C": Outcome(APPROVED, [], (16_000, 2_000, 2_800, 11_200)),
    }
    assert model_decisions(world) == expected
    assert pipeline_decisions(world) == expected


def test_built_reference_equals_loaded_reference(tmp_path: Path) -> None:
    world = World(
        spans=[
            MSpan("M1", dt.date(2024, 1, 1), dt.date(2024, 6, 30), 12_345, 20),
            MSpan("M1", dt.date(2024, 7, 1), None, 0, 100),
        ],
        providers=[MProvider("P1", False, True), MProvider("P2", True, False)],
        fees=[MFee("99213", 8_050, False, None), MFee("J1100", 1, True, 3)],
        batches=[],
    )
    built = build_reference(*reference_rows(world))
    loaded = write_reference(tmp_path, *reference_rows(world))
    assert built.members.equals(loaded.members)
    assert built.providers.equals(loaded.providers)
    assert built.fee_schedule.equals(loaded.fee_schedule)
