"""`adjudicate generate`'s data: deterministic, of the size asked, and covering
every outcome of the standard rule set (so benchmarks and demos exercise every
rule, the duplicate and deductible paths, and rejection)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from claimsflow.generate import case_frame, reference_frames, write_sample
from claimsflow.history import History
from claimsflow.pipeline import BatchDecision, decide_batch
from claimsflow.reading import read_batch_bytes
from claimsflow.reference import Reference, load_reference
from claimsflow.rules.ruleset import RuleSet

SAMPLE_CASES = 20_000


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a", cases=3_000, batches=3, seed=11)
    second = write_sample(tmp_path / "b", cases=3_000, batches=3, seed=11)
    assert [p.name for p in first] == [p.name for p in second]
    assert {p.suffix for p in first} == {".csv", ".jsonl", ".parquet"}
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_another_seed_gives_other_cases(tmp_path: Path) -> None:
    write_sample(tmp_path / "a", cases=500, batches=1, seed=1)
    write_sample(tmp_path / "b", cases=500, batches=1, seed=2)
    batch = Path("inbox") / "batch-0001.csv"
    assert (tmp_path / "a" / batch).read_bytes() != (tmp_path / "b" / batch).read_bytes()


@pytest.mark.parametrize("cases", [1, 7, 1_000])
def test_exactly_the_cases_asked_for(cases: int) -> None:
    members, providers, fees = reference_frames(20, 10, seed=3)
    frame = case_frame(cases, members, providers, fees, seed=3)
    assert frame.height == cases
    assert frame.columns[0] == "case_id"
    assert frame.schema == pl.Schema(dict.fromkeys(frame.columns, pl.String()))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Reference]:
    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder, cases=SAMPLE_CASES, batches=1, seed=7)
    return folder / "inbox" / "batch-0001.csv", load_reference(folder / "reference")


@pytest.fixture(scope="module")
def decided(
    sample: tuple[Path, Reference], ruleset_v1: RuleSet
) -> tuple[BatchDecision, BatchDecision]:
    """The sample decided twice: raw built by reading, and by validation."""
    path, reference = sample
    data = path.read_bytes()
    with_raw = decide_batch(read_batch_bytes(data, "csv"), reference, ruleset_v1, History.empty())
    lazy_raw = decide_batch(
        read_batch_bytes(data, "csv", with_raw=False), reference, ruleset_v1, History.empty()
    )
    return with_raw, lazy_raw


def test_every_reason_code_of_v1_occurs(
    decided: tuple[BatchDecision, BatchDecision], ruleset_v1: RuleSet
) -> None:
    decision, _ = decided
    seen = set(decision.decisions["reason_codes"].explode().drop_nulls().to_list())
    assert {r.reason_code for r in ruleset_v1.rules} <= seen
    assert set(decision.decisions["status"]) == {"APPROVED", "PENDED", "DENIED"}


def test_skew_duplicates_and_invalid_rows(decided: tuple[BatchDecision, BatchDecision]) -> None:
    decision, _ = decided
    assert decision.rows_in == SAMPLE_CASES
    # A few percent of rows are invalid: malformed cells and repeated case ids.
    assert 0.01 < decision.rejections.height / SAMPLE_CASES < 0.06
    errors = decision.rejections["errors"].explode()
    assert errors.str.contains("repeats the case_id").any()
    # A few members see most cases (power law), not a uniform spread.
    per_member = decision.cases["member_id"].value_counts(sort=True)["count"]
    top = per_member.head(max(1, per_member.len() // 10)).sum()
    assert top > 0.3 * decision.cases.height
    # Some member changes deductible within a year (the carried balance path).
    approved = decision.decisions.filter(pl.col("status") == "APPROVED")
    spans = approved.group_by("member_id", pl.col("service_date").dt.year()).agg(
        pl.col("annual_deductible_cents").n_unique()
    )
    assert (spans["annual_deductible_cents"] > 1).any()


def test_raw_built_by_validation_equals_raw_built_by_reading(
    decided: tuple[BatchDecision, BatchDecision],
) -> None:
    with_raw, lazy_raw = decided
    assert lazy_raw.rejections.equals(with_raw.rejections)
    assert lazy_raw.decisions.equals(with_raw.decisions)
    assert lazy_raw.rule_hits.equals(with_raw.rule_hits)
