"""`adjudicate explain`: the §5 arithmetic of a priced case, from the event log alone,
with the out-of-pocket maximum's step when the case's span has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimsflow.analysis.explain import explain_case, pricing_lines
from claimsflow.lake.catalog import connect_read_only, refresh_catalog
from tests.batch_helpers import MEMBERS_CSV, CsvWriter, InboxRunner, case_row, write_reference

# The fixture members, plus C001: D 100.00, 20 %, out-of-pocket maximum 150.00.
MEMBERS_WITH_OOP = (
    MEMBERS_CSV.replace("coinsurance_percent\n", "coinsurance_percent,oop_max\n")
    .replace(",20\n", ",20,\n")
    .replace(",10\n", ",10,\n")
    .replace(",0\n", ",0,\n")
    + "C001,2024-01-01,,100.00,20,150.00\n"
)


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    return write_reference(tmp_path / "reference", members=MEMBERS_WITH_OOP)


def test_capped_case_shows_room_and_capped_amounts(
    write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path
) -> None:
    # C001 (99213 at 100.00 a unit, max 4 units):
    # A: allowed min(300.00, 100.00 x 2) = 200.00; ded min(200.00, 100.00) = 100.00
    #    coins (10000 x 20 + 50) // 100 = 20.00; room 150.00 - 0: no cap; paid 80.00
    #    spent after 120.00
    # B: allowed min(250.00, 100.00 x 2) = 200.00; ded min(200.00, max(0, 100 - 100)) = 0
    #    coins (20000 x 20 + 50) // 100 = 40.00; room 150.00 - 120.00 = 30.00
    #    -> ded min(0, 30.00) = 0, coins min(40.00, 30.00 - 0) = 30.00; paid 170.00
    write_batch(
        "b1.csv",
        [
            case_row("A", member_id="C001", service_date="2024-02-01", units="2",
                     billed_amount="300.00"),
            case_row("B", member_id="C001", service_date="2024-03-01", units="2",
                     billed_amount="250.00"),
            case_row("M", member_id="M001", service_date="2024-03-01", billed_amount="80.00"),
        ],
    )  # fmt: skip
    run_fixture_inbox()
    refresh_catalog(lake)
    con = connect_read_only(lake)
    try:
        recorded = con.execute(
            "SELECT case_id, oop_max_cents, oop_spent_before_cents, deductible_used_before_cents"
            " FROM decision_events ORDER BY case_id"
        ).fetchall()
    finally:
        con.close()
    # M001 has no maximum; its spent before is what its member-year had: nothing.
    assert recorded == [("A", 15000, 0, 0), ("B", 15000, 12000, 10000), ("M", None, 0, 0)]
    text = explain_case(lake, "B")
    assert (
        "  allowed     = min(billed 250.00, fee 100.00 x 2 units = 200.00) = 200.00\n"
        "  deductible  = min(allowed 200.00, max(0, annual 100.00 - used before 100.00))"
        " = 0.00\n"
        "  coinsurance = (200.00 - 0.00) x 20%, half up = 40.00\n"
        "  room        = max(0, out-of-pocket maximum 150.00 - spent before 120.00) = 30.00\n"
        "  deductible  = min(0.00, room 30.00) = 0.00\n"
        "  coinsurance = min(40.00, room 30.00 - deductible 0.00) = 30.00\n"
        "  paid        = 200.00 - 0.00 - 30.00 = 170.00"
    ) in text
    assert "out-of-pocket: no maximum on this span (spent before 0.00)" in explain_case(lake, "M")


def test_pricing_lines_when_the_deductible_is_capped() -> None:
    # M below D: D 500.00, 20 %, M 100.00, nothing used or spent before.
    # allowed 160.00; ded min(160.00, 500.00) = 160.00; coins (0 x 20 + 50) // 100 = 0
    # room max(0, 100.00 - 0) = 100.00; ded min(160.00, 100.00) = 100.00
    # coins min(0.00, 100.00 - 100.00) = 0; paid 160.00 - 100.00 - 0 = 60.00
    decision = {
        "status": "APPROVED",
        "fee_allowed_cents": 8_000,
        "allowed_cents": 16_000,
        "deductible_cents": 10_000,
        "coinsurance_cents": 0,
        "paid_cents": 6_000,
        "deductible_used_before_cents": 0,
        "oop_spent_before_cents": 0,
        "annual_deductible_cents": 50_000,
        "coinsurance_percent": 20,
        "oop_max_cents": 10_000,
    }
    assert pricing_lines(decision, {"units": 2, "billed_cents": 30_000})[2:] == [
        "  deductible  = min(allowed 160.00, max(0, annual 500.00 - used before 0.00)) = 160.00",
        "  coinsurance = (160.00 - 160.00) x 20%, half up = 0.00",
        "  room        = max(0, out-of-pocket maximum 100.00 - spent before 0.00) = 100.00",
        "  deductible  = min(160.00, room 100.00) = 100.00",
        "  coinsurance = min(0.00, room 100.00 - deductible 100.00) = 0.00",
        "  paid        = 160.00 - 100.00 - 0.00 = 60.00",
    ]
