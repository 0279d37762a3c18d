"""The `review-pended` flow wired in-process, without a server (as test_prefect_flows.py
does): the body runs with each task's function, Prefect's logger and artifacts recorded
here. Its deployment and form are checked against a served Prefect in
test_prefect_serve.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import State

import flows.review_pended as flow_module
import tasks.adjudication
import tasks.review
from claimsflow.lake import catalog
from claimsflow.pipeline.batch import batch_id_of_bytes
from claimsflow.pipeline.review import REVIEWS_FOLDER, ReviewOutcome, write_review_form
from flows.review_pended import (
    ReviewChoiceError,
    ReviewDecision,
    form_row,
    review_markdown,
    review_pended,
    review_state_message,
)
from tests.batch_helpers import CsvWriter, InboxRunner
from tests.review_helpers import first_batch, review_bytes, review_row, write_review


class Recorded:
    """Artifacts the flow created, by key."""

    def __init__(self) -> None:
        self.artifacts: dict[str, Any] = {}

    def table(self, *, table: Any, key: str, description: str) -> None:
        self.artifacts[key] = table

    def markdown(self, *, markdown: str, key: str, description: str) -> None:
        self.artifacts[key] = markdown


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """The flow's tasks as plain functions, a plain logger, artifacts recorded."""
    recorded = Recorded()
    logger = logging.getLogger("review-pended-test")
    for module in (flow_module, tasks.review, tasks.adjudication):
        monkeypatch.setattr(module, "get_run_logger", lambda: logger, raising=False)
    for name in ("load_reference_data", "take_writer_lock", "open_lake", "refresh_catalog"):
        monkeypatch.setattr(flow_module, name, getattr(tasks.adjudication, name).fn)
    for name in ("write_review_form", "record_review"):
        monkeypatch.setattr(flow_module, name, getattr(tasks.review, name).fn)
    monkeypatch.setattr(flow_module, "create_table_artifact", recorded.table)
    monkeypatch.setattr(flow_module, "create_markdown_artifact", recorded.markdown)
    monkeypatch.setattr(flow_module, "flow_run_id", lambda: "flow-run-1")
    return recorded


Run = Callable[..., State[ReviewOutcome]]


@pytest.fixture
def run_flow(
    write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path, reference_dir: Path
) -> Run:
    """The flow's body on a lake whose first batch pended H1, H2 and H3."""
    write_batch("a.csv", first_batch())
    run_fixture_inbox()

    def run(**parameters: Any) -> State[ReviewOutcome]:
        # The body returns the Completed state (flows.common.completed types it as its
        # data, for callers of the flow).
        state: Any = review_pended.fn(lake=str(lake), reference=str(reference_dir), **parameters)
        assert isinstance(state, State)
        return state

    return run


def test_the_form_decides_one_case_through_a_review_file_in_the_lake(
    in_process: Recorded, run_flow: Run, lake: Path
) -> None:
    state = run_flow(
        case_id="H3",
        decision=ReviewDecision.DENY,
        reason_code="CO-50",
        examiner="bob.king",
        note="not medically necessary",
    )
    # The form's row is a review file of its own in the lake's reviews/ area.
    expected = review_bytes(
        [review_row("H3", "DENY", "CO-50", "bob.king", "not medically necessary")]
    )
    batch_id = batch_id_of_bytes(expected)
    form = lake / REVIEWS_FOLDER / f"form-{batch_id[:16]}.csv"
    assert form.read_bytes() == expected
    assert state.is_completed()
    assert state.message == (
        f"Completed: review file {form.name} ({batch_id[:12]}): PROCESSED: 1 row(s): "
        "0 approved, 1 denied, 0 rejected"
    )
    assert in_process.artifacts["review-pended-rows"] == [
        {
            "row": 1,
            "case_id": "H3",
            "outcome": "DENIED",
            "examiner": "bob.king",
            "allowed_cents": 0,
            "deductible_cents": 0,
            "coinsurance_cents": 0,
            "paid_cents": 0,
            "errors": "",
        }
    ]
    assert catalog.run_query(
        lake,
        "SELECT case_id, batch_id, status, reason_codes, decision_source, decided_by, note "
        "FROM case_decisions WHERE case_id = 'H3'",
    ).rows == [
        ("H3", batch_id, "DENIED", ["CO-50"], "REVIEW", "bob.king", "not medically necessary")
    ]
    assert catalog.run_query(
        lake, "SELECT source, kind FROM batches WHERE kind = 'REVIEW'"
    ).rows == [(form.name, "REVIEW")]

    # The same form again is the same file: SKIPPED, nothing changes.
    again = run_flow(
        case_id="H3",
        decision=ReviewDecision.DENY,
        reason_code="CO-50",
        examiner="bob.king",
        note="not medically necessary",
    )
    assert again.message is not None and again.message.startswith(
        f"Completed: review file {form.name} ({batch_id[:12]}): SKIPPED"
    )
    assert sorted(p.name for p in (lake / REVIEWS_FOLDER).iterdir()) == [form.name]


def test_a_review_file_with_a_rejected_row_completes_with_warnings(
    in_process: Recorded, run_flow: Run, tmp_path: Path
) -> None:
    # H1: 300.00 allowed, M001 has used 80.00 (A1): 300.00 deductible, paid 0.
    path = write_review(tmp_path / "r.csv", [review_row("H1"), review_row("A1")])
    state = run_flow(review_file=str(path))
    assert state.is_completed()
    assert state.message is not None and state.message.startswith(
        "Completed with warnings: review file r.csv"
    )
    assert state.message.endswith("2 row(s): 1 approved, 0 denied, 1 rejected")
    rows = in_process.artifacts["review-pended-rows"]
    assert [(r["case_id"], r["outcome"], r["deductible_cents"], r["errors"]) for r in rows] == [
        ("H1", "APPROVED", 30_000, ""),
        ("A1", "REJECTED", None, "case_id: the case's latest decision is APPROVED, not PENDED"),
    ]
    summary = in_process.artifacts["review-pended-summary"]
    assert summary.startswith("## review-pended: completed with warnings")
    # The case decided, with what the plan pays, and the rejected row with its reason.
    assert "### Cases decided (1)\n\n| row | case_id | decision | examiner | paid |\n" in summary
    assert "| 1 | H1 | APPROVED | ann.lee | $0.00 |" in summary
    assert "### Rows rejected (1)" in summary
    assert "| 2 | A1 | case_id: the case's latest decision is APPROVED, not PENDED |" in summary


def test_the_form_or_a_file_not_both_nor_neither(run_flow: Run, tmp_path: Path) -> None:
    path = write_review(tmp_path / "r.csv", [review_row("H1")])
    for parameters, problem in [
        ({}, "not neither"),
        ({"review_file": str(path), "case_id": "H1"}, "not both"),
        ({"review_file": str(tmp_path / "missing.csv")}, "no such review file"),
    ]:
        with pytest.raises(ReviewChoiceError, match=problem):
            run_flow(**parameters)


def test_form_rows_and_messages() -> None:
    assert form_row("H1", ReviewDecision.APPROVE, "", "ann", "") == {
        "case_id": "H1",
        "decision": "APPROVE",
        "reason_code": "",
        "examiner": "ann",
        "note": "",
    }
    assert form_row("", None, "", "", "") == {}


def test_a_form_file_is_written_once_by_its_bytes(tmp_path: Path) -> None:
    row = review_row("H1", note="first")
    first = write_review_form(tmp_path, [row])
    again = write_review_form(tmp_path, [row])
    other = write_review_form(tmp_path, [review_row("H1", note="second")])
    assert first == again != other
    assert sorted(p.name for p in (tmp_path / REVIEWS_FOLDER).iterdir()) == sorted(
        [Path(str(first)).name, Path(str(other)).name]
    )


def test_state_message_and_markdown_of_a_rejected_file() -> None:
    from claimsflow.pipeline.batch import BatchOutcome

    outcome = ReviewOutcome(BatchOutcome("b" * 64, "x.csv", "REJECTED", reason="the file is empty"))
    message = review_state_message(outcome)
    assert message == (
        "Completed with warnings: review file x.csv (bbbbbbbbbbbb): REJECTED: the file is "
        "empty; nothing applied, the file is kept in quarantine"
    )
    text = review_markdown(outcome, seconds=0.5)
    assert "### Rows" not in text and "- batch id: `" + "b" * 64 + "`" in text
