"""The DuckDB twin (claimsflow/sql_twin.py) against the pipeline: a differential check.

The twin is the rule set written again as one SQL query, independently of the
Polars code. On a generated batch (every rule outcome, duplicates, members who
change deductible within a year, a few percent invalid rows) it must reject the
same rows and give every case the same status, reason codes and amounts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from claimsflow.generate import case_frame, reference_frames
from claimsflow.history import History
from claimsflow.pipeline import decide_batch
from claimsflow.reading import with_row_identity
from claimsflow.reference import Reference, load_reference
from claimsflow.rules.ruleset import RuleSet, load_ruleset
from claimsflow.settings import RULES_DIR
from claimsflow.sql_twin import REJECTED, TWIN_COLUMNS, twin_decisions

CASES = 4_000
AMOUNTS = ["allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, Reference]:
    folder = tmp_path_factory.mktemp("twin")
    members, providers, fees = reference_frames(200, 40, seed=21)
    for name, frame in (
        ("members.csv", members),
        ("providers.csv", providers),
        ("fee_schedule.csv", fees),
    ):
        frame.write_csv(folder / name)
    cases = case_frame(CASES, members, providers, fees, seed=21)
    batch = folder / "batch.parquet"
    cases.write_parquet(batch)
    return batch, cases, load_reference(folder)


def _pipeline_rows(cases: pl.DataFrame, reference: Reference, ruleset: RuleSet) -> pl.DataFrame:
    decision = decide_batch(with_row_identity(cases), reference, ruleset, History.empty())
    decided = decision.decisions.select(TWIN_COLUMNS)
    rejected = decision.rejections.select(
        "row_number",
        "case_id",
        pl.lit(REJECTED).alias("status"),
        pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"),
        *[pl.lit(0, dtype=pl.Int64).alias(c) for c in AMOUNTS],
    )
    return pl.concat([decided, rejected]).sort("row_number")


def _rulesets() -> list[RuleSet]:
    v1 = load_ruleset(RULES_DIR / "claims-standard-v1.yaml")
    v2 = load_ruleset(RULES_DIR / "claims-standard-v2.yaml")
    # Without the member rules, unknown and uncovered members are approved: pricing
    # then meets missing deductibles and coinsurance (nulls) and members without a key.
    lenient = dataclasses.replace(
        v1, rules=tuple(r for r in v1.rules if not r.id.startswith("member-"))
    )
    return [v1, v2, dataclasses.replace(v1, hit_policy="first"), lenient]


@pytest.mark.parametrize(
    "ruleset", _rulesets(), ids=["v1", "v2", "v1-first-hit", "v1-without-member-rules"]
)
def test_twin_decides_like_the_pipeline(
    generated: tuple[Path, pl.DataFrame, Reference], ruleset: RuleSet
) -> None:
    batch, cases, reference = generated
    expected = _pipeline_rows(cases, reference, ruleset)
    twin = twin_decisions(batch, reference, ruleset)
    assert twin.columns == list(TWIN_COLUMNS)
    assert twin.height == CASES
    # Every outcome is there, so the comparison covers every path of both.
    assert set(expected["status"]) == {"APPROVED", "PENDED", "DENIED", REJECTED}
    assert expected.filter(pl.col("deductible_cents") > 0).height > 0
    mismatched = expected.join(twin, on="row_number", suffix="_twin").filter(
        pl.any_horizontal(
            pl.col(c).ne_missing(pl.col(f"{c}_twin"))
            for c in ("case_id", "status", "reason_codes", *AMOUNTS)
        )
    )
    assert mismatched.height == 0, mismatched.head(5)
    assert twin["row_number"].to_list() == expected["row_number"].to_list()


def test_twin_reads_a_batch_without_prior_auth_column(
    tmp_path: Path, generated: tuple[Path, pl.DataFrame, Reference]
) -> None:
    _, cases, reference = generated
    batch = tmp_path / "no-prior-auth.parquet"
    narrow = cases.head(300).drop("prior_auth_id")
    narrow.write_parquet(batch)
    ruleset = _rulesets()[0]
    expected = _pipeline_rows(narrow, reference, ruleset)
    twin = twin_decisions(batch, reference, ruleset)
    assert twin.select("row_number", "status", "reason_codes", *AMOUNTS).equals(
        expected.select("row_number", "status", "reason_codes", *AMOUNTS)
    )
