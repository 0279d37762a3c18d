"""Spec §4: every adjudication rule of `claims-standard` v1, one by one.

Each test runs a tiny hand-built batch through the real pipeline
(`decide_batch`) with the real v1 rule file, and compares status and reason
codes with values written out by hand from the spec's table.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.ingest.reading import with_row_identity
from claimsflow.lake.eventlog import TABLE_SCHEMAS
from claimsflow.pipeline.batch import decide_batch
from tests.spec_helpers import (
    Fee,
    Provider,
    Span,
    case,
    decide,
    decide_batches,
    ruleset_v1,
    verdicts,
    write_reference,
)

APPROVED: tuple[str, list[str]] = ("APPROVED", [])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return write_reference(
        tmp_path_factory.mktemp("reference"),
        members=[
            Span("M1", "2020-01-01"),  # open-ended
            # Two spans with a gap (April and May 2024) between them, listed in
            # members.csv latest first (the file's row order must not matter).
            Span("M2", "2024-06-01", "2024-12-31"),
            Span("M2", "2024-01-01", "2024-03-31"),
            Span("M3", "2020-01-01"),
        ],
        providers=[
            Provider("P1"),
            Provider("P2"),
            Provider("POUT", "ACTIVE", in_network=False),
            Provider("PSUS", "SUSPENDED", in_network=True),
            Provider("PSUSOUT", "SUSPENDED", in_network=False),
        ],
        fees=[
            Fee("99213", "100.00", prior_auth=False, max_units=""),  # no unit limit
            Fee("99214", "50.00", prior_auth=False, max_units="3"),
            Fee("J1100", "20.00", prior_auth=True, max_units=""),
            Fee("99215", "80.00", prior_auth=True, max_units="2"),
        ],
    )


def one(reference: Reference, row: dict[str, str]) -> tuple[str, list[str]]:
    """Decide a one-case batch and return its (status, reason codes)."""
    return verdicts(decide([row], reference))[row["case_id"]]


# --- a clean case ------------------------------------------------------------------


def test_clean_case_is_approved_with_no_codes(reference: Reference) -> None:
    assert one(reference, case("A")) == APPROVED


# --- rule 1: member unknown ----------------------------------------------------------


def test_unknown_member_is_co31_and_rule_2_does_not_also_fire(reference: Reference) -> None:
    # An unknown member has no span covering anything, but CO-26/CO-27 are for
    # *known* members only: CO-31 alone.
    assert one(reference, case("A", member="MX")) == ("DENIED", ["CO-31"])
    assert one(reference, case("B", member="MX", service="2019-01-01")) == ("DENIED", ["CO-31"])


# --- rule 2: member not covered ------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("2023-12-31", ("DENIED", ["CO-26"])),  # before the earliest coverage_start
        ("2024-01-01", APPROVED),  # first day of span 1
        ("2024-03-31", APPROVED),  # coverage_end is inclusive
        ("2024-04-01", ("DENIED", ["CO-27"])),  # day after span 1: in the gap
        ("2024-05-15", ("DENIED", ["CO-27"])),  # in the gap
        ("2024-05-31", ("DENIED", ["CO-27"])),  # last day of the gap
        ("2024-06-01", APPROVED),  # first day of span 2
        ("2024-12-31", APPROVED),  # last day of span 2 (inclusive)
        ("2025-01-01", ("DENIED", ["CO-27"])),  # after the last span
    ],
)
def test_coverage_spans_are_inclusive_and_gaps_deny(
    reference: Reference, service: str, expected: tuple[str, list[str]]
) -> None:
    assert one(reference, case("A", member="M2", service=service)) == expected


def test_open_ended_span_covers_far_future(reference: Reference) -> None:
    assert one(reference, case("A", member="M1", service="2031-07-04")) == APPROVED


# --- rules 3 and 4: provider ---------------------------------------------------------


def test_unknown_provider_is_co_b7_without_co_242(reference: Reference) -> None:
    assert one(reference, case("A", provider="PX")) == ("DENIED", ["CO-B7"])


def test_suspended_in_network_provider_is_co_b7_only(reference: Reference) -> None:
    assert one(reference, case("A", provider="PSUS")) == ("DENIED", ["CO-B7"])


def test_suspended_out_of_network_provider_is_co_b7_then_co_242(reference: Reference) -> None:
    assert one(reference, case("A", provider="PSUSOUT")) == ("DENIED", ["CO-B7", "CO-242"])


def test_active_out_of_network_provider_is_co_242(reference: Reference) -> None:
    assert one(reference, case("A", provider="POUT")) == ("DENIED", ["CO-242"])


# --- rule 5: timely filing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "received", "days", "expected"),
    [
        ("2024-03-01", "2024-03-01", 0, APPROVED),
        # 2024 is a leap year: 2024-01-10 + 365 days = 2025-01-09, not 2025-01-10.
        ("2024-01-10", "2025-01-09", 365, APPROVED),
        ("2024-01-10", "2025-01-10", 366, ("DENIED", ["CO-29"])),
        # 2023-03-01 .. 2024-03-01 spans 2024-02-29: 366 days.
        ("2023-03-01", "2024-02-29", 365, APPROVED),
        ("2023-03-01", "2024-03-01", 366, ("DENIED", ["CO-29"])),
        ("2022-06-15", "2024-06-15", 731, ("DENIED", ["CO-29"])),
    ],
)
def test_timely_filing_limit_is_365_days(
    reference: Reference, service: str, received: str, days: int, expected: tuple[str, list[str]]
) -> None:
    # Guard the hand-written day count itself.
    assert (dt.date.fromisoformat(received) - dt.date.fromisoformat(service)).days == days
    assert one(reference, case("A", service=service, received=received)) == expected


# --- rule 6: service not covered ------------------------------------------------------


def test_unknown_procedure_is_co96_and_not_co197_nor_co151(reference: Reference) -> None:
    # No fee schedule row: nothing says prior auth is required or units are limited.
    row = case("A", procedure="99999", units=999, auth="")
    assert one(reference, row) == ("DENIED", ["CO-96"])


# --- rule 7: prior auth missing ------------------------------------------------------


def test_prior_auth_required_and_empty_is_co197(reference: Reference) -> None:
    assert one(reference, case("A", procedure="J1100", auth="")) == ("DENIED", ["CO-197"])


def test_prior_auth_required_and_given_is_approved(reference: Reference) -> None:
    assert one(reference, case("A", procedure="J1100", auth="PA-1234")) == APPROVED


def test_prior_auth_column_absent_counts_as_missing(reference: Reference) -> None:
    row = case("A", procedure="J1100")
    del row["prior_auth_id"]
    frame = pl.DataFrame([row], schema={k: pl.String for k in row})
    decision = decide_batch(with_row_identity(frame), reference, ruleset_v1(), MemoryHistory())
    assert verdicts(decision) == {"A": ("DENIED", ["CO-197"])}


def test_prior_auth_not_required_and_given_is_approved(reference: Reference) -> None:
    assert one(reference, case("A", procedure="99213", auth="PA-1")) == APPROVED


# --- rule 8: units over limit ---------------------------------------------------------


@pytest.mark.parametrize(
    ("procedure", "units", "expected"),
    [
        ("99214", 1, APPROVED),
        ("99214", 3, APPROVED),  # units = max_units
        ("99214", 4, ("DENIED", ["CO-151"])),  # max_units + 1
        ("99214", 999, ("DENIED", ["CO-151"])),
        ("99213", 999, APPROVED),  # max_units empty = no limit
    ],
)
def test_units_over_limit(
    reference: Reference, procedure: str, units: int, expected: tuple[str, list[str]]
) -> None:
    assert one(reference, case("A", procedure=procedure, units=units, billed="1.00")) == expected


# --- rule 10: high dollar ------------------------------------------------------------


@pytest.mark.parametrize(
    ("billed", "expected"),
    [
        ("9999.99", APPROVED),
        ("10000.00", APPROVED),  # not above the threshold
        ("10000", APPROVED),  # same amount, no decimals
        ("10000.01", ("PENDED", ["P-HIGH-DOLLAR"])),
        ("9999999.99", ("PENDED", ["P-HIGH-DOLLAR"])),
    ],
)
def test_high_dollar_threshold(
    reference: Reference, billed: str, expected: tuple[str, list[str]]
) -> None:
    assert one(reference, case("A", billed=billed)) == expected


# --- several rules; decision precedence -----------------------------------------------


def test_denied_high_dollar_case_is_denied_with_pend_code_last(reference: Reference) -> None:
    # deny > pend: DENIED, and the PEND code is still listed, last (table order).
    row = case("A", provider="POUT", billed="10000.01")
    assert one(reference, row) == ("DENIED", ["CO-242", "P-HIGH-DOLLAR"])


def test_many_rules_firing_list_codes_in_table_order(reference: Reference) -> None:
    # M2 has no coverage on 2024-04-15 (gap) -> CO-27; PSUSOUT -> CO-B7, CO-242;
    # received 2025-05-01 is 381 days later -> CO-29; 99215 needs auth -> CO-197;
    # 99215 max 2 units, 3 given -> CO-151; 20,000.00 billed -> P-HIGH-DOLLAR.
    row = case(
        "X",
        member="M2",
        provider="PSUSOUT",
        service="2024-04-15",
        received="2025-05-01",
        procedure="99215",
        units=3,
        billed="20000.00",
        auth="",
    )
    expected = ["CO-27", "CO-B7", "CO-242", "CO-29", "CO-197", "CO-151", "P-HIGH-DOLLAR"]
    assert one(reference, row) == ("DENIED", expected)


def test_unknown_member_with_other_hits_keeps_table_order(reference: Reference) -> None:
    row = case("A", member="MX", provider="PX", procedure="99999", billed="12000.00")
    assert one(reference, row) == ("DENIED", ["CO-31", "CO-B7", "CO-96", "P-HIGH-DOLLAR"])


def test_duplicate_code_sits_between_co151_and_high_dollar(reference: Reference) -> None:
    # A approved; B has A's key, is late (CO-29), over the limit (CO-151),
    # a duplicate (CO-18) and high-dollar.
    rows = [
        case("A", procedure="99214", service="2024-03-01", received="2024-03-02"),
        case(
            "B",
            procedure="99214",
            service="2024-03-01",
            received="2025-06-01",
            units=4,
            billed="20000.00",
        ),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": APPROVED,
        "B": ("DENIED", ["CO-29", "CO-151", "CO-18", "P-HIGH-DOLLAR"]),
    }


def test_rule_hits_rows_for_one_multi_hit_case(reference: Reference) -> None:
    rows = [
        case("OK", service="2024-02-02"),
        case(
            "X",
            member="M2",
            provider="PSUSOUT",
            service="2024-04-15",
            received="2025-05-01",
            procedure="99215",
            units=3,
            billed="20000.00",
        ),
    ]
    hits = decide(rows, reference).rule_hits
    assert hits.filter(pl.col("case_id") == "OK").height == 0
    got = hits.filter(pl.col("case_id") == "X").select("rule_id", "reason_code", "outcome").rows()
    assert got == [
        ("member-not-covered", "CO-27", "DENY"),
        ("provider-ineligible", "CO-B7", "DENY"),
        ("out-of-network", "CO-242", "DENY"),
        ("timely-filing", "CO-29", "DENY"),
        ("prior-auth-missing", "CO-197", "DENY"),
        ("units-over-limit", "CO-151", "DENY"),
        ("high-dollar", "P-HIGH-DOLLAR", "PEND"),
    ]


def test_rule_hits_include_duplicate_rule(reference: Reference) -> None:
    rows = [case("A"), case("B", received="2024-03-02")]
    hits = decide(rows, reference).rule_hits
    assert hits.select("case_id", "rule_id", "reason_code", "outcome").rows() == [
        ("B", "duplicate-claim", "CO-18", "DENY")
    ]


# --- rule 9: duplicates within a batch ----------------------------------------------


def test_duplicate_order_is_received_date_not_file_order(reference: Reference) -> None:
    # File order: B first, but A was received earlier -> A is the original.
    rows = [
        case("B", service="2024-03-01", received="2024-03-10"),
        case("A", service="2024-03-01", received="2024-03-05"),
    ]
    assert verdicts(decide(rows, reference)) == {"B": ("DENIED", ["CO-18"]), "A": APPROVED}


def test_duplicate_order_ties_on_received_broken_by_case_id(reference: Reference) -> None:
    # Same received_date: case_id decides, as text ("C10" < "C9"), not file order.
    rows = [
        case("C9", received="2024-03-05"),
        case("C10", received="2024-03-05"),
    ]
    assert verdicts(decide(rows, reference)) == {"C9": ("DENIED", ["CO-18"]), "C10": APPROVED}


def test_received_date_beats_case_id_in_duplicate_order(reference: Reference) -> None:
    # "Z" is received before "A": Z is the original although "A" < "Z".
    rows = [case("A", received="2024-03-09"), case("Z", received="2024-03-04")]
    assert verdicts(decide(rows, reference)) == {"A": ("DENIED", ["CO-18"]), "Z": APPROVED}


def test_earlier_denied_twin_does_not_make_a_duplicate(reference: Reference) -> None:
    # A (earlier) lacks the required auth -> denied; B (with auth) is not a duplicate.
    rows = [
        case("A", procedure="J1100", received="2024-03-02", auth=""),
        case("B", procedure="J1100", received="2024-03-03", auth="PA-9"),
    ]
    assert verdicts(decide(rows, reference)) == {"A": ("DENIED", ["CO-197"]), "B": APPROVED}


def test_chain_of_twins_all_refer_back_to_the_approved_first(reference: Reference) -> None:
    # A approved; B duplicate of A; C duplicate too (A's base outcome is not DENIED,
    # and B's base outcome, ignoring rule 9, is APPROVED as well).
    rows = [
        case("C", received="2024-03-04"),
        case("A", received="2024-03-02"),
        case("B", received="2024-03-03"),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": APPROVED,
        "B": ("DENIED", ["CO-18"]),
        "C": ("DENIED", ["CO-18"]),
    }


def test_denied_first_then_approved_then_duplicate(reference: Reference) -> None:
    # A denied (no auth): not an original. B approved. C duplicate of B.
    rows = [
        case("A", procedure="J1100", received="2024-03-02"),
        case("B", procedure="J1100", received="2024-03-03", auth="PA-1"),
        case("C", procedure="J1100", received="2024-03-04", auth="PA-2"),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": ("DENIED", ["CO-197"]),
        "B": APPROVED,
        "C": ("DENIED", ["CO-18"]),
    }


def test_twin_denied_for_other_reasons_is_still_checked_for_duplicate(
    reference: Reference,
) -> None:
    # A approved; B over the unit limit is also a duplicate (both codes).
    rows = [
        case("A", procedure="99214", received="2024-03-02"),
        case("B", procedure="99214", received="2024-03-03", units=9),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": APPROVED,
        "B": ("DENIED", ["CO-151", "CO-18"]),
    }


def test_pended_earlier_case_makes_a_later_one_a_duplicate(reference: Reference) -> None:
    rows = [
        case("A", received="2024-03-02", billed="15000.00"),
        case("B", received="2024-03-03", billed="100.00"),
        case("C", received="2024-03-04", billed="15000.00"),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": ("PENDED", ["P-HIGH-DOLLAR"]),
        "B": ("DENIED", ["CO-18"]),
        "C": ("DENIED", ["CO-18", "P-HIGH-DOLLAR"]),
    }


def test_only_later_twin_is_pended_then_earlier_one_is_not_duplicate(
    reference: Reference,
) -> None:
    rows = [
        case("B", received="2024-03-03", billed="15000.00"),
        case("A", received="2024-03-02", billed="100.00"),
    ]
    assert verdicts(decide(rows, reference)) == {
        "A": APPROVED,
        "B": ("DENIED", ["CO-18", "P-HIGH-DOLLAR"]),
    }


@pytest.mark.parametrize(
    "change",
    [
        {"member_id": "M3"},
        {"provider_id": "P2"},
        {"service_date": "2024-03-02"},
        {"procedure_code": "99214"},
    ],
)
def test_any_key_part_differing_is_not_a_duplicate(
    reference: Reference, change: dict[str, str]
) -> None:
    rows = [
        case("A", service="2024-03-01", received="2024-03-05"),
        {**case("B", service="2024-03-01", received="2024-03-06"), **change},
    ]
    assert verdicts(decide(rows, reference)) == {"A": APPROVED, "B": APPROVED}


def test_non_key_columns_differing_is_still_a_duplicate(reference: Reference) -> None:
    rows = [
        case("A", received="2024-03-05", diagnosis="J45.909", units=1, billed="100.00"),
        case("B", received="2024-03-06", diagnosis="E11.9", units=2, billed="250.00", auth="x"),
    ]
    assert verdicts(decide(rows, reference)) == {"A": APPROVED, "B": ("DENIED", ["CO-18"])}


# --- rule 9: duplicates across batches -----------------------------------------------


def test_key_approved_in_earlier_batch_makes_a_duplicate(reference: Reference) -> None:
    first, second = decide_batches(
        [[case("A", received="2024-03-05")], [case("B", received="2024-03-06")]], reference
    )
    assert verdicts(first) == {"A": APPROVED}
    assert verdicts(second) == {"B": ("DENIED", ["CO-18"])}


def test_earlier_batch_wins_even_if_received_later(reference: Reference) -> None:
    # Across batches there is no (received_date, case_id) order: any APPROVED or
    # PENDED decision of an earlier batch makes the key a duplicate.
    first, second = decide_batches(
        [[case("B", received="2024-03-20")], [case("A", received="2024-03-02")]], reference
    )
    assert verdicts(first) == {"B": APPROVED}
    assert verdicts(second) == {"A": ("DENIED", ["CO-18"])}


def test_key_pended_in_earlier_batch_makes_a_duplicate(reference: Reference) -> None:
    first, second = decide_batches(
        [[case("A", billed="10000.01")], [case("B", received="2024-03-09")]], reference
    )
    assert verdicts(first) == {"A": ("PENDED", ["P-HIGH-DOLLAR"])}
    assert verdicts(second) == {"B": ("DENIED", ["CO-18"])}


def test_key_only_denied_in_earlier_batch_is_not_a_duplicate(reference: Reference) -> None:
    first, second = decide_batches(
        [
            [case("A", procedure="J1100", auth="")],
            [case("B", procedure="J1100", received="2024-03-09", auth="PA-7")],
        ],
        reference,
    )
    assert verdicts(first) == {"A": ("DENIED", ["CO-197"])}
    assert verdicts(second) == {"B": APPROVED}


def test_earlier_batch_duplicate_chain_carries_to_third_batch(reference: Reference) -> None:
    first, second, third = decide_batches(
        [
            [case("A", procedure="J1100", auth="")],  # denied: no original
            [case("B", procedure="J1100", received="2024-03-09", auth="PA-7")],  # original
            [case("C", procedure="J1100", received="2024-03-10", auth="PA-8")],
        ],
        reference,
    )
    assert verdicts(first) == {"A": ("DENIED", ["CO-197"])}
    assert verdicts(second) == {"B": APPROVED}
    assert verdicts(third) == {"C": ("DENIED", ["CO-18"])}


def _decided(rows: list[dict[str, object]]) -> pl.DataFrame:
    """A hand-made frame of earlier decisions (case columns, status, deductible)."""
    schema = {c: TABLE_SCHEMAS["cases"][c] for c in CASE_PAYLOAD_COLUMNS}
    return pl.DataFrame(rows, schema={**schema, "status": pl.String, "deductible_cents": pl.Int64})


def _earlier(case_id: str, status: str, procedure: str = "99213") -> dict[str, object]:
    return {
        "case_id": case_id,
        "member_id": "M1",
        "provider_id": "P1",
        "service_date": dt.date(2024, 3, 1),
        "received_date": dt.date(2024, 3, 1),
        "procedure_code": procedure,
        "diagnosis_code": "J45.909",
        "units": 1,
        "billed_cents": 10000,
        "prior_auth_id": None,
        "status": status,
        "deductible_cents": 0,
    }


@pytest.mark.parametrize(
    ("earlier_status", "expected"),
    [
        ("APPROVED", ("DENIED", ["CO-18"])),
        ("PENDED", ("DENIED", ["CO-18"])),
        ("DENIED", APPROVED),
    ],
)
def test_history_from_decided_cases_drives_cross_batch_duplicates(
    reference: Reference, earlier_status: str, expected: tuple[str, list[str]]
) -> None:
    history = MemoryHistory.of(_decided([_earlier("OLD", earlier_status)]))
    decision = decide([case("NEW", received="2024-03-05")], reference, history=history)
    assert verdicts(decision) == {"NEW": expected}


def test_history_key_other_procedure_is_not_a_duplicate(reference: Reference) -> None:
    history = MemoryHistory.of(_decided([_earlier("OLD", "APPROVED", "99214")]))
    decision = decide([case("NEW", received="2024-03-05")], reference, history=history)
    assert verdicts(decision) == {"NEW": APPROVED}


def test_history_duplicate_and_in_batch_twin(reference: Reference) -> None:
    # The key was approved earlier: both new twins are duplicates.
    history = MemoryHistory.of(_decided([_earlier("OLD", "APPROVED")]))
    rows = [case("N1", received="2024-03-05"), case("N2", received="2024-03-06")]
    decision = decide(rows, reference, history=history)
    assert verdicts(decision) == {"N1": ("DENIED", ["CO-18"]), "N2": ("DENIED", ["CO-18"])}
