"""Spec §5: pricing of APPROVED cases in integer cents, every number by hand.

allowed     = min(billed, fee_per_unit x units)
deductible  = min(allowed, max(0, D - used))      used: same member, calendar year,
              APPROVED cases of earlier batches + earlier in (service, received, case_id)
coinsurance = ((allowed - deductible) x percent + 50) // 100
with oop_max M: room = max(0, M - spent)           spent: deductible + coinsurance,
              deductible = min(deductible, room)   counted like used
              coinsurance = min(coinsurance, room - deductible)
paid        = allowed - deductible - coinsurance
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from claimsflow.core.decide import BatchDecision
from claimsflow.core.pricing import price
from claimsflow.core.reference import Reference
from tests.pricing_oracle import Case, accumulated_frame, decisions_frame
from tests.spec_helpers import (
    AMOUNT_COLUMNS,
    Amounts,
    Fee,
    Provider,
    Span,
    amounts,
    case,
    decide,
    decide_batches,
    verdicts,
    write_reference,
)

ZERO: Amounts = (0, 0, 0, 0)
Balances = tuple[int | None, int | None]


def balances(decision: BatchDecision) -> dict[str, Balances]:
    """case_id -> (used, spent) the case saw: deductible and out-of-pocket before it."""
    return {
        row["case_id"]: (row["deductible_used_before_cents"], row["oop_spent_before_cents"])
        for row in decision.decisions.iter_rows(named=True)
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return write_reference(
        tmp_path_factory.mktemp("reference"),
        members=[
            Span("D0", "2024-01-01", "", "0.00", 20),
            Span("D1", "2024-01-01", "", "100.00", 0),
            Span("D5", "2024-01-01", "", "500.00", 20),
            # Two spans in 2024, the second with a higher deductible and coinsurance.
            Span("SPLIT", "2024-01-01", "2024-06-30", "300.00", 10),
            Span("SPLIT", "2024-07-01", "", "500.00", 30),
            # Two spans in 2024, the second with a lower deductible.
            Span("DOWN", "2024-01-01", "2024-06-30", "500.00", 0),
            Span("DOWN", "2024-07-01", "", "300.00", 0),
            Span("R0", "2024-01-01", "", "0.00", 0),
            Span("R1", "2024-01-01", "", "0.00", 1),
            Span("R7", "2024-01-01", "", "0.00", 7),
            Span("R30", "2024-01-01", "", "0.00", 30),
            Span("R50", "2024-01-01", "", "0.00", 50),
            Span("R100", "2024-01-01", "", "0.00", 100),
            Span("RD7", "2024-01-01", "", "10.00", 7),
            # Out-of-pocket maxima (the last field): D 100.00, 20 %, M 150.00.
            Span("CAP", "2024-01-01", "", "100.00", 20, "150.00"),
            # No maximum until June, then M 50.00 (D 0, 20 % throughout).
            Span("NOMAX", "2024-01-01", "2024-06-30", "0.00", 20),
            Span("NOMAX", "2024-07-01", "", "0.00", 20, "50.00"),
            # M 100.00 below D 500.00.
            Span("SMALLM", "2024-01-01", "", "500.00", 20, "100.00"),
            # A maximum of nothing: the member pays nothing.
            Span("ZEROM", "2024-01-01", "", "100.00", 20, "0"),
            # 7 % and M 0.57: rounding half up before the cap.
            Span("RM7", "2024-01-01", "", "0.00", 7, "0.57"),
        ],
        providers=[Provider("P1"), Provider("P2"), Provider("P3"), Provider("P4")],
        fees=[
            Fee("99213", "80.00", prior_auth=False, max_units=""),
            Fee("B0000", "1000.00", prior_auth=False, max_units=""),
            Fee("J1100", "50.00", prior_auth=True, max_units=""),
        ],
    )


# --- 1. allowed ---------------------------------------------------------------------


def test_allowed_is_fee_times_units_when_billed_is_higher(reference: Reference) -> None:
    # fee x units = 8000 x 3 = 24000 < billed 30000 -> allowed 24000
    # deductible 0 (D = 0)
    # coinsurance = (24000 x 20 + 50) // 100 = 480050 // 100 = 4800
    # paid = 24000 - 0 - 4800 = 19200
    decision = decide([case("A", member="D0", units=3, billed="300.00")], reference)
    assert amounts(decision) == {"A": (24000, 0, 4800, 19200)}


def test_allowed_is_billed_when_fee_times_units_is_higher(reference: Reference) -> None:
    # fee x units = 8000 x 3 = 24000 > billed 15000 -> allowed 15000
    # coinsurance = (15000 x 20 + 50) // 100 = 300050 // 100 = 3000
    # paid = 15000 - 0 - 3000 = 12000
    decision = decide([case("A", member="D0", units=3, billed="150.00")], reference)
    assert amounts(decision) == {"A": (15000, 0, 3000, 12000)}


def test_allowed_when_billed_equals_fee_times_units(reference: Reference) -> None:
    # 8000 x 3 = 24000 = billed -> allowed 24000; coinsurance 4800; paid 19200
    decision = decide([case("A", member="D0", units=3, billed="240.00")], reference)
    assert amounts(decision) == {"A": (24000, 0, 4800, 19200)}


# --- 2. deductible --------------------------------------------------------------------


def test_deductible_partially_then_fully_consumed_in_service_date_order(
    reference: Reference,
) -> None:
    # D5: D = 50000, coinsurance 20 %. File order C, A, B; service order A, B, C.
    rows = [
        case("C", member="D5", service="2024-04-01", units=1, billed="80.00"),
        case("A", member="D5", service="2024-02-01", units=3, billed="300.00"),
        case("B", member="D5", service="2024-03-01", units=5, billed="400.00"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # A: allowed min(30000, 8000x3=24000) = 24000; used 0 -> ded min(24000, 50000) = 24000
        #    coins (0 x 20 + 50) // 100 = 0; paid 24000 - 24000 - 0 = 0
        "A": (24000, 24000, 0, 0),
        # B: allowed min(40000, 8000x5=40000) = 40000; used 24000 -> ded min(40000, 26000)
        #    = 26000; coins (14000 x 20 + 50) // 100 = 280050 // 100 = 2800
        #    paid 40000 - 26000 - 2800 = 11200
        "B": (40000, 26000, 2800, 11200),
        # C: allowed 8000; used 50000 -> ded 0; coins (8000 x 20 + 50) // 100 = 1600
        #    paid 8000 - 0 - 1600 = 6400
        "C": (8000, 0, 1600, 6400),
    }


def test_deductible_order_is_service_then_received_then_case_id(reference: Reference) -> None:
    # D1: D = 10000, coinsurance 0. Distinct providers so no case is a duplicate.
    # Order: Z0 (earliest service although received last), A9 (received 05-02),
    # then K1 and K2 (same dates, case_id breaks the tie). File order: K2, Z0, K1, A9.
    rows = [
        case("K2", member="D1", provider="P4", service="2024-05-01", received="2024-05-03",
             billed="60.00"),
        case("Z0", member="D1", provider="P1", service="2024-04-30", received="2024-06-01",
             billed="30.00"),
        case("K1", member="D1", provider="P3", service="2024-05-01", received="2024-05-03",
             billed="60.00"),
        case("A9", member="D1", provider="P2", service="2024-05-01", received="2024-05-02",
             billed="60.00"),
    ]  # fmt: skip
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # Z0: allowed min(3000, 8000) = 3000; used 0 -> ded 3000; paid 0
        "Z0": (3000, 3000, 0, 0),
        # A9: allowed 6000; used 3000 -> ded min(6000, 7000) = 6000; paid 0
        "A9": (6000, 6000, 0, 0),
        # K1: allowed 6000; used 9000 -> ded min(6000, 1000) = 1000; paid 6000 - 1000 = 5000
        "K1": (6000, 1000, 0, 5000),
        # K2: allowed 6000; used 10000 -> ded 0; paid 6000
        "K2": (6000, 0, 0, 6000),
    }


def test_deductible_carries_across_batches(reference: Reference) -> None:
    # D5: D = 50000, coinsurance 20 %.
    first, second, third = decide_batches(
        [
            [case("A", member="D5", service="2024-02-01", units=4, billed="300.00")],
            # B's service date is *before* A's, but A was decided in an earlier batch.
            [case("B", member="D5", service="2024-01-15", units=5, billed="400.00")],
            [case("C", member="D5", service="2024-03-01", units=1, billed="80.00")],
        ],
        reference,
    )
    # A: allowed min(30000, 8000x4=32000) = 30000; ded min(30000, 50000) = 30000; paid 0
    assert amounts(first) == {"A": (30000, 30000, 0, 0)}
    # B: allowed 40000; used 30000 -> ded min(40000, 20000) = 20000
    #    coins (20000 x 20 + 50) // 100 = 400050 // 100 = 4000; paid 40000-20000-4000 = 16000
    assert amounts(second) == {"B": (40000, 20000, 4000, 16000)}
    # C: allowed 8000; used 50000 -> ded 0; coins (8000 x 20 + 50) // 100 = 1600; paid 6400
    assert amounts(third) == {"C": (8000, 0, 1600, 6400)}


def test_new_calendar_year_resets_the_deductible(reference: Reference) -> None:
    # D5: D = 50000 per calendar year, coinsurance 20 %. File order: 2025 case first.
    first, second = decide_batches(
        [
            [
                case("Y25", member="D5", service="2025-01-01", units=1, billed="80.00"),
                case("Y24", member="D5", service="2024-12-31", units=8, billed="600.00"),
            ],
            [
                case("L24", member="D5", service="2024-11-01", received="2025-01-05",
                     units=1, billed="80.00"),
                case("L25", member="D5", service="2025-02-01", units=2, billed="100.00"),
            ],
        ],
        reference,
    )  # fmt: skip
    assert amounts(first) == {
        # 2025: allowed 8000; 2025 used 0 -> ded 8000; coins 0; paid 0
        "Y25": (8000, 8000, 0, 0),
        # 2024: allowed min(60000, 8000x8=64000) = 60000; ded min(60000, 50000) = 50000
        #       coins (10000 x 20 + 50) // 100 = 200050 // 100 = 2000; paid 60000-50000-2000
        "Y24": (60000, 50000, 2000, 8000),
    }
    assert amounts(second) == {
        # 2024 used 50000 (earlier batch) -> ded 0; coins (8000 x 20 + 50) // 100 = 1600
        "L24": (8000, 0, 1600, 6400),
        # 2025 used 8000 (earlier batch): allowed min(10000, 16000) = 10000
        #       ded min(10000, 50000 - 8000 = 42000) = 10000; coins 0; paid 0
        "L25": (10000, 10000, 0, 0),
    }


def test_two_spans_in_one_year_with_different_deductibles(reference: Reference) -> None:
    # SPLIT: span 1 (to 2024-06-30) D = 30000, 10 %; span 2 (from 2024-07-01) D = 50000, 30 %.
    # `used` is per member and calendar year, across spans. File order reversed.
    rows = [
        case("S3", member="SPLIT", service="2024-09-01", units=1, billed="80.00"),
        case("S2", member="SPLIT", service="2024-08-01", units=5, billed="400.00"),
        case("S0", member="SPLIT", service="2024-06-30", units=2, billed="150.00"),
        case("S1", member="SPLIT", service="2024-03-01", units=3, billed="200.00"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # S1: allowed min(20000, 24000) = 20000; D 30000, used 0 -> ded 20000; paid 0
        "S1": (20000, 20000, 0, 0),
        # S0: allowed min(15000, 16000) = 15000; D 30000, used 20000 -> ded 10000
        #     coins (5000 x 10 + 50) // 100 = 50050 // 100 = 500; paid 15000-10000-500 = 4500
        "S0": (15000, 10000, 500, 4500),
        # S2: allowed 40000; D 50000 (span 2), used 30000 -> ded min(40000, 20000) = 20000
        #     coins (20000 x 30 + 50) // 100 = 600050 // 100 = 6000; paid 40000-20000-6000
        "S2": (40000, 20000, 6000, 14000),
        # S3: allowed 8000; used 50000 -> ded 0; coins (8000 x 30 + 50) // 100 = 2400
        #     paid 8000 - 2400 = 5600
        "S3": (8000, 0, 2400, 5600),
    }


def test_span_with_lower_deductible_than_already_used(reference: Reference) -> None:
    # DOWN: span 1 D = 50000, span 2 D = 30000, coinsurance 0.
    rows = [
        case("W1", member="DOWN", service="2024-03-01", units=5, billed="400.00"),
        case("W2", member="DOWN", service="2024-08-01", units=1, billed="80.00"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # W1: allowed 40000; ded min(40000, 50000) = 40000; paid 0
        "W1": (40000, 40000, 0, 0),
        # W2: allowed 8000; D 30000, used 40000 -> max(0, -10000) = 0; paid 8000
        "W2": (8000, 0, 0, 8000),
    }


def test_span_with_lower_deductible_across_batches(reference: Reference) -> None:
    # DOWN again; span 1 used 20000 in batch 1, span 2 (D = 30000) in batch 2.
    first, second = decide_batches(
        [
            [case("W1", member="DOWN", service="2024-03-01", units=3, billed="200.00")],
            [
                case("W2", member="DOWN", service="2024-08-01", units=2, billed="160.00"),
                case("W3", member="DOWN", service="2024-08-02", units=1, billed="80.00"),
            ],
        ],
        reference,
    )
    # W1: allowed 20000; ded 20000
    assert amounts(first) == {"W1": (20000, 20000, 0, 0)}
    assert amounts(second) == {
        # W2: allowed 16000; D 30000, used 20000 -> ded min(16000, 10000) = 10000; paid 6000
        "W2": (16000, 10000, 0, 6000),
        # W3: allowed 8000; used 30000 -> ded 0; paid 8000
        "W3": (8000, 0, 0, 8000),
    }


# --- 3. coinsurance rounding ------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "billed", "expected"),
    [
        # allowed = billed (fee 1000.00 per unit is higher); D = 0 unless said.
        # R1: (149 x 1 + 50) // 100 = 199 // 100 = 1   (1.49 rounds down); paid 148
        ("R1", "1.49", (149, 0, 1, 148)),
        # R1: (150 x 1 + 50) // 100 = 200 // 100 = 2   (1.50 rounds up); paid 148
        ("R1", "1.50", (150, 0, 2, 148)),
        # R1: (151 x 1 + 50) // 100 = 201 // 100 = 2; paid 149
        ("R1", "1.51", (151, 0, 2, 149)),
        # R7: 807 x 7 = 5649 -> (5649 + 50) // 100 = 56   (56.49 down); paid 807 - 56 = 751
        ("R7", "8.07", (807, 0, 56, 751)),
        # R7: 250 x 7 = 1750 -> (1750 + 50) // 100 = 18   (17.50 up); paid 250 - 18 = 232
        ("R7", "2.50", (250, 0, 18, 232)),
        # R30: 1005 x 30 = 30150 -> 30200 // 100 = 302   (301.50 up); paid 1005 - 302 = 703
        ("R30", "10.05", (1005, 0, 302, 703)),
        # R30: 983 x 30 = 29490 -> 29540 // 100 = 295   (294.90 up); paid 688
        ("R30", "9.83", (983, 0, 295, 688)),
        # R50: 1 x 50 = 50 -> 100 // 100 = 1   (0.50 up); paid 0
        ("R50", "0.01", (1, 0, 1, 0)),
        # R50: 3 x 50 = 150 -> 200 // 100 = 2   (1.50 up); paid 1
        ("R50", "0.03", (3, 0, 2, 1)),
        # R100: 12345 x 100 = 1234500 -> 1234550 // 100 = 12345; paid 0
        ("R100", "123.45", (12345, 0, 12345, 0)),
        # R0: (12345 x 0 + 50) // 100 = 0; paid 12345
        ("R0", "123.45", (12345, 0, 0, 12345)),
        # RD7: D = 1000; allowed 1807 -> ded 1000; (807 x 7 + 50) // 100 = 5699 // 100 = 56
        #      paid 1807 - 1000 - 56 = 751
        ("RD7", "18.07", (1807, 1000, 56, 751)),
        # RD7: allowed 1250 -> ded 1000; 250 x 7 = 1750 -> 1800 // 100 = 18; paid 232
        ("RD7", "12.50", (1250, 1000, 18, 232)),
    ],
)
def test_coinsurance_rounds_half_up(
    reference: Reference, member: str, billed: str, expected: Amounts
) -> None:
    decision = decide([case("A", member=member, procedure="B0000", billed=billed)], reference)
    assert verdicts(decision) == {"A": ("APPROVED", [])}
    assert amounts(decision) == {"A": expected}


# --- non-approved cases ------------------------------------------------------------------


def test_denied_and_pended_cases_carry_zero_and_consume_no_deductible(
    reference: Reference,
) -> None:
    # D1: D = 10000, coinsurance 0. P (pended) and X (denied) come first in the
    # deductible order; A2 is a duplicate of A. None of them may use the deductible.
    rows = [
        case("P", member="D1", service="2024-02-01", billed="15000.00"),
        case("X", member="D1", service="2024-02-02", procedure="J1100", billed="50.00"),
        case("A", member="D1", service="2024-03-01", received="2024-03-01", billed="80.00"),
        case("A2", member="D1", service="2024-03-01", received="2024-03-01", billed="80.00"),
        case("B", member="D1", provider="P2", service="2024-03-02", billed="80.00"),
    ]
    decision = decide(rows, reference)
    assert verdicts(decision) == {
        "P": ("PENDED", ["P-HIGH-DOLLAR"]),
        "X": ("DENIED", ["CO-197"]),
        "A": ("APPROVED", []),
        "A2": ("DENIED", ["CO-18"]),
        "B": ("APPROVED", []),
    }
    assert amounts(decision) == {
        "P": ZERO,
        "X": ZERO,
        # A: allowed 8000; used 0 (P, X not approved) -> ded min(8000, 10000) = 8000; paid 0
        "A": (8000, 8000, 0, 0),
        "A2": ZERO,
        # B: allowed 8000; used 8000 (A only) -> ded min(8000, 2000) = 2000; paid 6000
        "B": (8000, 2000, 0, 6000),
    }


def test_pended_case_of_earlier_batch_consumes_no_deductible(reference: Reference) -> None:
    first, second = decide_batches(
        [
            [
                case("P", member="D1", service="2024-02-01", billed="15000.00"),
                case("X", member="D1", service="2024-02-02", procedure="J1100", billed="50.00"),
            ],
            [case("A", member="D1", service="2024-03-01", billed="80.00")],
        ],
        reference,
    )
    assert amounts(first) == {"P": ZERO, "X": ZERO}
    # A: allowed 8000; nothing used before -> ded 8000; paid 0
    assert amounts(second) == {"A": (8000, 8000, 0, 0)}


def test_amounts_are_integer_columns(reference: Reference) -> None:
    decision = decide([case("A", member="D0", billed="12.34")], reference)
    schema = decision.decisions.schema
    assert all(schema[c] == pl.Int64 for c in AMOUNT_COLUMNS)
    # allowed 1234; coins (1234 x 20 + 50) // 100 = 24730 // 100 = 247; paid 987
    assert amounts(decision) == {"A": (1234, 0, 247, 987)}


# --- 4. out-of-pocket maximum -------------------------------------------------------------


def test_cap_reached_mid_batch(reference: Reference) -> None:
    # CAP: D 10000, 20 %, M 15000. File order D, P, B, X, C, A; service order A, B, C, D.
    # P (pended: billed > 10,000.00) and X (denied: no prior auth) come between them
    # and consume nothing.
    rows = [
        case("D", member="CAP", service="2024-05-01", units=1, billed="100.00"),
        case("P", member="CAP", provider="P2", service="2024-02-15", billed="15000.00"),
        case("B", member="CAP", service="2024-03-01", units=1, billed="100.00"),
        case("X", member="CAP", service="2024-03-15", procedure="J1100", billed="50.00"),
        case("C", member="CAP", service="2024-04-01", units=2, billed="200.00"),
        case("A", member="CAP", service="2024-02-01", units=2, billed="300.00"),
    ]
    decision = decide(rows, reference)
    assert verdicts(decision)["P"] == ("PENDED", ["P-HIGH-DOLLAR"])
    assert verdicts(decision)["X"] == ("DENIED", ["CO-197"])
    assert amounts(decision) == {
        # A: allowed min(30000, 8000x2 = 16000) = 16000; used 0 -> ded min(16000, 10000)
        #    = 10000; coins (6000 x 20 + 50) // 100 = 1200; spent 0, room 15000: no cap
        #    paid 16000 - 10000 - 1200 = 4800; spent after 11200
        "A": (16000, 10000, 1200, 4800),
        "P": ZERO,
        # B: allowed 8000; used 10000 -> ded 0; coins (8000 x 20 + 50) // 100 = 1600
        #    room 15000 - 11200 = 3800: no cap; paid 6400; spent after 12800
        "B": (8000, 0, 1600, 6400),
        "X": ZERO,
        # C: allowed 16000; ded 0; coins 3200; room 15000 - 12800 = 2200 -> coins 2200
        #    paid 16000 - 2200 = 13800; spent after 15000 = M
        "C": (16000, 0, 2200, 13800),
        # D: allowed 8000; ded 0; coins 1600; room max(0, 15000 - 15000) = 0 -> coins 0
        #    paid 8000
        "D": (8000, 0, 0, 8000),
    }
    # (used, spent) each approved case saw; none for the others.
    assert balances(decision) == {
        "A": (0, 0),
        "P": (None, None),
        "B": (10000, 11200),
        "X": (None, None),
        "C": (10000, 12800),
        "D": (10000, 15000),
    }


def test_span_without_maximum_then_span_with_one_in_the_same_year(
    reference: Reference,
) -> None:
    # NOMAX: D 0, 20 %; no maximum to 2024-06-30, then M 5000. `spent` counts the
    # coinsurance of the first span's cases too.
    rows = [
        case("N4", member="NOMAX", service="2024-09-01", billed="80.00"),
        case("N3", member="NOMAX", service="2024-08-01", billed="80.00"),
        case("N2", member="NOMAX", service="2024-05-01", billed="80.00"),
        case("N1", member="NOMAX", service="2024-02-01", units=2, billed="300.00"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # N1: allowed 16000; ded 0; coins (16000 x 20 + 50) // 100 = 3200; no maximum
        #     paid 12800; spent after 3200
        "N1": (16000, 0, 3200, 12800),
        # N2: allowed 8000; coins 1600; no maximum; paid 6400; spent after 4800
        "N2": (8000, 0, 1600, 6400),
        # N3 (second span): coins 1600; room 5000 - 4800 = 200 -> coins 200; paid 7800
        "N3": (8000, 0, 200, 7800),
        # N4: room max(0, 5000 - 5000) = 0 -> coins 0; paid 8000
        "N4": (8000, 0, 0, 8000),
    }
    assert balances(decision) == {
        "N1": (0, 0),
        "N2": (0, 3200),
        "N3": (0, 4800),
        "N4": (0, 5000),
    }


def test_maximum_smaller_than_deductible(reference: Reference) -> None:
    # SMALLM: D 50000, 20 %, M 10000.
    rows = [
        case("S1", member="SMALLM", service="2024-02-01", units=2, billed="300.00"),
        case("S2", member="SMALLM", service="2024-03-01", billed="80.00"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # S1: allowed 16000; ded min(16000, 50000) = 16000; coins (0 x 20 + 50) // 100 = 0
        #     room 10000 -> ded min(16000, 10000) = 10000; coins min(0, 0) = 0
        #     paid 16000 - 10000 = 6000
        "S1": (16000, 10000, 0, 6000),
        # S2: allowed 8000; used 10000 -> ded min(8000, 40000) = 8000; coins 0
        #     room max(0, 10000 - 10000) = 0 -> ded 0; paid 8000
        "S2": (8000, 0, 0, 8000),
    }
    # used counts the capped deductible: S2 saw 10000 used, not 16000.
    assert balances(decision) == {"S1": (0, 0), "S2": (10000, 10000)}


def test_maximum_of_zero(reference: Reference) -> None:
    # ZEROM: D 10000, 20 %, M 0: room is always 0, the plan pays all that is allowed.
    rows = [
        case("Z1", member="ZEROM", service="2024-02-01", units=2, billed="300.00"),
        case("Z2", member="ZEROM", service="2024-03-01", billed="80.00"),
    ]
    decision = decide(rows, reference)
    # Z1: allowed 16000; ded 10000, coins 1200 before the cap; room 0 -> 0, 0; paid 16000
    # Z2: allowed 8000; used 0 still -> ded 8000, coins 0 before the cap; room 0; paid 8000
    assert amounts(decision) == {"Z1": (16000, 0, 0, 16000), "Z2": (8000, 0, 0, 8000)}
    assert balances(decision) == {"Z1": (0, 0), "Z2": (0, 0)}


def test_coinsurance_rounds_half_up_before_the_cap(reference: Reference) -> None:
    # RM7: D 0, 7 %, M 57. Fee of B0000 is 1000.00 a unit: allowed = billed.
    rows = [
        case("R1", member="RM7", procedure="B0000", service="2024-02-01", billed="8.07"),
        case("R2", member="RM7", procedure="B0000", service="2024-03-01", billed="2.50"),
    ]
    decision = decide(rows, reference)
    assert amounts(decision) == {
        # R1: coins (807 x 7 + 50) // 100 = 5699 // 100 = 56 (56.49 down); room 57
        #     -> 56; paid 807 - 56 = 751; spent after 56
        "R1": (807, 0, 56, 751),
        # R2: coins (250 x 7 + 50) // 100 = 1800 // 100 = 18 (17.50 up); room 57 - 56 = 1
        #     -> 1; paid 250 - 1 = 249
        "R2": (250, 0, 1, 249),
    }


def test_cap_reached_across_batches_through_the_pipeline(reference: Reference) -> None:
    # CAP: D 10000, 20 %, M 15000. Each batch sees what earlier batches used and spent.
    first, second, third = decide_batches(
        [
            [case("A", member="CAP", service="2024-02-01", units=2, billed="300.00")],
            # B is served *before* A, but A was decided in an earlier batch.
            [case("B", member="CAP", service="2024-01-15", units=2, billed="300.00")],
            [case("C", member="CAP", service="2024-06-01", units=1, billed="100.00")],
        ],
        reference,
    )
    # A: allowed 16000; ded 10000; coins (6000 x 20 + 50) // 100 = 1200; room 15000
    #    paid 4800; spent after 11200
    assert amounts(first) == {"A": (16000, 10000, 1200, 4800)}
    # B: allowed 16000; used 10000 -> ded 0; coins (16000 x 20 + 50) // 100 = 3200
    #    room 15000 - 11200 = 3800 -> 3200; paid 12800; spent after 14400
    assert amounts(second) == {"B": (16000, 0, 3200, 12800)}
    assert balances(second) == {"B": (10000, 11200)}
    # C: allowed 8000; coins 1600; room 15000 - 14400 = 600 -> 600; paid 7400
    assert amounts(third) == {"C": (8000, 0, 600, 7400)}
    assert balances(third) == {"C": (10000, 14400)}


def _cap_case(case_id: str, day: int, status: str = "APPROVED") -> Case:
    # CAP's terms: D 10000, 20 %, M 15000; fee 8000 a unit, 1 unit, billed 10000.
    service = dt.date(2024, 3, day)
    return Case(case_id, status, "CAP", service, service, day, 10_000, 8_000, 1,
                10_000, 20, 15_000)  # fmt: skip


def test_cap_reached_in_earlier_batches_leaves_nothing_to_pay() -> None:
    # Earlier decisions of CAP's 2024: used 5000, spent 15000 (= M), and 2025 untouched.
    # Both 2024 cases: allowed min(10000, 8000) = 8000; ded min(8000, 10000 - 5000) = 5000
    # and coins ((8000 - 5000) x 20 + 50) // 100 = 600 before the cap; room
    # max(0, 15000 - 15000) = 0 -> 0 and 0; paid 8000. They add nothing: the second
    # sees the same (5000, 15000).
    # The 2025 case starts from nothing: ded min(8000, 10000) = 8000, coins 0, room
    # 15000: paid 0.
    later = Case("Y", "APPROVED", "CAP", dt.date(2025, 1, 2), dt.date(2025, 1, 2), 9,
                 10_000, 8_000, 1, 10_000, 20, 15_000)  # fmt: skip
    cases = [_cap_case("K2", 2), _cap_case("K1", 1), _cap_case("KP", 1, "PENDED"), later]
    priced = price(decisions_frame(cases), accumulated_frame({("CAP", 2024): (5_000, 15_000)}))
    assert priced.select("case_id", *AMOUNT_COLUMNS, "deductible_used_before_cents",
                         "oop_spent_before_cents").rows() == [
        ("K2", 8000, 0, 0, 8000, 5000, 15000),
        ("K1", 8000, 0, 0, 8000, 5000, 15000),
        ("KP", 0, 0, 0, 0, None, None),
        ("Y", 8000, 8000, 0, 0, 0, 0),
    ]  # fmt: skip


def test_cap_reached_across_batches_with_room_left() -> None:
    # Earlier: used 10000 (D met), spent 14000 -> room 1000 for the first case.
    # K1: allowed 8000; ded 0; coins (8000 x 20 + 50) // 100 = 1600; room 1000 -> 1000
    #     paid 7000; spent after 15000
    # K2: room 0 -> coins 0; paid 8000
    priced = price(
        decisions_frame([_cap_case("K2", 2), _cap_case("K1", 1)]),
        accumulated_frame({("CAP", 2024): (10_000, 14_000)}),
    )
    assert priced.select("case_id", *AMOUNT_COLUMNS, "oop_spent_before_cents").rows() == [
        ("K2", 8000, 0, 0, 8000, 15000),
        ("K1", 8000, 0, 1000, 7000, 14000),
    ]


def test_review_order_is_the_file_order() -> None:
    # Reviews price in file order: K1 (row 1, served 03-05) before K2 (row 2, served
    # 03-01). Earlier: used 10000, spent 14000 -> room 1000 for whichever comes first.
    # First: coins (8000 x 20 + 50) // 100 = 1600 -> 1000; paid 7000. Second: room 0;
    # paid 8000.
    k1 = Case("K1", "APPROVED", "CAP", dt.date(2024, 3, 5), dt.date(2024, 3, 5), 1,
              10_000, 8_000, 1, 10_000, 20, 15_000)  # fmt: skip
    k2 = Case("K2", "APPROVED", "CAP", dt.date(2024, 3, 1), dt.date(2024, 3, 1), 2,
              10_000, 8_000, 1, 10_000, 20, 15_000)  # fmt: skip
    accumulated = accumulated_frame({("CAP", 2024): (10_000, 14_000)})
    by_file = price(decisions_frame([k1, k2]), accumulated, order=("row_number",))
    assert by_file.select("case_id", "coinsurance_cents", "paid_cents").rows() == [
        ("K1", 1000, 7000),
        ("K2", 0, 8000),
    ]
    # In the default order K2 (served first) takes the room instead.
    by_service = price(decisions_frame([k1, k2]), accumulated)
    assert by_service.select("case_id", "coinsurance_cents", "paid_cents").rows() == [
        ("K1", 0, 8000),
        ("K2", 1000, 7000),
    ]
