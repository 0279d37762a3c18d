"""Helpers of the review tests (spec §8): review files and a review's context."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

from claimsflow.core.reference import Reference
from claimsflow.pipeline.review import ReviewContext
from tests.batch_helpers import case_row, csv_bytes

REVIEW_HEADER: tuple[str, ...] = ("case_id", "decision", "reason_code", "examiner", "note")


def review_row(
    case_id: str,
    decision: str = "APPROVE",
    reason_code: str = "",
    examiner: str = "ann.lee",
    note: str = "",
    **extra: str,
) -> dict[str, str]:
    return {
        "case_id": case_id,
        "decision": decision,
        "reason_code": reason_code,
        "examiner": examiner,
        "note": note,
        **extra,
    }


def review_bytes(rows: Iterable[Mapping[str, str]], header: Iterable[str] | None = None) -> bytes:
    """A review file's bytes: REVIEW_HEADER (plus the rows' extra keys) by default."""
    materialised = list(rows)
    columns = list(header) if header is not None else list(REVIEW_HEADER)
    if header is None:
        for row in materialised:
            columns += [key for key in row if key not in columns]
    return csv_bytes(materialised, columns)


def write_review(
    path: Path, rows: Iterable[Mapping[str, str]], header: Iterable[str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(review_bytes(rows, header))
    return path


def review_context(
    lake: Path, reference: Reference, day: int = 0, run_id: str = "review-1"
) -> ReviewContext:
    """A review recorded on day `day` of the fixture runs (conftest.make_run: run n
    records at 2025-01-15 02:00 + n days), at noon: after that day's run, before the
    next one. Its clock ticks one second per call."""
    ticks = itertools.count()
    start = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.UTC) + dt.timedelta(days=day)

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=next(ticks))

    return ReviewContext(lake, reference, run_id, clock)


def first_batch() -> list[dict[str, str]]:
    """A1 APPROVED (M001, 80.00 deductible); H1, H2 (M001) and H3 (M002) PENDED high-dollar
    cases (tests/test_review.py works them out)."""
    return [
        # APPROVED: 80.00, all deductible (M001 has used 80.00 of 500.00).
        case_row("A1"),
        # PENDED (billed 12,000.00): allowed would be 3 x 100.00 = 300.00.
        case_row(
            "H1",
            service_date="2024-06-01",
            received_date="2024-06-05",
            units="3",
            billed_amount="12000.00",
        ),
        # PENDED (billed 15,000.00): allowed would be 4 x 100.00 = 400.00.
        case_row(
            "H2",
            service_date="2024-07-01",
            received_date="2024-07-02",
            units="4",
            billed_amount="15000.00",
        ),
        # PENDED (billed 11,000.00): M002, 10 x 12.50.
        case_row(
            "H3",
            member_id="M002",
            service_date="2024-04-01",
            received_date="2024-04-02",
            procedure_code="J1100",
            units="10",
            billed_amount="11000.00",
        ),
    ]


ANALYST_QUERIES = Path(__file__).resolve().parents[1] / "docs" / "analyst-queries.md"


def documented_queries(*sections: str) -> dict[str, list[str]]:
    """The SQL statements of the given sections of docs/analyst-queries.md."""
    text = ANALYST_QUERIES.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    for section in sections:
        body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        blocks = [b.split("```", 1)[0] for b in body.split("```sql")[1:]]
        found[section] = [s.strip() for b in blocks for s in b.split(";") if s.strip()]
    return found
