"""Corrections (spec §9) through the event log and the analyst catalog (spec §7).

Reference data (tests/batch_helpers.py): M001 from 2024-01-01, deductible 500.00,
coinsurance 20 %; P001 active in network; 99213 100.00 a unit (max 4).
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import polars as pl

from claimsflow.analysis.remittance import remit_cases
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.history import LakeHistory
from claimsflow.ops.runlog import load_run_facts
from claimsflow.pipeline.batch import RunContext, batch_id_of_bytes, process_batch
from schemas.case_batch import CASE_COLUMNS
from tests.batch_helpers import CsvWriter, InboxRunner, case_row, write_csv
from tests.review_helpers import documented_queries

#: Every column a case batch may carry (spec §1), in the contract's order.
HEADER = CASE_COLUMNS


def test_a_void_and_a_replacement_through_the_log_and_the_catalog(
    write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path
) -> None:
    a = write_batch(
        "a.csv",
        [
            # 3 x 100.00 = 300.00, all deductible.
            case_row("O1", units="3", billed_amount="300.00"),
            # 100.00, all deductible (M001 has used 400.00 of 500.00).
            case_row("O2", service_date="2024-05-02", billed_amount="100.00"),
        ],
        header=HEADER,
    )
    first = run_fixture_inbox()
    b = write_batch(
        "b.csv",
        [
            # Voids O1: its 300.00 deductible is given back.
            {
                **case_row("V1", service_date="2024-06-01", received_date="2024-06-10"),
                "claim_frequency": "8",
                "original_case_id": "O1",
            },
            # Replaces O2 with 50.00 (same key): O2's 100.00 given back, key released.
            {
                **case_row("R2", service_date="2024-05-02", billed_amount="50.00"),
                "claim_frequency": "7",
                "original_case_id": "O2",
            },
            # 200.00: M001 has used 50.00 (R2) of 500.00 -> 200.00 deductible, paid 0.
            case_row(
                "N3",
                service_date="2024-07-01",
                received_date="2024-07-05",
                units="2",
                billed_amount="200.00",
            ),
        ],
        header=HEADER,
    )
    second = run_fixture_inbox()
    assert [o.status for o in first] == ["PROCESSED"]
    # The second run skips a.csv (seen before) and processes b.csv.
    assert [(o.source, o.status, o.rows_decided, o.voided_originals) for o in second] == [
        ("a.csv", "SKIPPED", 0, 0),
        ("b.csv", "PROCESSED", 3, 2),
    ]
    a_id, b_id = batch_id_of_bytes(a.read_bytes()), batch_id_of_bytes(b.read_bytes())

    latest = catalog.run_query(
        lake,
        "SELECT case_id, batch_id, status, deductible_cents, paid_cents, decision_source, "
        "decided_by, received_batch_id FROM case_decisions ORDER BY case_id",
    ).rows
    assert latest == [
        ("N3", b_id, "APPROVED", 20_000, 0, "ADJUDICATION", None, b_id),
        ("O1", b_id, "VOIDED", 0, 0, "CORRECTION", "V1", a_id),
        ("O2", b_id, "VOIDED", 0, 0, "CORRECTION", "R2", a_id),
        ("R2", b_id, "APPROVED", 5_000, 0, "ADJUDICATION", None, b_id),
        ("V1", b_id, "VOIDED", 0, 0, "CORRECTION", "V1", b_id),
    ]
    history = catalog.run_query(
        lake,
        "SELECT case_id, status, decision_source FROM decision_history "
        "WHERE case_id IN ('O1', 'O2') ORDER BY case_id, decided_at",
    ).rows
    assert history == [
        ("O1", "APPROVED", "ADJUDICATION"),
        ("O1", "VOIDED", "CORRECTION"),
        ("O2", "APPROVED", "ADJUDICATION"),
        ("O2", "VOIDED", "CORRECTION"),
    ]
    batches = catalog.run_query(
        lake,
        "SELECT source, status, kind, rows_in, rows_decided, rows_rejected FROM batches "
        "WHERE status = 'PROCESSED' ORDER BY source",
    ).rows
    assert batches == [
        ("a.csv", "PROCESSED", "CASES", 2, 2, 0),
        ("b.csv", "PROCESSED", "CASES", 3, 3, 0),
    ]
    cases = catalog.run_query(
        lake,
        "SELECT case_id, claim_frequency, original_case_id FROM cases ORDER BY case_id",
    ).rows
    assert cases == [
        ("N3", "1", None),
        ("O1", "1", None),
        ("O2", "1", None),
        ("R2", "7", "O2"),
        ("V1", "8", "O1"),
    ]
    # Spec §11: batch b remits its adjudicated cases, the replacement R2 and N3 (one
    # provider), not its void row V1 (VOIDED), nor the originals it voided (batch a's).
    remitted = remit_cases(lake, b_id).select("case_id", "status", "paid_cents", "billed_cents")
    assert remitted.rows() == [("N3", "APPROVED", 0, 20_000), ("R2", "APPROVED", 0, 5_000)]
    assert remit_cases(lake, a_id).is_empty()


def test_a_batch_that_voids_earlier_cases_records_as_many_decisions_as_rows_decided(
    write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path
) -> None:
    """The gate's counts-match-log (claimsflow/ops/quality.py) compares a batch's
    rows_decided with the decisions of its own rows: b.csv records 3 of those (V1,
    R2, N3) and 2 VOIDED decisions of a.csv's O1 and O2, which are not its rows."""
    write_batch(
        "a.csv",
        [case_row("O1", billed_amount="100.00"), case_row("O2", service_date="2024-05-02")],
        header=HEADER,
    )
    run_fixture_inbox()
    write_batch(
        "b.csv",
        [
            {**case_row("V1"), "claim_frequency": "8", "original_case_id": "O1"},
            {**case_row("R2", service_date="2024-05-02"), "claim_frequency": "7",
             "original_case_id": "O2"},
            case_row("N3", service_date="2024-07-01", received_date="2024-07-05"),
        ],
        header=HEADER,
    )  # fmt: skip
    run_fixture_inbox()

    facts = load_run_facts(lake)  # the latest run: a.csv skipped, b.csv processed

    assert facts.batches.select("source", "status", "rows_decided", "decisions_recorded").rows(
    ) == [("a.csv", "SKIPPED", 0, 0), ("b.csv", "PROCESSED", 3, 3)]  # fmt: skip


def test_a_correction_recorded_at_the_adjudications_instant_is_the_latest_everywhere(
    tmp_path: Path, lake: Path, reference: Reference, ruleset_v1: RuleSet
) -> None:
    # A frozen clock: both batches are stamped 2025-01-15 02:00. At one instant a
    # review or correction comes after the adjudication it follows (it can only follow
    # one), whatever the batches' ids: the catalog, the lake's history and the 835
    # agree. The void's file is chosen so that its batch_id sorts before the
    # adjudication's, which an order by (decided_at, batch_id) would take as latest.
    instant = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC)
    eventlog.ensure_lake(lake)
    run = RunContext(lake, reference, ruleset_v1, "frozen", lambda: instant)
    first = write_csv(tmp_path / "a.csv", [case_row("O1", billed_amount="80.00")], HEADER)
    a_id = batch_id_of_bytes(first.read_bytes())
    for n in itertools.count(1):
        void = {
            **case_row(f"V{n}", service_date="2024-06-01", received_date="2024-06-10"),
            "claim_frequency": "8",
            "original_case_id": "O1",
        }
        second = write_csv(tmp_path / "b.csv", [void], HEADER)
        if batch_id_of_bytes(second.read_bytes()) < a_id:
            break
    assert [process_batch(p, run).status for p in (first, second)] == ["PROCESSED"] * 2
    catalog.refresh_catalog(lake)

    latest = catalog.run_query(
        lake, "SELECT status, decision_source FROM case_decisions WHERE case_id = 'O1'"
    ).rows
    assert latest == [("VOIDED", "CORRECTION")]
    story = catalog.run_query(lake, "SELECT status FROM decision_history WHERE case_id = 'O1'").rows
    assert story == [("APPROVED",), ("VOIDED",)]
    seen = LakeHistory(lake).decided_among(pl.Series(["O1"]))
    assert seen.rows() == [("O1", "VOIDED")]
    # The analysts' query of the originals voided finds O1's decision before the void
    # at the same instant: APPROVED, paid 0, 80.00 of deductible given back.
    section = "Corrections: voids and replacements"
    voided = documented_queries(section)[section][1]
    assert catalog.run_query(lake, voided).rows == [
        (
            "O1",
            f"V{n}",
            "void",
            instant,
            batch_id_of_bytes(second.read_bytes()),
            "APPROVED",
            0,
            8_000,
        )
    ]
    # Nothing of batch a is remitted: its one case is VOIDED.
    assert remit_cases(lake, a_id).is_empty()
