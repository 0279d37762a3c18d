"""`adjudicate generate`'s data: deterministic, of the size asked, and covering
every outcome of the standard rule set (so benchmarks and demos exercise every
rule, the duplicate and deductible paths, and rejection)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.decide import BatchDecision
from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.ingest.reading import read_batch_bytes
from claimsflow.pipeline.batch import decide_batch
from claimsflow.tools.generate import case_frame, reference_frames, write_sample

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
    with_raw = decide_batch(read_batch_bytes(data, "csv"), reference, ruleset_v1, MemoryHistory())
    lazy_raw = decide_batch(
        read_batch_bytes(data, "csv", with_raw=False), reference, ruleset_v1, MemoryHistory()
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
    # (A decision records the span's terms; the member and date are the case's.)
    approved = decision.decisions.filter(pl.col("status") == "APPROVED").join(
        decision.cases.select("case_id", "member_id", "service_date"), on="case_id"
    )
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


def test_out_of_pocket_maxima_bite(
    sample: tuple[Path, Reference], decided: tuple[BatchDecision, BatchDecision]
) -> None:
    _, reference = sample
    maxima = reference.members["oop_max_cents"]
    # Some spans have no maximum, some a maximum of 0, most one a busy member reaches.
    assert 0 < maxima.null_count() < maxima.len()
    assert (maxima == 0).any()
    approved = decided[0].decisions.filter(
        (pl.col("status") == "APPROVED") & pl.col("oop_max_cents").is_not_null()
    )
    spent_after = (
        pl.col("oop_spent_before_cents") + pl.col("deductible_cents") + pl.col("coinsurance_cents")
    )
    # The cap is reached by a case that pays part of its share...
    reached = (pl.col("oop_spent_before_cents") < pl.col("oop_max_cents")) & (
        spent_after == pl.col("oop_max_cents")
    )
    assert approved.filter(reached & (pl.col("oop_max_cents") > 0)).height > 0
    # ... and later cases of those member-years pay no deductible or coinsurance.
    past = approved.filter(pl.col("oop_spent_before_cents") >= pl.col("oop_max_cents"))
    assert past.height > 0
    assert past.select((pl.col("deductible_cents") + pl.col("coinsurance_cents")).max()).item() == 0


@pytest.fixture(scope="module")
def sample_batches(
    tmp_path_factory: pytest.TempPathFactory, ruleset_v1: RuleSet
) -> tuple[list[pl.DataFrame], list[BatchDecision]]:
    """A three-batch sample decided batch after batch (each seeing the ones before)."""
    folder = tmp_path_factory.mktemp("lifecycle-sample")
    files = write_sample(folder, cases=9_000, batches=3, seed=7)
    reference = load_reference(folder / "reference")
    history = MemoryHistory()
    raws, decided = [], []
    for path in (p for p in files if p.parent.name == "inbox"):
        raw = read_batch_bytes(path.read_bytes(), path.suffix.removeprefix("."))
        decision = decide_batch(raw, reference, ruleset_v1, history)
        history = history.advanced_by(decision.cases, decision.decisions)
        raws.append(raw)
        decided.append(decision)
    return raws, decided


def test_later_batches_correct_cases_of_earlier_ones(
    sample_batches: tuple[list[pl.DataFrame], list[BatchDecision]],
) -> None:
    raws, decided = sample_batches
    assert set(raws[0]["claim_frequency"]) == {"1"}
    for number in (1, 2):
        raw, decision = raws[number], decided[number]
        corrections = raw.filter(pl.col("claim_frequency") != "1")
        # ~1% of the rows (3,000 a batch), replacements and voids.
        assert 10 <= corrections.height <= 60
        assert set(corrections["claim_frequency"]) == {"7", "8"}
        # Each names a case of an earlier batch, never one of its own.
        earlier = pl.concat(r.select("case_id") for r in raws[:number])
        assert corrections["original_case_id"].is_in(earlier["case_id"].implode()).all()
        # Most void their original; a few are rejected (§9: a rejected original).
        voided = decision.decisions.head(decision.voided_originals)
        assert voided.height > 0.8 * corrections.height
        assert set(voided["status"]) == {"VOIDED"}
        assert set(voided["decision_source"]) == {"CORRECTION"}
    errors = pl.concat(d.rejections for d in decided[1:])["errors"].explode()
    assert errors.str.starts_with("original_case_id: ").any()


def test_some_replacements_keep_their_originals_key_and_are_no_duplicates(
    sample_batches: tuple[list[pl.DataFrame], list[BatchDecision]],
) -> None:
    _, decided = sample_batches
    key = ["member_id", "provider_id", "service_date", "procedure_code"]
    cases = pl.concat(d.cases for d in decided)
    replacements = cases.filter(pl.col("claim_frequency") == "7")
    same_key = replacements.join(
        cases.select(pl.col("case_id").alias("original_case_id"), *key),
        on=["original_case_id", *key],
    )
    other_key = replacements.join(same_key, on="case_id", how="anti")
    assert same_key.height > 0 and other_key.height > 0
    # Replacements with their original's key are decided without CO-18 (§9: the
    # original's key stops counting); some of them are approved.
    own = pl.concat(d.decisions.slice(d.voided_originals) for d in decided)
    of_same_key = own.join(same_key.select("case_id"), on="case_id")
    assert not of_same_key["reason_codes"].list.contains("CO-18").any()
    assert (of_same_key["status"] == "APPROVED").any()


def test_amounts_between_5000_and_10000_change_under_the_candidate(
    sample: tuple[Path, Reference], decided: tuple[BatchDecision, BatchDecision]
) -> None:
    """Rule set v2 pends above 5,000.00: the sample has approved claims it would pend."""
    decision, _ = decided
    mid = decision.decisions.join(decision.cases, on="case_id").filter(
        pl.col("billed_cents").is_between(500_001, 1_000_000)
    )
    assert mid.height > 0.005 * SAMPLE_CASES
    assert (mid["status"] == "APPROVED").sum() > 0
