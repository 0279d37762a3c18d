"""`adjudicate explain`: a case's whole story from the log (inputs, then each decision,
oldest first, with who, when, why and the pricing it carries), worked out by hand.

Reference data: tests/batch_helpers.py (M001 deductible 500.00, coinsurance 20 %;
99213 100.00 a unit). Runs record at 2025-01-15 02:00 + n days, a second more per
call of their clock (conftest.make_run); a review of day n at 12:00 that day
(tests/review_helpers.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.analysis.explain import explain_case, pricing_lines
from claimsflow.core.reference import Reference
from claimsflow.lake import eventlog
from claimsflow.lake.catalog import CatalogError
from claimsflow.pipeline.batch import batch_id_of_bytes
from claimsflow.pipeline.review import run_review
from schemas.case_batch import CASE_COLUMNS
from tests.batch_helpers import CsvWriter, InboxRunner, case_row
from tests.review_helpers import first_batch, review_context, review_row, write_review

#: Every column a case batch may carry (spec §1), in the contract's order.
HEADER = CASE_COLUMNS


@pytest.fixture
def story(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> dict[str, str]:
    """H1 pended (day 0), approved at review (day 0, noon), voided by V1 (day 1)."""
    a = write_batch("a.csv", first_batch(), header=HEADER)
    run_fixture_inbox()
    r = write_review(tmp_path / "r.csv", [review_row("H1", note="op report attached")])
    run_review(review_context(lake, reference, 0, "review-1"), r)
    b = write_batch(
        "b.csv",
        [
            {
                **case_row("V1", service_date="2024-06-01", received_date="2024-06-10"),
                "claim_frequency": "8",
                "original_case_id": "H1",
            }
        ],
        header=HEADER,
    )
    run_fixture_inbox()
    return {
        "a": batch_id_of_bytes(a.read_bytes())[:12],
        "r": batch_id_of_bytes(r.read_bytes())[:12],
        "b": batch_id_of_bytes(b.read_bytes())[:12],
    }


def test_a_reviewed_then_voided_case_tells_its_whole_story(
    story: dict[str, str], lake: Path
) -> None:
    a, r, b = story["a"], story["r"], story["b"]
    assert explain_case(lake, "H1").splitlines() == [
        "Case H1: VOIDED (3 decision(s); latest: correction by V1, 2025-01-16 02:00:01 UTC)",
        "",
        f"Inputs (received in batch a.csv ({a}), row 2, 2025-01-15 02:00:00 UTC):",
        "  member_id       M001",
        "  provider_id     P001",
        "  service_date    2024-06-01",
        "  received_date   2024-06-05",
        "  procedure_code  99213",
        "  diagnosis_code  J45.909",
        "  units           3",
        "  billed_amount   12,000.00",
        "  prior_auth_id   ",
        "  claim_frequency 1 (original claim)",
        "",
        "Decisions, oldest first:",
        "",
        f"1. Adjudication, 2025-01-15 02:00:00 UTC, batch a.csv ({a}), rule set "
        "claims-standard v1: PENDED P-HIGH-DOLLAR",
        "Rules that fired:",
        "  1. high-dollar (PEND P-HIGH-DOLLAR): Billed amount above the high-dollar "
        "review threshold.",
        "Pricing: none (PENDED cases carry 0 in every amount)",
        "",
        f"2. Review by ann.lee, 2025-01-15 12:00:00 UTC, review file r.csv ({r}): APPROVED",
        "Rule set of the case's adjudication: claims-standard v1",
        "Note: op report attached",
        "Pricing (spec §5):",
        # M001 had used 80.00 (A1) when the examiner approved H1.
        "  allowed     = min(billed 12,000.00, fee 100.00 x 3 units = 300.00) = 300.00",
        "  deductible  = min(allowed 300.00, max(0, annual 500.00 - used before 80.00)) = 300.00",
        "  coinsurance = (300.00 - 300.00) x 20%, half up = 0.00",
        # M001's span has no out-of-pocket maximum (shown where the log records spent).
        *(
            ["  out-of-pocket: no maximum on this span (spent before 80.00)"]
            if "oop_spent_before_cents" in eventlog.TABLE_SCHEMAS["decisions"]
            else []
        ),
        "  paid        = 300.00 - 300.00 - 0.00 = 0.00",
        "",
        f"3. Correction, 2025-01-16 02:00:01 UTC, batch b.csv ({b}): VOIDED",
        f"Voided by V1 (void, claim_frequency 8, received in batch b.csv ({b})): what it "
        "had consumed of the deductible and out-of-pocket is given back to its member-year, "
        "and its duplicate key no longer counts",
        "Pricing: none (VOIDED cases carry 0 in every amount)",
    ]


def test_a_void_row_and_a_denied_review_say_what_they_are(
    story: dict[str, str], lake: Path, reference: Reference, tmp_path: Path
) -> None:
    void = explain_case(lake, "V1").splitlines()
    assert void[0] == "Case V1: VOIDED (1 decision(s); latest: correction (a void), " + (
        "2025-01-16 02:00:01 UTC)"
    )
    assert "  claim_frequency 8 (void of H1)" in void
    assert void[-3:] == [
        f"1. Correction, 2025-01-16 02:00:01 UTC, batch b.csv ({story['b']}): VOIDED",
        "This case is a void of H1: recorded VOIDED, not adjudicated",
        "Pricing: none (VOIDED cases carry 0 in every amount)",
    ]
    deny = write_review(tmp_path / "d.csv", [review_row("H3", "DENY", "CO-50", "bob.king")])
    run_review(review_context(lake, reference, 1, "review-2"), deny)
    denied = explain_case(lake, "H3").splitlines()
    r2 = batch_id_of_bytes(deny.read_bytes())[:12]
    assert denied[0].startswith("Case H3: DENIED (2 decision(s); latest: review by bob.king")
    assert denied[-4:] == [
        f"2. Review by bob.king, 2025-01-16 12:00:00 UTC, review file d.csv ({r2}): DENIED CO-50",
        "Rule set of the case's adjudication: claims-standard v1",
        "Note: none",
        "Pricing: none (DENIED cases carry 0 in every amount)",
    ]


def test_the_command_prints_the_story_or_one_line(story: dict[str, str], lake: Path) -> None:
    result = CliRunner().invoke(app, ["explain", "H1", "--lake", str(lake)])
    assert result.exit_code == 0
    assert result.stdout.startswith("Case H1: VOIDED (3 decision(s)")
    missing = CliRunner().invoke(app, ["explain", "NOPE", "--lake", str(lake)])
    assert missing.exit_code == 2
    assert "no case 'NOPE' in the lake" in missing.stderr
    with pytest.raises(CatalogError):
        explain_case(lake, "NOPE")


def test_the_out_of_pocket_cap_in_the_arithmetic() -> None:
    # 300.00 allowed; used 480.00 of 500.00, spent 480.00 of a 520.00 maximum:
    # deductible 20.00, coinsurance (280.00 x 20 %) = 56.00 before the cap; room 40.00:
    # deductible 20.00, coinsurance min(56.00, 20.00) = 20.00; paid 260.00.
    decision = {
        "status": "APPROVED",
        "allowed_cents": 30_000,
        "deductible_cents": 2_000,
        "coinsurance_cents": 2_000,
        "paid_cents": 26_000,
        "deductible_used_before_cents": 48_000,
        "oop_spent_before_cents": 48_000,
        "oop_max_cents": 52_000,
        "annual_deductible_cents": 50_000,
        "coinsurance_percent": 20,
        "fee_allowed_cents": 10_000,
    }
    payload = {"units": 3, "billed_cents": 1_200_000}
    assert pricing_lines(decision, payload) == [
        "Pricing (spec §5):",
        "  allowed     = min(billed 12,000.00, fee 100.00 x 3 units = 300.00) = 300.00",
        "  deductible  = min(allowed 300.00, max(0, annual 500.00 - used before 480.00)) = 20.00",
        "  coinsurance = (300.00 - 20.00) x 20%, half up = 56.00",
        "  room        = max(0, out-of-pocket maximum 520.00 - spent before 480.00) = 40.00",
        "  deductible  = min(20.00, room 40.00) = 20.00",
        "  coinsurance = min(56.00, room 40.00 - deductible 20.00) = 20.00",
        "  paid        = 300.00 - 20.00 - 20.00 = 260.00",
    ]
