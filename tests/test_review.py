"""Spec §8: examiner review of PENDED cases, through the event log and the catalog.

Reference data (tests/batch_helpers.py), worked by hand below:

    M001  from 2024-01-01, deductible 500.00, coinsurance 20 %
    M002  2023 span; from 2024-03-01, deductible 250.00, coinsurance 0 %
    P001  active, in network
    99213 100.00 a unit (max 4); J1100 12.50 a unit

High-dollar cases (billed above 10,000.00) are PENDED by rule set v1. Runs record on
2025-01-15 02:00 + n days (conftest.make_run); a review of day n records at noon of
that day (tests/review_helpers.py), so the order of decisions is the order here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.history import as_status_frame
from claimsflow.core.pricing import ACCUMULATED_SCHEMA
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.review import (
    REVIEWED_CASE_SCHEMA,
    ReviewHistory,
    decide_review,
    not_pended,
    validate_review,
)
from claimsflow.ingest.reading import with_row_identity
from claimsflow.lake import catalog, eventlog
from claimsflow.ops import runlog
from claimsflow.pipeline.batch import batch_id_of_bytes
from claimsflow.pipeline.review import ReviewOutcome, run_review
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED
from tests.batch_helpers import (
    FEE_SCHEDULE_CSV,
    MEMBERS_CSV,
    CsvWriter,
    InboxRunner,
    case_row,
    write_reference,
)
from tests.review_helpers import (
    documented_queries,
    first_batch,
    review_context,
    review_row,
    write_review,
)

CASE_HEADER = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
    "prior_auth_id",
    "claim_frequency",
    "original_case_id",
)


def query(lake: Path, sql: str) -> list[tuple[object, ...]]:
    return catalog.run_query(lake, sql).rows


def batch_id(path: Path) -> str:
    return batch_id_of_bytes(path.read_bytes())


def review(lake: Path, reference: Reference, path: Path, day: int, run: str) -> ReviewOutcome:
    """Record a review file as `adjudicate review` does (lake opened, catalog rebuilt)."""
    return run_review(review_context(lake, reference, day, run), path)


def test_approve_priced_after_earlier_batches_and_earlier_rows_then_seen_by_later_batches(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    a = write_batch("a.csv", first_batch())
    run_fixture_inbox()  # day 0
    # B1: 2 x 100.00 = 200.00; M001 has used 80.00 -> all of it deductible.
    b = write_batch(
        "b.csv",
        [
            case_row(
                "B1",
                service_date="2024-08-01",
                received_date="2024-08-02",
                units="2",
                billed_amount="200.00",
            )
        ],
    )
    run_fixture_inbox()  # day 1
    path = write_review(
        tmp_path / "reviews" / "r.csv",
        [
            # M001 has used 80.00 (A1) + 200.00 (B1) = 280.00 of 500.00 before the file.
            # allowed 400.00; deductible min(400.00, 500.00 - 280.00) = 220.00;
            # coinsurance ((400.00 - 220.00) x 20 % = 36.00; paid 400 - 220 - 36 = 144.00.
            review_row("H2", note="records received"),
            # In file order, after H2 (though served earlier): used 280 + 220 = 500.00,
            # deductible 0; coinsurance 300.00 x 20 % = 60.00; paid 240.00.
            review_row("H1"),
            review_row("H3", "DENY", "CO-50", examiner="bob.king", note="not medically necessary"),
            review_row("A1"),  # APPROVED already: rejected
        ],
    )
    outcome = review(lake, reference, path, day=1, run="review-1")
    r = batch_id(path)
    assert outcome.batch.status == PROCESSED
    assert (outcome.batch.rows_in, outcome.batch.rows_decided, outcome.batch.rows_rejected) == (
        4,
        3,
        1,
    )
    assert outcome.batch.by_status == {"APPROVED": 2, "DENIED": 1}
    assert outcome.exit_code == 1
    assert [
        (row["row_number"], row["case_id"], row["outcome"], row["paid_cents"], row["errors"])
        for row in outcome.table()
    ] == [
        (1, "H2", "APPROVED", 14_400, []),
        (2, "H1", "APPROVED", 24_000, []),
        (3, "H3", "DENIED", 0, []),
        (
            4,
            "A1",
            "REJECTED",
            None,
            ["case_id: the case's latest decision is APPROVED, not PENDED"],
        ),
    ]

    # C1, after the review: 100.00; M001 has used 80 + 200 + 220 + 0 = 500.00 -> no
    # deductible; coinsurance 20.00; paid 80.00 (the review's decisions count, spec §6).
    c = write_batch(
        "c.csv",
        [
            case_row(
                "C1", service_date="2024-09-01", received_date="2024-09-02", billed_amount="100.00"
            )
        ],
    )
    run_fixture_inbox()  # day 2
    a_id, b_id, c_id = batch_id(a), batch_id(b), batch_id(c)

    assert query(
        lake,
        "SELECT case_id, batch_id, status, reason_codes, allowed_cents, deductible_cents, "
        "coinsurance_cents, paid_cents, deductible_used_before_cents, ruleset_name, "
        "ruleset_version, decision_source, decided_by, note, received_batch_id "
        "FROM case_decisions ORDER BY case_id",
    ) == [
        ("A1", a_id, "APPROVED", [], 8_000, 8_000, 0, 0, 0, "claims-standard", "1",
         "ADJUDICATION", None, None, a_id),
        ("B1", b_id, "APPROVED", [], 20_000, 20_000, 0, 0, 8_000, "claims-standard", "1",
         "ADJUDICATION", None, None, b_id),
        ("C1", c_id, "APPROVED", [], 10_000, 0, 2_000, 8_000, 50_000, "claims-standard", "1",
         "ADJUDICATION", None, None, c_id),
        ("H1", r, "APPROVED", [], 30_000, 0, 6_000, 24_000, 50_000, "claims-standard", "1",
         "REVIEW", "ann.lee", None, a_id),
        ("H2", r, "APPROVED", [], 40_000, 22_000, 3_600, 14_400, 28_000, "claims-standard",
         "1", "REVIEW", "ann.lee", "records received", a_id),
        ("H3", r, "DENIED", ["CO-50"], 0, 0, 0, 0, None, "claims-standard", "1",
         "REVIEW", "bob.king", "not medically necessary", a_id),
    ]  # fmt: skip
    assert query(
        lake,
        "SELECT case_id, batch_id, status, reason_codes, paid_cents, decision_source, "
        "decided_by, note FROM decision_history WHERE case_id IN ('H2', 'H3', 'A1') "
        "ORDER BY decided_at, batch_id, case_id",
    ) == [
        ("A1", a_id, "APPROVED", [], 0, "ADJUDICATION", None, None),
        ("H2", a_id, "PENDED", ["P-HIGH-DOLLAR"], 0, "ADJUDICATION", None, None),
        ("H3", a_id, "PENDED", ["P-HIGH-DOLLAR"], 0, "ADJUDICATION", None, None),
        ("H2", r, "APPROVED", [], 14_400, "REVIEW", "ann.lee", "records received"),
        ("H3", r, "DENIED", ["CO-50"], 0, "REVIEW", "bob.king", "not medically necessary"),
    ]
    assert query(
        lake,
        "SELECT source, status, kind, rows_in, rows_decided, rows_rejected, reason "
        "FROM batches ORDER BY processed_at",
    ) == [
        ("a.csv", PROCESSED, "CASES", 4, 4, 0, None),
        ("a.csv", SKIPPED, "CASES", 0, 0, 0, None),
        ("b.csv", PROCESSED, "CASES", 1, 1, 0, None),
        ("r.csv", PROCESSED, "REVIEW", 4, 3, 1, None),
        ("a.csv", SKIPPED, "CASES", 0, 0, 0, None),
        ("b.csv", SKIPPED, "CASES", 0, 0, 0, None),
        ("c.csv", PROCESSED, "CASES", 1, 1, 0, None),
    ]
    assert query(lake, "SELECT batch_id, row_number, case_id, errors, raw FROM rejections") == [
        (
            r,
            4,
            "A1",
            ["case_id: the case's latest decision is APPROVED, not PENDED"],
            '{"case_id":"A1","decision":"APPROVE","reason_code":"","examiner":"ann.lee","note":""}',
        )
    ]
    # The review's decisions are events like any other; no case is received by it.
    assert query(
        lake,
        f"SELECT event_type, count(*) FROM events WHERE batch_id = '{r}' GROUP BY ALL ORDER BY 1",
    ) == [("batch_processed", 1), ("case_decided", 3), ("row_rejected", 1)]


PENDING = [f"P{n:02d}" for n in range(1, 15)]


def pending_batch() -> list[dict[str, str]]:
    """P01..P14: M001, J1100 x 1 (allowed 12.50), billed 10,000.01 (PENDED), each on
    its own service day (no two share a duplicate key)."""
    return [
        case_row(
            case_id,
            service_date=f"2024-05-{n:02d}",
            received_date=f"2024-05-{n + 1:02d}",
            procedure_code="J1100",
            billed_amount="10000.01",
        )
        for n, case_id in enumerate(PENDING, start=1)
    ]


SHAPE = "reason_code: must be CO-, PR-, OA- or PI- and 1 to 5 characters of A-Z 0-9 (e.g. CO-45)"


def test_a_review_file_broken_in_each_column(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch("p.csv", pending_batch())
    run_fixture_inbox()
    rows = [
        review_row("P01", ticket="T-1"),  # applied: 12.50, all deductible
        review_row("", ticket="T-2"),
        review_row("NOPE", ticket="T-3"),
        review_row("P02", "MAYBE", ticket="T-4"),
        review_row("P03", "", ticket="T-5"),
        review_row("P04", "approve", ticket="T-6"),
        review_row("P05", "DENY", "", ticket="T-7"),
        review_row("P06", "DENY", "CO-123456", ticket="T-8"),
        review_row("P07", "DENY", "XY-1", ticket="T-9"),
        review_row("P08", "APPROVE", "CO-45", ticket="T-10"),
        review_row("P09", examiner="", ticket="T-11"),
        review_row("P10", examiner="x" * 65, ticket="T-12"),
        review_row("P11", examiner="   ", ticket="T-13"),
        review_row("P01", "DENY", "CO-50", ticket="T-14"),  # named by row 1 already
        review_row("P12", "X", "bad", examiner="", ticket="T-15"),
        review_row("P13", "DENY", "PR-1", examiner="y" * 64, note="boundary", ticket="T-16"),
        review_row("P14", "DENY", "co-50", ticket="T-17"),
    ]
    path = write_review(tmp_path / "broken.csv", rows)
    outcome = review(lake, reference, path, day=0, run="review-broken")
    r = batch_id(path)

    assert query(lake, "SELECT row_number, case_id, errors FROM rejections ORDER BY 1") == [
        (2, "", ["case_id: required value is missing"]),
        (3, "NOPE", ["case_id: no batch decided this case"]),
        (4, "P02", ["decision: must be APPROVE or DENY"]),
        (5, "P03", ["decision: required value is missing"]),
        (6, "P04", ["decision: must be APPROVE or DENY"]),
        (7, "P05", ["reason_code: required when decision is DENY"]),
        (8, "P06", [SHAPE]),
        (9, "P07", [SHAPE]),
        (10, "P08", ["reason_code: must be empty when decision is APPROVE"]),
        (11, "P09", ["examiner: required value is missing"]),
        (12, "P10", ["examiner: must be 1 to 64 characters"]),
        (13, "P11", ["examiner: must not be blank"]),
        (14, "P01", ["case_id: repeats the case_id of an earlier row of this file"]),
        (
            15,
            "P12",
            [
                "decision: must be APPROVE or DENY",
                SHAPE,
                "examiner: required value is missing",
            ],
        ),
        (17, "P14", [SHAPE]),
    ]
    # Raw values as read, extra columns included.
    raw = query(lake, "SELECT raw FROM rejections WHERE row_number = 13")[0][0]
    assert json.loads(str(raw)) == {
        "case_id": "P11",
        "decision": "APPROVE",
        "reason_code": "",
        "examiner": "   ",
        "note": "",
        "ticket": "T-13",
    }
    assert query(
        lake,
        "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, paid_cents, "
        f"decided_by, note FROM decision_events WHERE batch_id = '{r}' ORDER BY case_id",
    ) == [
        ("P01", "APPROVED", [], 1_250, 1_250, 0, "ann.lee", None),
        ("P13", "DENIED", ["PR-1"], 0, 0, 0, "y" * 64, "boundary"),
    ]
    assert (outcome.batch.rows_in, outcome.batch.rows_decided, outcome.batch.rows_rejected) == (
        17,
        2,
        15,
    )
    # Every rejected row's case is still waiting.
    assert query(lake, "SELECT case_id FROM pended_queue ORDER BY case_id") == [
        (c,) for c in PENDING if c not in ("P01", "P13")
    ]


def test_the_same_bytes_again_are_skipped_under_any_name(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch("a.csv", first_batch())
    run_fixture_inbox()
    rows = [review_row("H3", "DENY", "CO-50")]
    first = write_review(tmp_path / "one.csv", rows)
    again = write_review(tmp_path / "copy.csv", rows)
    outcomes = [
        review(lake, reference, first, day=0, run="review-1"),
        review(lake, reference, first, day=0, run="review-2"),
        review(lake, reference, again, day=0, run="review-3"),
    ]
    assert [(o.batch.source, o.batch.status, o.exit_code) for o in outcomes] == [
        ("one.csv", PROCESSED, 0),
        ("one.csv", SKIPPED, 0),
        ("copy.csv", SKIPPED, 0),
    ]
    r = batch_id(first)
    sql = "SELECT source, status, kind, rows_in FROM batches WHERE kind = 'REVIEW' ORDER BY 2, 1"
    assert query(lake, sql) == [
        ("one.csv", PROCESSED, "REVIEW", 1),
        ("copy.csv", SKIPPED, "REVIEW", 0),
        ("one.csv", SKIPPED, "REVIEW", 0),
    ]
    assert query(lake, f"SELECT count(*) FROM decision_events WHERE batch_id = '{r}'") == [(1,)]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"case_id,decision,examiner,note\nH3,DENY,bob,\n",
         "missing required column(s): reason_code"),
        (b"case_id;decision;reason_code;examiner\nH3;DENY;CO-50;bob\n",
         "missing required column(s): case_id, decision, reason_code, examiner"),
        (b"\xff\xfecase_id,decision\n", "is not valid UTF-8 text (byte 0)"),
        (b"case_id,decision,reason_code,examiner\rH3,DENY,CO-50,bob\r",
         "its lines end in a carriage return alone (CR); a CSV's lines must end in LF or CRLF"),
    ],
    ids=["empty", "no-reason-code-column", "semicolons", "not-utf8", "lone-carriage-returns"],
)  # fmt: skip
def test_a_file_that_is_not_a_review_csv_is_a_rejected_batch_kept_in_quarantine(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
    content: bytes,
    reason: str,
) -> None:
    write_batch("a.csv", first_batch())
    run_fixture_inbox()
    path = tmp_path / "bad-review.csv"
    path.write_bytes(content)
    outcome = review(lake, reference, path, day=0, run="review-bad")
    r = batch_id(path)
    assert outcome.batch.status == REJECTED
    assert outcome.exit_code == 1
    stored = query(
        lake,
        "SELECT source, status, kind, rows_in, rows_decided, rows_rejected, reason FROM batches "
        "WHERE kind = 'REVIEW'",
    )
    assert stored == [("bad-review.csv", REJECTED, "REVIEW", 0, 0, 0, outcome.batch.reason)]
    assert outcome.batch.reason == reason
    kept = eventlog.quarantine_dir(lake) / r
    assert (kept / "bad-review.csv").read_bytes() == content
    assert (kept / "reason.txt").read_text(encoding="utf-8") == (
        f"bad-review.csv: {outcome.batch.reason}\n"
    )
    # Nothing applied: H3 still waits.
    assert query(lake, "SELECT status FROM case_decisions WHERE case_id = 'H3'") == [("PENDED",)]


def test_a_line_cut_short_or_too_long_is_a_rejected_row(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch("a.csv", first_batch())
    run_fixture_inbox()
    path = tmp_path / "r.csv"
    path.write_bytes(
        b"case_id,decision,reason_code,examiner,note\n"
        b"H3,DENY,CO-50\n"  # cut short: no examiner, no note
        b"H2,DENY,CO-50,bob.king,,extra\n"  # one field more than the header
        b"H1,DENY,CO-50,bob.king,\n"
    )
    outcome = review(lake, reference, path, day=0, run="review-ragged")
    assert (outcome.batch.status, outcome.batch.rows_decided) == (PROCESSED, 1)
    assert [(r["row_number"], r["case_id"], r["errors"]) for r in outcome.table()] == [
        (
            1,
            "H3",
            [
                "examiner: not in the line (it has 3 of the header's 5 fields)",
                "note: not in the line (it has 3 of the header's 5 fields)",
            ],
        ),
        (2, "H2", ["column 6: not in the header (the line has more than its 5 fields)"]),
        (3, "H1", []),
    ]


def test_a_header_only_review_file_is_processed_with_no_rows(
    lake: Path, reference: Reference, tmp_path: Path
) -> None:
    path = write_review(tmp_path / "empty.csv", [])
    outcome = review(lake, reference, path, day=0, run="review-empty")
    assert (outcome.batch.status, outcome.batch.rows_in, outcome.exit_code) == (PROCESSED, 0, 0)
    assert query(lake, "SELECT kind, rows_in, rows_decided FROM batches") == [("REVIEW", 0, 0)]


def test_only_pended_cases_can_be_reviewed(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch(
        "a.csv",
        [
            *first_batch(),
            case_row("D1", member_id="NOBODY", service_date="2024-05-02"),  # DENIED CO-31
            case_row("O1", service_date="2024-05-03"),  # APPROVED, voided below
        ],
    )
    run_fixture_inbox()
    # Day 0: H3 approved by a first review.
    first = write_review(tmp_path / "first.csv", [review_row("H3")])
    review(lake, reference, first, day=0, run="review-1")
    # Day 1: O1 voided; H1 replaced by R1 (a replacement voids the PENDED original).
    write_batch(
        "b.csv",
        [
            {**case_row("V1", service_date="2024-05-03"), "claim_frequency": "8",
             "original_case_id": "O1"},
            {**case_row("R1", service_date="2024-06-01", received_date="2024-06-06", units="3"),
             "claim_frequency": "7", "original_case_id": "H1"},
        ],
        header=CASE_HEADER,
    )  # fmt: skip
    run_fixture_inbox()
    second = write_review(
        tmp_path / "second.csv",
        [
            review_row("D1", "APPROVE"),
            review_row("O1", "DENY", "CO-50"),
            review_row("H1", "APPROVE"),
            review_row("H3", "DENY", "CO-50"),
            review_row("V1", "DENY", "CO-50"),
            review_row("H2", "DENY", "OA-23", examiner="bob.king"),
        ],
    )
    outcome = review(lake, reference, second, day=1, run="review-2")
    assert [(row["case_id"], row["outcome"], row["errors"]) for row in outcome.table()] == [
        ("D1", "REJECTED", ["case_id: the case's latest decision is DENIED, not PENDED"]),
        ("O1", "REJECTED", ["case_id: the case's latest decision is VOIDED, not PENDED"]),
        ("H1", "REJECTED", ["case_id: the case's latest decision is VOIDED, not PENDED"]),
        ("H3", "REJECTED", ["case_id: the case's latest decision is APPROVED, not PENDED"]),
        ("V1", "REJECTED", ["case_id: the case's latest decision is VOIDED, not PENDED"]),
        ("H2", "DENIED", []),
    ]
    assert query(
        lake,
        "SELECT case_id, status, decision_source, decided_by FROM case_decisions "
        "WHERE case_id IN ('D1', 'O1', 'H1', 'H2', 'H3') ORDER BY case_id",
    ) == [
        ("D1", "DENIED", "ADJUDICATION", None),
        ("H1", "VOIDED", "CORRECTION", "R1"),
        ("H2", "DENIED", "REVIEW", "bob.king"),
        ("H3", "APPROVED", "REVIEW", "ann.lee"),
        ("O1", "VOIDED", "CORRECTION", "V1"),
    ]


def test_an_approve_that_cannot_be_priced_any_more_is_rejected_and_stays_pended(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch("a.csv", first_batch())
    run_fixture_inbox()
    # Today's reference: M001's span ended on 2024-06-15 (H1 served 06-01 is covered,
    # H2 served 07-01 is not); J1100 left the fee schedule (H3).
    today = load_reference(
        write_reference(
            tmp_path / "today",
            members=MEMBERS_CSV.replace("M001,2024-01-01,,", "M001,2024-01-01,2024-06-15,"),
            fee_schedule="\n".join(
                line for line in FEE_SCHEDULE_CSV.splitlines() if not line.startswith("J1100")
            )
            + "\n",
        )
    )
    path = write_review(
        tmp_path / "r.csv",
        [review_row("H2"), review_row("H3"), review_row("H1"), review_row("A1", "DENY", "CO-1")],
    )
    outcome = run_review(review_context(lake, today, 0, "review-1"), path)
    no_span = "case_id: cannot be priced: no coverage span of the member covers the service date"
    no_fee = "case_id: cannot be priced: the procedure code is not on the fee schedule"
    assert [
        (row["case_id"], row["outcome"], row["paid_cents"], row["errors"])
        for row in outcome.table()
    ] == [
        ("H2", "REJECTED", None, [no_span]),
        ("H3", "REJECTED", None, [no_fee]),
        # 300.00 allowed; M001 has used 80.00: 300.00 deductible.
        ("H1", "APPROVED", 0, []),
        ("A1", "REJECTED", None, ["case_id: the case's latest decision is APPROVED, not PENDED"]),
    ]
    assert query(
        lake, "SELECT case_id, status FROM case_decisions WHERE case_id LIKE 'H%' ORDER BY 1"
    ) == [("H1", "APPROVED"), ("H2", "PENDED"), ("H3", "PENDED")]
    assert query(lake, "SELECT row_number, errors FROM rejections ORDER BY 1") == [
        (1, [no_span]),
        (2, [no_fee]),
        (4, ["case_id: the case's latest decision is APPROVED, not PENDED"]),
    ]


def test_a_case_reviewed_then_voided_gives_its_deductible_back(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    a = write_batch("a.csv", first_batch())
    run_fixture_inbox()  # day 0
    # H1 approved at review: 300.00 allowed; used 80.00 (A1) -> 300.00 deductible.
    path = write_review(tmp_path / "r.csv", [review_row("H1", note="op report attached")])
    review(lake, reference, path, day=0, run="review-1")
    b = write_batch(
        "b.csv",
        [
            {**case_row("V1", service_date="2024-06-01", received_date="2024-06-10"),
             "claim_frequency": "8",
             "original_case_id": "H1"},
            # 200.00: with H1's 300.00 given back, M001 has used 80.00 -> 200.00
            # deductible, paid 0 (without the give-back: 120.00 deductible, 16.00
            # coinsurance, paid 64.00).
            case_row("N1", service_date="2024-09-01", received_date="2024-09-02", units="2",
                     billed_amount="200.00"),
        ],
        header=CASE_HEADER,
    )  # fmt: skip
    run_fixture_inbox()  # day 1
    r, a_id, b_id = batch_id(path), batch_id(a), batch_id(b)
    assert query(
        lake,
        "SELECT case_id, batch_id, status, deductible_cents, coinsurance_cents, paid_cents, "
        "decision_source, decided_by, note FROM decision_history "
        "WHERE case_id IN ('H1', 'N1') ORDER BY case_id, decided_at",
    ) == [
        ("H1", a_id, "PENDED", 0, 0, 0, "ADJUDICATION", None, None),
        ("H1", r, "APPROVED", 30_000, 0, 0, "REVIEW", "ann.lee", "op report attached"),
        ("H1", b_id, "VOIDED", 0, 0, 0, "CORRECTION", "V1", None),
        ("N1", b_id, "APPROVED", 20_000, 0, 0, "ADJUDICATION", None, None),
    ]


# The decision core alone (claimsflow/core/review.py): frames in, frames out.

OOP_MEMBERS = (
    "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent,oop_max\n"
    "M001,2024-01-01,,500.00,20,520.00\n"
)


def reviewed_cases(rows: list[dict[str, str]]) -> pl.DataFrame:
    """Received cases as the log holds them (typed), adjudicated by claims-standard v1."""
    return pl.DataFrame(
        [
            {
                "case_id": r["case_id"],
                "member_id": r["member_id"],
                "provider_id": r["provider_id"],
                "service_date": dt.date.fromisoformat(r["service_date"]),
                "received_date": dt.date.fromisoformat(r["received_date"]),
                "procedure_code": r["procedure_code"],
                "diagnosis_code": r["diagnosis_code"],
                "units": int(r["units"]),
                "billed_cents": int(r["billed_amount"].replace(".", "")),
                "prior_auth_id": None,
                "claim_frequency": "1",
                "original_case_id": None,
                "ruleset_name": "claims-standard",
                "ruleset_version": "1",
                "ruleset_parameters_hash": "h",
            }
            for r in rows
        ],
        schema=REVIEWED_CASE_SCHEMA,
    )


def review_frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    """A review file's text frame, as `reading` hands it over."""
    return with_row_identity(pl.DataFrame(rows, schema=dict.fromkeys(rows[0], pl.String)))


def test_in_memory_the_file_order_and_the_out_of_pocket_maximum_apply_at_review(
    tmp_path: Path,
) -> None:
    reference = load_reference(write_reference(tmp_path / "ref", members=OOP_MEMBERS))
    raw = review_frame([review_row("H2"), review_row("H1"), review_row("H3", "DENY", "CO-50")])
    validated = validate_review(raw, as_status_frame(["H1", "H2", "H3"], ["PENDED"] * 3))
    # Before the file, M001 has used and spent 80.00 in 2024 (maximum 520.00).
    accumulated = pl.DataFrame(
        {"member_id": ["M001"], "service_year": [2024], "used_cents": [8_000],
         "spent_cents": [8_000]},
        schema=ACCUMULATED_SCHEMA,
    )  # fmt: skip
    history = ReviewHistory(reviewed_cases(first_batch()), accumulated)
    decision = decide_review(validated, raw.height, reference, history)
    assert decision.rejections.is_empty()
    got = decision.decisions.select(
        "row_number", "case_id", "status", "reason_codes", "allowed_cents", "deductible_cents",
        "coinsurance_cents", "paid_cents", "deductible_used_before_cents",
        "oop_spent_before_cents", "decision_source", "decided_by", "ruleset_version",
    ).rows()  # fmt: skip
    assert got == [
        # H2: 400.00 allowed; deductible min(400, 500 - 80) = 400.00, coinsurance 0;
        # room 520 - 80 = 440.00: nothing capped; paid 0.
        (1, "H2", "APPROVED", [], 40_000, 40_000, 0, 0, 8_000, 8_000, "REVIEW", "ann.lee", "1"),
        # H1 (after H2 in file order): used 480.00, spent 480.00. Deductible
        # min(300, 500 - 480) = 20.00; coinsurance (280.00 x 20 %) = 56.00; room
        # 520 - 480 = 40.00: deductible 20.00, coinsurance min(56, 40 - 20) = 20.00;
        # paid 300 - 40 = 260.00.
        (2, "H1", "APPROVED", [], 30_000, 2_000, 2_000, 26_000, 48_000, 48_000, "REVIEW",
         "ann.lee", "1"),
        (3, "H3", "DENIED", ["CO-50"], 0, 0, 0, 0, None, None, "REVIEW", "ann.lee", "1"),
    ]  # fmt: skip


def test_in_memory_validation_judges_each_row_by_its_case_before_the_file() -> None:
    raw = review_frame(
        [
            review_row("H1"),
            review_row("H2", "DENY", "CO-50"),
            review_row("H1", "DENY", "CO-50"),
            review_row("A1"),
            review_row("GONE"),
        ]
    )
    statuses = as_status_frame(["H1", "H2", "A1"], ["PENDED", "PENDED", "APPROVED"])
    validated = validate_review(raw, statuses)
    assert validated.rows["case_id"].to_list() == ["H1", "H2"]
    assert validated.rejections.select("row_number", "errors").rows() == [
        (3, ["case_id: repeats the case_id of an earlier row of this file"]),
        (4, [not_pended("APPROVED")]),
        (5, ["case_id: no batch decided this case"]),
    ]


def test_the_run_report_shows_the_queue_as_it_stood_when_the_run_finished(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    # The run finishes on 2025-01-15: cases received 1, 8, 30, 31, 90 and 91 days before.
    received = ["2025-01-14", "2025-01-07", "2024-12-16", "2024-12-15", "2024-10-17",
                "2024-10-16"]  # fmt: skip
    write_batch(
        "q.csv",
        [
            case_row(f"Q{n}", service_date=day, received_date=day, procedure_code="J1100",
                     billed_amount="10000.01")
            for n, day in enumerate(received, start=1)
        ],
    )  # fmt: skip
    run_fixture_inbox()
    review(lake, reference, write_review(tmp_path / "r.csv", [review_row("Q6")]), 0, "rev")
    con = runlog.open_event_log(lake)
    try:
        [run_id] = runlog.runs(con)["run_id"].to_list()  # the review is not a run
        assert runlog.resolve_run(con, None) == run_id
        facts = runlog.facts_of(con, lake, run_id)
        after = runlog.queue_profile(con, dt.datetime(2025, 1, 16, tzinfo=dt.UTC))
    finally:
        con.close()
    assert facts.queue is not None
    assert (facts.queue.cases, facts.queue.oldest_days, facts.queue.buckets) == (
        6,
        91,
        (("0-7 days", 1), ("8-30 days", 2), ("31-90 days", 2), ("over 90 days", 1)),
    )
    # A day later, Q6 is approved and the others are 2, 9, 31, 32 and 91 days old.
    assert (after.cases, after.oldest_days, after.buckets) == (
        5,
        91,
        (("0-7 days", 1), ("8-30 days", 1), ("31-90 days", 2), ("over 90 days", 1)),
    )


def test_the_documented_queue_reviewer_and_correction_queries_answer_as_worked_out(
    write_batch: CsvWriter,
    run_fixture_inbox: InboxRunner,
    lake: Path,
    reference: Reference,
    tmp_path: Path,
) -> None:
    write_batch("a.csv", first_batch(), header=CASE_HEADER)
    run_fixture_inbox()  # day 0: A1 approved (80.00 deductible), H1-H3 pended
    path = write_review(
        tmp_path / "r.csv",
        [review_row("H1"), review_row("H3", "DENY", "CO-50", examiner="bob.king")],
    )
    review(lake, reference, path, day=0, run="review-1")  # H1: 300.00 deductible
    corrections_file = write_batch(
        "b.csv",
        [
            {**case_row("V1", service_date="2024-06-01", received_date="2024-06-10"),
             "claim_frequency": "8", "original_case_id": "H1"},
            {**case_row("R1", billed_amount="50.00"), "claim_frequency": "7",
             "original_case_id": "A1"},
        ],
        header=CASE_HEADER,
    )  # fmt: skip
    run_fixture_inbox()  # day 1
    b = batch_id(corrections_file)
    queries = documented_queries(
        "The work queue: PENDED cases waiting for an examiner",
        "Reviewer activity",
        "Corrections: voids and replacements",
    )
    answers = {
        section: [catalog.run_query(lake, sql).rows for sql in statements]
        for section, statements in queries.items()
    }
    queue = answers["The work queue: PENDED cases waiting for an examiner"]
    assert [row[0] for row in queue[0]] == ["H2"]
    assert queue[1][0][0] == 1 and str(queue[1][0][-1]) == "15000.00"
    activity = answers["Reviewer activity"]
    assert activity[0] == [
        ("ann.lee", dt.date(2025, 1, 15), 1, 1, 0, 100.0, 0),
        ("bob.king", dt.date(2025, 1, 15), 1, 0, 1, 0.0, 0),
    ]
    assert activity[2] == [("CO-50", 1)]
    corrections = answers["Corrections: voids and replacements"]
    assert corrections[0] == [(b, "b.csv", 1, 1)]
    assert [row[:3] + row[5:] for row in corrections[1]] == [
        # Both voided by b.csv at 2025-01-16 02:00:01: A1 (80.00 deductible) by its
        # replacement R1, H1 (approved at review: 300.00 deductible) by the void V1.
        ("A1", "R1", "replacement", "APPROVED", 0, 8_000),
        ("H1", "V1", "void", "APPROVED", 0, 30_000),
    ]
    # R1: 50.00 with A1's 80.00 given back -> all deductible, paid 0 as A1's was.
    assert corrections[2] == [("R1", "A1", "VOIDED", "APPROVED", 0)]
