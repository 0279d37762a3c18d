"""What-if on a log holding examiners' reviews (spec §8) and corrections (spec §9),
against hand-worked expectations (docs/decisions.md, "What-if and the lifecycle").

Recorded with rule set v1 (high-dollar above 10,000.00); replayed for April 2024
through the draft v2 (above 5,000.00) and through v1 itself. Reference:
  M001: from 2024-01-01, deductible 100.00, coinsurance 20 %.
  M002: from 2024-01-01, no deductible, coinsurance 10 %.
  P001: active, in network. 99213: 100.00 a unit, max 4. J9035: 8,000.00 a unit.

In the order recorded:
  b1 (March, before the window)
    A1 M001 99213 80.00        APPROVED: deductible 80.00, paid 0
    A2 M001 J9035 2 x 12,000   PENDED (above 10,000.00)
    B1 M002 99213 50.00        APPROVED: coinsurance 5.00, paid 45.00
  r1 (before the window): APPROVE A2 -> deductible 20.00 (100 - 80), coinsurance
    (12,000 - 20) x 20 % = 2,396.00, paid 9,584.00
  b2 (April)
    V1 void of A1              A1 VOIDED (its 80.00 deductible given back); V1 VOIDED
    C1 M001 99213 90.00        used 20.00 (A2) -> deductible 80.00, coinsurance 2.00,
                               paid 8.00; the same under v2 (A2's review is before the
                               window, A1 is voided again by V1)
    C2 M002 J9035 5,500.00     v1 APPROVED: coinsurance 550.00, paid 4,950.00 | v2 PENDED
    C3 M002 J9035 2 x 12,000   PENDED under both
    R1 replaces B1, same key, 40.00: B1 VOIDED; R1 APPROVED, coinsurance 4.00, paid 36.00
  r2 (within the window): DENY C3 (CO-50)
  b3 (April)
    D1 M001 J9035 6,000.00     v1: used 100.00 (A2 20 + C1 80) -> deductible 0,
                               coinsurance 1,200.00, paid 4,800.00 | v2 PENDED
    D2 M002 J9035 2 x 12,000, C3's key: C3 was DENIED by r2, so no duplicate: PENDED
                               [P-HIGH-DOLLAR]. Under v2, C3 is pended too, so r2 is
                               kept and D2 is the same (without r2 it would read as a
                               change: DENIED [CO-18, P-HIGH-DOLLAR])
    D3 void of C2              C2 VOIDED (APPROVED under v1, PENDED under v2); D3 VOIDED
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from claimsflow.analysis.whatif import WhatIfResult, simulate
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import RunContext, process_batch
from claimsflow.pipeline.review import ReviewContext, run_review
from claimsflow.settings import RULES_DIR

HEADER = (
    "case_id,member_id,provider_id,service_date,received_date,procedure_code,"
    "diagnosis_code,units,billed_amount,prior_auth_id,claim_frequency,original_case_id"
)
REVIEW_HEADER = "case_id,decision,reason_code,examiner,note"
APRIL = (dt.date(2024, 4, 1), dt.date(2024, 4, 30))


def _row(
    case_id: str,
    member: str,
    svc: str,
    rcv: str,
    code: str,
    units: int,
    billed: str,
    frequency: str = "1",
    original: str = "",
) -> str:
    claim = f"{case_id},{member},P001,{svc},{rcv},{code},J45.909,{units},{billed}"
    return f"{claim},,{frequency},{original}"


STEPS: list[tuple[str, list[str]]] = [
    (
        "b1.csv",
        [
            _row("A1", "M001", "2024-03-01", "2024-03-05", "99213", 1, "80.00"),
            _row("A2", "M001", "2024-03-02", "2024-03-06", "J9035", 2, "12000.00"),
            _row("B1", "M002", "2024-03-10", "2024-03-12", "99213", 1, "50.00"),
        ],
    ),
    ("r1.review", ["A2,APPROVE,,ann.lee,records reviewed"]),
    (
        "b2.csv",
        [
            _row("V1", "M001", "2024-03-01", "2024-04-02", "99213", 1, "80.00", "8", "A1"),
            _row("C1", "M001", "2024-04-10", "2024-04-12", "99213", 1, "90.00"),
            _row("C2", "M002", "2024-04-15", "2024-04-16", "J9035", 1, "5500.00"),
            _row("C3", "M002", "2024-04-02", "2024-04-04", "J9035", 2, "12000.00"),
            _row("R1", "M002", "2024-03-10", "2024-04-05", "99213", 1, "40.00", "7", "B1"),
        ],
    ),
    ("r2.review", ["C3,DENY,CO-50,bob.king,not medically necessary"]),
    (
        "b3.csv",
        [
            _row("D1", "M001", "2024-04-20", "2024-04-22", "J9035", 1, "6000.00"),
            _row("D2", "M002", "2024-04-02", "2024-04-25", "J9035", 2, "12000.00"),
            _row("D3", "M002", "2024-04-15", "2024-04-25", "J9035", 1, "5500.00", "8", "C2"),
        ],
    ),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    folder = tmp_path_factory.mktemp("reference")
    (folder / "members.csv").write_text(
        "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent\n"
        "M001,2024-01-01,,100.00,20\n"
        "M002,2024-01-01,,0.00,10\n"
    )
    (folder / "providers.csv").write_text("provider_id,status,in_network\nP001,ACTIVE,true\n")
    (folder / "fee_schedule.csv").write_text(
        "procedure_code,allowed_amount,prior_auth_required,max_units\n"
        "99213,100.00,false,4\n"
        "J9035,8000.00,false,\n"
    )
    return load_reference(folder)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, reference: Reference) -> Path:
    folder = tmp_path_factory.mktemp("whatif-lifecycle")
    lake = folder / "lake"
    eventlog.ensure_lake(lake)
    ticks = itertools.count()
    start = dt.datetime(2024, 6, 1, 2, 0, tzinfo=dt.UTC)

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=next(ticks))

    v1 = load_ruleset(RULES_DIR / "claims-standard-v1.yaml")
    for name, rows in STEPS:
        path = folder / name
        if name.endswith(".review"):
            path.write_text("\n".join([REVIEW_HEADER, *rows]) + "\n")
            outcome = run_review(ReviewContext(lake, reference, "review", clock), path)
            assert (outcome.batch.status, outcome.batch.rows_decided) == ("PROCESSED", 1)
        else:
            path.write_text("\n".join([HEADER, *rows]) + "\n")
            batch = process_batch(path, RunContext(lake, reference, v1, "run", clock))
            assert (batch.status, batch.rows_rejected) == ("PROCESSED", 0)
    return lake


Simulate = Callable[[str], WhatIfResult]


@pytest.fixture(scope="module")
def what_if(lake: Path, reference: Reference) -> Simulate:
    def run(version: str) -> WhatIfResult:
        candidate = load_ruleset(RULES_DIR / f"claims-standard-v{version}.yaml")
        return simulate(lake, reference, candidate, *APRIL)

    return run


def _by_case(result: WhatIfResult) -> dict[str, tuple[object, ...]]:
    return {
        r["case_id"]: (
            r["old_status"],
            r["new_status"],
            list(r["new_reason_codes"]),
            r["old_paid_cents"],
            r["new_paid_cents"],
        )
        for r in result.cases.iter_rows(named=True)
    }


def test_v2_changes_only_the_claims_it_would_pend(what_if: Simulate) -> None:
    result = what_if("2")
    assert _by_case(result) == {
        # The void rows: recorded VOIDED, and VOIDED again (their originals, A1 before
        # the window and C2 within it, are voided again by the replay).
        "V1": ("VOIDED", "VOIDED", [], 0, 0),
        "D3": ("VOIDED", "VOIDED", [], 0, 0),
        "C1": ("APPROVED", "APPROVED", [], 800, 800),
        "C2": ("APPROVED", "PENDED", ["P-HIGH-DOLLAR"], 495_000, 0),
        "C3": ("PENDED", "PENDED", ["P-HIGH-DOLLAR"], 0, 0),
        "R1": ("APPROVED", "APPROVED", [], 3_600, 3_600),
        "D1": ("APPROVED", "PENDED", ["P-HIGH-DOLLAR"], 480_000, 0),
        # r2 (DENY C3) is kept: C3 is pended under v2 too, so D2 is no duplicate.
        "D2": ("PENDED", "PENDED", ["P-HIGH-DOLLAR"], 0, 0),
    }
    assert sorted(result.changed["case_id"]) == ["C2", "D1"]
    assert result.paid_delta_cents == -(495_000 + 480_000)
    assert (result.batches_replayed, result.cases_replayed) == (2, 8)


def test_the_recording_rule_set_reproduces_the_log(what_if: Simulate) -> None:
    """Reviews before and within the window, corrections of cases before and within it:
    replayed with v1, nothing changes."""
    result = what_if("1")
    assert result.changed.height == 0
    assert result.cases.height == 8
    assert result.paid_delta_cents == 0
    assert result.old_paid_cents == 800 + 495_000 + 3_600 + 480_000
