"""The Prefect artifacts' tables and text (claimsflow/ops/artifacts.py), on small frames
written out here; the flows that publish them are tested in test_artifacts_served.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from claimsflow.ops import artifacts
from claimsflow.ops.runlog import BATCH_COLUMNS

AT = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC)


def _batches(*records: dict[str, Any]) -> pl.DataFrame:
    defaults: dict[str, Any] = dict.fromkeys(BATCH_COLUMNS)
    counts = ("rows_in", "rows_decided", "rows_rejected", "approved", "denied", "pended")
    defaults.update(dict.fromkeys((*counts, "paid_cents"), 0), processed_at=AT)
    return pl.DataFrame([{**defaults, **r} for r in records], schema=BATCH_COLUMNS)


def test_batch_outcomes_are_the_reports_table_with_the_paid_total_in_dollars() -> None:
    batches = _batches(
        {
            "source": "a.csv",
            "batch_id": "a" * 64,
            "status": "PROCESSED",
            "rows_in": 5,
            "rows_decided": 4,
            "rows_rejected": 1,
            "approved": 2,
            "denied": 1,
            "pended": 1,
            "paid_cents": 123_456_78,
        },
        {"source": "b.csv", "batch_id": "b" * 64, "status": "REJECTED", "reason": "empty file"},
        {"source": "c\n.csv", "batch_id": "a" * 64, "status": "SKIPPED"},
        {"source": "d.csv", "batch_id": "d" * 64, "status": "SKIPPED"},
    )
    seen = {"a" * 64: "seen before as a.csv (PROCESSED 2025-01-14 02:00 UTC)"}
    rows = artifacts.batch_outcomes(batches, seen)
    assert rows[0] == {
        "source": "a.csv",
        "batch_id": "aaaaaaaaaaaa",
        "status": "PROCESSED",
        "rows_in": 5,
        "decided": 4,
        "rejected": 1,
        "approved": 2,
        "denied": 1,
        "pended": 1,
        "paid": "$123,456.78",
        "reason": "",
    }
    assert [(r["source"], r["paid"], r["reason"]) for r in rows[1:]] == [
        ("b.csv", "$0.00", "empty file"),
        # A name with a newline is shown as its repr: it cannot forge a table row.
        ("'c\\n.csv'", "$0.00", "seen before as a.csv (PROCESSED 2025-01-14 02:00 UTC)"),
        ("d.csv", "$0.00", "seen before (same bytes)"),
    ]


def test_batch_run_markdown_has_the_table_the_reasons_the_total_and_the_links() -> None:
    outcomes = artifacts.batch_outcomes(
        _batches(
            {
                "source": "a|b.csv",
                "batch_id": "f" * 64,
                "status": "PROCESSED",
                "rows_in": 2,
                "rows_decided": 1,
                "rows_rejected": 1,
                "approved": 1,
                "paid_cents": 8_000,
            }
        )
    )
    errors = pl.DataFrame(
        {"column": ["units"], "problem": ["must be between 1 and 999"], "errors": [1]}
    )
    text = artifacts.batch_run_markdown(
        title="adjudicate-batch",
        attention=True,
        facts=["run: `r1`"],
        lines=["rows rejected: 1"],
        outcomes=outcomes,
        paid_cents=8_000,
        reasons=artifacts.rejection_reasons(errors),
        reports=[("Run report (HTML)", "http://127.0.0.1:4201/runs/run-r1.html")],
    )
    assert text == (
        "## adjudicate-batch: completed with warnings\n"
        "\n"
        "- run: `r1`\n"
        "- rows rejected: 1\n"
        "- paid by the plan: $80.00\n"
        "\n"
        "### Batches\n"
        "\n"
        "| source | batch_id | status | rows_in | decided | rejected | approved | denied "
        "| pended | paid | reason |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| a\\|b.csv | ffffffffffff | PROCESSED | 2 | 1 | 1 | 1 | 0 | 0 | $80.00 |  |\n"
        "\n"
        "### Rows rejected, by reason\n"
        "\n"
        "| column | problem | rows |\n"
        "|---|---|---|\n"
        "| units | must be between 1 and 999 | 1 |\n"
        "\n"
        "### Reports\n"
        "\n"
        "- [Run report (HTML)](http://127.0.0.1:4201/runs/run-r1.html)\n"
    )
    empty = artifacts.batch_run_markdown(
        title="adjudicate-batch", attention=False, facts=[], lines=[], outcomes=[]
    )
    assert "_No batch to process._" in empty
    assert empty.endswith("### Reports\n\n_No report files for this run._\n")
    assert "Rows rejected" not in empty and "paid by the plan" not in empty


def _review_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "row_number": [1, 2, 3],
            "case_id": ["H1", "A1", "H2"],
            "outcome": ["APPROVED", "REJECTED", "DENIED"],
            "examiner": ["ann.lee", "ann.lee", "bo"],
            "allowed_cents": [30_000, None, 0],
            "deductible_cents": [10_000, None, 0],
            "coinsurance_cents": [4_000, None, 0],
            "paid_cents": [16_000, None, 0],
            "errors": [[], ["case_id: not PENDED", "decision: missing"], []],
        }
    )


def test_review_tables_split_the_cases_decided_from_the_rows_rejected() -> None:
    rows = _review_rows()
    assert artifacts.review_decided(rows) == [
        {
            "row": 1,
            "case_id": "H1",
            "decision": "APPROVED",
            "examiner": "ann.lee",
            "paid": "$160.00",
        },
        {"row": 3, "case_id": "H2", "decision": "DENIED", "examiner": "bo", "paid": "$0.00"},
    ]
    assert artifacts.review_rejected(rows) == [
        {"row": 2, "case_id": "A1", "reasons": "case_id: not PENDED; decision: missing"}
    ]


def test_review_markdown_names_both_and_neither_for_an_empty_file() -> None:
    text = artifacts.review_markdown(
        lines=["review file r.csv (abc): PROCESSED: 3 row(s)"],
        batch_id="abc",
        attention=True,
        seconds=0.25,
        rows=_review_rows(),
    )
    assert text.startswith(
        "## review-pended: completed with warnings\n\n"
        "- review file r.csv (abc): PROCESSED: 3 row(s)\n- batch id: `abc`\n- duration: 0.2 s\n"
    )
    assert "### Cases decided (2)" in text
    assert "| 1 | H1 | APPROVED | ann.lee | $160.00 |" in text
    assert text.endswith(
        "### Rows rejected (1)\n\n| row | case_id | reasons |\n|---|---|---|\n"
        "| 2 | A1 | case_id: not PENDED; decision: missing |\n"
    )
    none = artifacts.review_markdown(
        lines=["skipped"], batch_id="abc", attention=False, seconds=0.0, rows=_review_rows().clear()
    )
    assert "Cases decided" not in none and "Rows rejected" not in none
