"""Spec §9: corrections, replacement (claim_frequency 7) and void (8), by hand.

Reference data of every test here:

    M1  from 2024-01-01, deductible 500.00, coinsurance 20 %
    M2  from 2024-01-01, deductible   0.00, coinsurance 10 %
    P1  active, in network; PX suspended
    99213  100.00 a unit

Batches are decided one after the other, each seeing every decision before it
(a history in memory, as the what-if replays use; `test_lifecycle_lake.py` runs the
same through the event log and the catalog).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import pytest

from claimsflow.core.decide import BatchDecision, split_voids
from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference
from claimsflow.pipeline.batch import decide_batch
from tests.spec_helpers import Fee, Provider, Span, case, ruleset_v1, text_batch, write_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return write_reference(
        tmp_path_factory.mktemp("reference"),
        members=[
            Span("M1", "2024-01-01", "", "500.00", 20),
            Span("M2", "2024-01-01", "", "0.00", 10),
        ],
        providers=[Provider("P1"), Provider("PX", status="SUSPENDED")],
        fees=[Fee("99213", "100.00")],
    )


def correcting(row: dict[str, str], frequency: str, original: str) -> dict[str, str]:
    return {**row, "claim_frequency": frequency, "original_case_id": original}


def run_batches(
    batches: Sequence[Sequence[Mapping[str, str]]], reference: Reference
) -> list[BatchDecision]:
    """Each batch decided against every decision before it (rejections allowed)."""
    history = MemoryHistory()
    decided = []
    for rows in batches:
        decision = decide_batch(text_batch(rows), reference, ruleset_v1(), history)
        history = history.advanced_by(decision.cases, decision.decisions)
        decided.append(decision)
    return decided


def decisions_of(decision: BatchDecision) -> list[tuple[object, ...]]:
    """(case_id, status, reason codes, deductible, coinsurance, paid, source, decided_by)
    in the order recorded."""
    return [
        (
            r["case_id"],
            r["status"],
            list(r["reason_codes"]),
            r["deductible_cents"],
            r["coinsurance_cents"],
            r["paid_cents"],
            r["decision_source"],
            r["decided_by"],
        )
        for r in decision.decisions.iter_rows(named=True)
    ]


def errors_of(decision: BatchDecision) -> dict[str, list[str]]:
    return {str(r["case_id"]): list(r["errors"]) for r in decision.rejections.iter_rows(named=True)}


def test_a_void_gives_the_deductible_back_before_the_batch_is_priced(
    reference: Reference,
) -> None:
    first, second = run_batches(
        [
            # O1: 400.00 allowed, all of it deductible (500.00 not met): paid 0.
            [case("O1", member="M1", units=4, billed="400.00")],
            [
                correcting(case("V1", member="M1", service="2024-03-02"), "8", "O1"),
                # With O1 voided, M1 has used nothing: 300.00 all deductible.
                # (Were O1 still counted: 100.00 deductible left, coinsurance
                # (200.00 x 20 + 0.50) // 1 = 40.00, paid 160.00.)
                case("N1", member="M1", service="2024-04-01", units=3, billed="300.00"),
            ],
        ],
        reference,
    )
    assert decisions_of(first) == [
        ("O1", "APPROVED", [], 40_000, 0, 0, "ADJUDICATION", None),
    ]
    assert decisions_of(second) == [
        # The voided original, the adjudicated rows, then the void rows (their order
        # within a batch's decisions; claimsflow/core/decide.py, decide).
        ("O1", "VOIDED", [], 0, 0, 0, "CORRECTION", "V1"),
        ("N1", "APPROVED", [], 30_000, 0, 0, "ADJUDICATION", None),
        ("V1", "VOIDED", [], 0, 0, 0, "CORRECTION", "V1"),
    ]
    # Both rows count as decided rows of their batch (spec §9); O1 is not a row of it.
    assert (second.cases.height, second.rejections.height, second.voided_originals) == (2, 0, 1)


def test_a_replacement_with_its_originals_key_is_no_duplicate(reference: Reference) -> None:
    first, second = run_batches(
        [
            [case("O1", member="M1", billed="100.00")],
            [
                # Same member, provider, date and procedure as O1: O1 is voided first,
                # so its key no longer counts (spec §4, §9), and O1's 100.00 deductible
                # is given back: R1 takes 80.00 of the 500.00 again.
                correcting(case("R1", member="M1", billed="80.00"), "7", "O1"),
                # A plain claim with the same key, after R1 in the order (received_date,
                # case_id): R1 (approved) is its earlier twin.
                case("Z1", member="M1", billed="80.00"),
            ],
        ],
        reference,
    )
    assert decisions_of(first) == [("O1", "APPROVED", [], 10_000, 0, 0, "ADJUDICATION", None)]
    assert decisions_of(second) == [
        ("O1", "VOIDED", [], 0, 0, 0, "CORRECTION", "R1"),
        ("R1", "APPROVED", [], 8_000, 0, 0, "ADJUDICATION", None),
        ("Z1", "DENIED", ["CO-18"], 0, 0, 0, "ADJUDICATION", None),
    ]


def test_without_the_correction_the_same_key_is_a_duplicate(reference: Reference) -> None:
    """The contrast of the test above: a plain resent claim (frequency 1) is CO-18."""
    _first, second = run_batches(
        [[case("O1", member="M1")], [case("N1", member="M1", billed="80.00")]], reference
    )
    assert decisions_of(second) == [("N1", "DENIED", ["CO-18"], 0, 0, 0, "ADJUDICATION", None)]


def test_a_replacement_denied_by_the_rules_still_voids_its_original(
    reference: Reference,
) -> None:
    _first, second = run_batches(
        [
            # M2: no deductible, 10 % coinsurance: 100.00 -> 10.00 coinsurance, 90.00 paid.
            [case("O1", member="M2")],
            [correcting(case("R1", member="M2", provider="PX"), "7", "O1")],
        ],
        reference,
    )
    assert decisions_of(second) == [
        ("O1", "VOIDED", [], 0, 0, 0, "CORRECTION", "R1"),
        ("R1", "DENIED", ["CO-B7"], 0, 0, 0, "ADJUDICATION", None),
    ]


def test_a_void_takes_no_part_in_the_batchs_duplicates_or_pricing(
    reference: Reference,
) -> None:
    _first, second = run_batches(
        [
            [case("O1", member="M1", service="2024-05-01")],
            [
                # V1 carries O1's key and a big amount; it is not adjudicated, so N2
                # (same key) is no duplicate of it, and M1's deductible is untouched
                # by it: N2 takes 100.00 (O1's 100.00 was given back).
                correcting(
                    case("V1", member="M1", service="2024-05-01", billed="9000.00"), "8", "O1"
                ),
                case("N2", member="M1", service="2024-05-01"),
            ],
        ],
        reference,
    )
    assert decisions_of(second) == [
        ("O1", "VOIDED", [], 0, 0, 0, "CORRECTION", "V1"),
        ("N2", "APPROVED", [], 10_000, 0, 0, "ADJUDICATION", None),
        ("V1", "VOIDED", [], 0, 0, 0, "CORRECTION", "V1"),
    ]


def test_corrections_that_cannot_be_applied_are_rejected_on_their_column(
    reference: Reference,
) -> None:
    _first, _second, third = run_batches(
        [
            [case("O1", member="M2"), case("O2", member="M2", service="2024-03-02")],
            [correcting(case("V0", member="M2", service="2024-03-03"), "8", "O2")],
            [
                correcting(case("A1", member="M2", service="2024-04-01"), "7", ""),
                correcting(case("A2", member="M2", service="2024-04-02"), "8", "bad id!"),
                correcting(case("A3", member="M2", service="2024-04-03"), "7", "NOPE"),
                correcting(case("A4", member="M2", service="2024-04-04"), "8", "O2"),
                correcting(case("A5", member="M2", service="2024-04-05"), "5", "O1"),
                # Corrects O1 but is rejected on its units: it does not count...
                correcting(case("A6", member="M2", service="2024-04-06", units=0), "7", "O1"),
                # ... so this one is the first row that corrects O1: applied.
                correcting(case("A7", member="M2", service="2024-04-07"), "7", "O1"),
                # A later row correcting O1 again is rejected.
                correcting(case("A8", member="M2", service="2024-04-08"), "8", "O1"),
                # An original decided in this batch, not an earlier one.
                correcting(case("A9", member="M2", service="2024-04-09"), "8", "A7"),
                # Frequency 1 ignores original_case_id, whatever it holds.
                correcting(case("B1", member="M2", service="2024-04-10"), "1", "bad id!"),
                correcting(case("B2", member="M2", service="2024-04-11"), "", "O2"),
            ],
        ],
        reference,
    )
    assert errors_of(third) == {
        "A1": ["original_case_id: required when claim_frequency is 7 (replacement) or 8 (void)"],
        "A2": ["original_case_id: must be 1 to 64 characters of A-Z a-z 0-9 - _"],
        "A3": ["original_case_id: no earlier batch decided this case"],
        "A4": ["original_case_id: the original case is already VOIDED"],
        "A5": ["claim_frequency: must be 1 (original), 7 (replacement) or 8 (void)"],
        "A6": ["units: must be between 1 and 999"],
        "A8": ["original_case_id: an earlier row of this batch already corrects this case"],
        "A9": ["original_case_id: no earlier batch decided this case"],
    }
    assert [(c, s, by) for c, s, *_rest, _src, by in decisions_of(third)] == [
        ("O1", "VOIDED", "A7"),
        ("A7", "APPROVED", None),
        ("B1", "APPROVED", None),
        ("B2", "APPROVED", None),
    ]
    # Nothing is lost: 11 rows = 3 decided + 8 rejected.
    assert (third.rows_in, third.cases.height, third.rejections.height) == (11, 3, 8)
    # Frequency 1 (or empty) keeps no original_case_id.
    assert third.cases.select("case_id", "claim_frequency", "original_case_id").rows() == [
        ("A7", "7", "O1"),
        ("B1", "1", None),
        ("B2", "1", None),
    ]


def test_a_corrected_case_can_be_corrected_no_more_but_its_replacement_can(
    reference: Reference,
) -> None:
    """A chain: R1 replaces O1, then R2 replaces R1 (O1 is VOIDED: not again)."""
    *_, third = run_batches(
        [
            [case("O1", member="M2")],
            [correcting(case("R1", member="M2", billed="90.00"), "7", "O1")],
            [
                correcting(case("R2", member="M2", billed="80.00"), "7", "R1"),
                correcting(case("R3", member="M2", service="2024-06-01"), "7", "O1"),
            ],
        ],
        reference,
    )
    assert errors_of(third) == {"R3": ["original_case_id: the original case is already VOIDED"]}
    # M2: no deductible; 10 % of 80.00 = 8.00; paid 72.00. R1's key was released.
    assert decisions_of(third) == [
        ("R1", "VOIDED", [], 0, 0, 0, "CORRECTION", "R2"),
        ("R2", "APPROVED", [], 0, 800, 7_200, "ADJUDICATION", None),
    ]


def test_the_void_rows_are_the_last_valid_cases_and_the_others_a_slice(
    reference: Reference,
) -> None:
    _first, second = run_batches(
        [
            [case("O1", member="M1"), case("O2", member="M2")],
            [
                case("N1", member="M1", service="2024-06-01"),  # row 1
                correcting(case("V1", member="M1"), "8", "O1"),  # row 2: a void
                correcting(case("R2", member="M2"), "7", "O2"),  # row 3: a replacement
                case("N3", member="M2", service="2024-06-02"),  # row 4
            ],
        ],
        reference,
    )
    # Valid cases: the rows to adjudicate in row order, then the void rows.
    assert second.cases["row_number"].to_list() == [1, 3, 4, 2]
    assert second.cases["case_id"].to_list() == ["N1", "R2", "N3", "V1"]
    # The voided originals stay in the order of the rows that correct them.
    assert [d[0] for d in decisions_of(second)] == ["O1", "O2", "N1", "R2", "N3", "V1"]
    adjudicate, voids = split_voids(second.cases)
    assert adjudicate["case_id"].to_list() == ["N1", "R2", "N3"]
    assert voids["case_id"].to_list() == ["V1"]


def test_split_voids_filters_cases_in_any_other_order() -> None:
    cases = pl.DataFrame(
        {
            "row_number": [1, 2, 3],
            "case_id": ["V1", "N2", "N3"],
            "claim_frequency": ["8", "1", "7"],
        }
    )
    adjudicate, voids = split_voids(cases)
    assert adjudicate["case_id"].to_list() == ["N2", "N3"]
    assert voids["case_id"].to_list() == ["V1"]
    # Without the column (cases typed elsewhere): originals only (spec §1).
    plain = cases.drop("claim_frequency")
    assert split_voids(plain)[0] is plain
    assert split_voids(plain)[1].height == 0
