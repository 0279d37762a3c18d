"""`adjudicate generate`'s sample review file (spec §8): it decides cases the sample's
batches pend, in the pattern its docstring gives, with one broken row, and applies
as such after a run of the sample."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.lake import catalog
from claimsflow.pipeline.batch import RunContext
from claimsflow.pipeline.review import ReviewContext, run_review
from claimsflow.tools.generate import SAMPLE_REVIEW, write_sample, write_sample_review
from tests.batch_helpers import run_inbox


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder, cases=3_000, batches=3, seed=7)
    assert write_sample_review(folder) == folder / SAMPLE_REVIEW
    return folder


def test_the_sample_review_decides_pended_cases_with_one_broken_row(
    sample: Path, tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    text = (sample / SAMPLE_REVIEW).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["case_id", "decision", "reason_code", "examiner", "note"]
    *reviewed, broken = rows
    # Two approvals then a denial, over and over; examiners in turn.
    assert [r["decision"] for r in reviewed] == [
        "DENY" if n % 3 == 2 else "APPROVE" for n in range(len(reviewed))
    ]
    assert [r["reason_code"] for r in reviewed] == [
        "CO-50" if n % 3 == 2 else "" for n in range(len(reviewed))
    ]
    assert [r["examiner"] for r in reviewed] == [
        ("ann.lee", "bob.king")[n % 2] for n in range(len(reviewed))
    ]
    assert (broken["decision"], broken["reason_code"]) == ("DENY", "")

    # Applied after a run of the sample: every reviewed row applied, the broken one
    # rejected; two thirds of the pended cases decided, the others still waiting.
    lake = tmp_path / "lake"
    reference = load_reference(sample / "reference")
    run_inbox(sample / "inbox", RunContext(lake, reference, ruleset_v1, "sample-run"))
    pended = catalog.run_query(
        lake, "SELECT case_id FROM case_decisions WHERE status = 'PENDED' ORDER BY case_id"
    ).rows
    assert len(reviewed) == -(-2 * len(pended) // 3) >= 2
    outcome = run_review(ReviewContext(lake, reference, "sample-review"), sample / SAMPLE_REVIEW)
    assert (outcome.batch.rows_in, outcome.batch.rows_decided, outcome.batch.rows_rejected) == (
        len(rows),
        len(reviewed),
        1,
    )
    assert outcome.rows["errors"].to_list()[-1] == ["reason_code: required when decision is DENY"]
    decided = catalog.run_query(
        lake,
        "SELECT case_id, status, decided_by FROM case_decisions "
        "WHERE decision_source = 'REVIEW' ORDER BY case_id",
    ).rows
    assert decided == sorted(
        (r["case_id"], "DENIED" if r["decision"] == "DENY" else "APPROVED", r["examiner"])
        for r in reviewed
    )
    waiting = catalog.run_query(lake, "SELECT count(*) FROM pended_queue").rows
    assert waiting == [(len(pended) - len(reviewed),)]


def test_the_same_sample_gives_the_same_review_bytes(sample: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_sample(again, cases=3_000, batches=3, seed=7)
    write_sample_review(again)
    assert (again / SAMPLE_REVIEW).read_bytes() == (sample / SAMPLE_REVIEW).read_bytes()
