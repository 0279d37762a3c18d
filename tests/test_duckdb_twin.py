"""The DuckDB twin (bench/sql_twin.py) against the pipeline: a differential check.

The twin is the rule set written again as one SQL query, independently of the
Polars code. On a generated batch (every rule outcome, duplicates, members who
change deductible and out-of-pocket maximum within a year, maxima reached, a few
percent invalid rows) it must reject the same rows and give every case the same
status, reason codes, amounts and balances (deductible used and out-of-pocket spent
before it).

Across batches (`test_twin_decides_each_batch_of_a_lake_like_the_pipeline`): the
pipeline records generated batches with ~1% corrections, an examiner's review file
and a batch of §9's edge rows into a lake; before each batch, the twin is given the
log's raw decision and case events so far and must decide that batch exactly as the
pipeline then records it (the VOIDED originals included). The twin decides no review
file (it has none of §8's path): the reviews' decisions reach it through the log, so
what is compared is every batch after them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from bench.sql_twin import REJECTED, TWIN_COLUMNS, TwinHistory, twin_decisions
from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.ingest.reading import with_row_identity
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import RunContext, batch_id_of_bytes, decide_batch
from claimsflow.pipeline.review import ReviewContext, run_review
from claimsflow.pipeline.run import run_batches
from claimsflow.settings import RULES_DIR
from claimsflow.tools.generate import case_frame, reference_frames, with_corrections

CASES = 4_000
AMOUNTS = ["allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents"]
BALANCES = ["deductible_used_before_cents", "oop_spent_before_cents"]


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
    decision = decide_batch(with_row_identity(cases), reference, ruleset, MemoryHistory())
    decided = decision.decisions.select(*TWIN_COLUMNS, "oop_max_cents")
    rejected = decision.rejections.select(
        "row_number",
        "case_id",
        pl.lit(REJECTED).alias("status"),
        pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"),
        *[pl.lit(0, dtype=pl.Int64).alias(c) for c in AMOUNTS],
        *[pl.lit(None, dtype=pl.Int64).alias(c) for c in BALANCES],
        *[pl.lit(None, dtype=pl.String).alias(c) for c in ("decision_source", "decided_by")],
        pl.lit(None, dtype=pl.Int64).alias("oop_max_cents"),
    )
    return pl.concat([decided, rejected]).sort("row_number", maintain_order=True)


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
    # Out-of-pocket maxima bite: cases priced at or past their span's maximum.
    capped = expected.filter(
        (pl.col("status") == "APPROVED")
        & (pl.col("oop_spent_before_cents") >= pl.col("oop_max_cents"))
    )
    assert capped.height > 0
    mismatched = expected.join(twin, on="row_number", suffix="_twin").filter(
        pl.any_horizontal(
            pl.col(c).ne_missing(pl.col(f"{c}_twin"))
            for c in ("case_id", "status", "reason_codes", *AMOUNTS, *BALANCES)
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


COMPARED = ("case_id", "status", "reason_codes", *AMOUNTS, *BALANCES)
COMPARED_LOG = (*COMPARED, "decision_source", "decided_by")


def _recorded(lake: Path, batch_id: str) -> pl.DataFrame:
    """A batch's decisions as the log holds them (in the order recorded), then its
    rejected rows, in the twin's shape."""
    decisions = (
        eventlog.scan_table(lake, "decisions")
        .filter(pl.col("batch_id") == batch_id)
        .join(
            eventlog.scan_table(lake, "cases")
            .filter(pl.col("batch_id") == batch_id)
            .select("case_id", "row_number"),
            on="case_id",
            how="left",
            maintain_order="left",
        )
        .select(*TWIN_COLUMNS, "oop_max_cents")
        .collect()
    )
    rejected = (
        eventlog.scan_table(lake, "rejections")
        .filter(pl.col("batch_id") == batch_id)
        .select(
            "row_number",
            "case_id",
            pl.lit(REJECTED).alias("status"),
            pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"),
            *[pl.lit(0, dtype=pl.Int64).alias(c) for c in AMOUNTS],
            *[pl.lit(None, dtype=pl.Int64).alias(c) for c in BALANCES],
            *[pl.lit(None, dtype=pl.String).alias(c) for c in ("decision_source", "decided_by")],
            pl.lit(None, dtype=pl.Int64).alias("oop_max_cents"),
        )
        .collect()
    )
    originals = decisions.filter(pl.col("row_number").is_null())
    rows = pl.concat([decisions.filter(pl.col("row_number").is_not_null()), rejected])
    return pl.concat([originals, rows.sort("row_number")])


def _history(lake: Path) -> TwinHistory:
    return TwinHistory(
        decisions=eventlog.scan_table(lake, "decisions").collect(),
        cases=eventlog.scan_table(lake, "cases").collect(),
    )


def _edge_rows(lake: Path, generated: pl.DataFrame) -> pl.DataFrame:
    """A batch of §9's edge rows, against what the lake holds (each row is an earlier
    case's text again, under a new case_id unless said otherwise)."""
    latest = (
        eventlog.scan_table(lake, "decisions")
        .sort("decided_at")
        .group_by("case_id")
        .last()
        .join(eventlog.scan_table(lake, "cases").select("case_id", "row_number"), on="case_id")
        .sort("case_id")
        .collect()
    )

    def of_status(status: str, source: str | None = None) -> list[str]:
        rows = latest.filter(pl.col("status") == status)
        if source is not None:
            rows = rows.filter(pl.col("decision_source") == source)
        return rows.filter(pl.col("case_id").is_in(generated["case_id"].implode()))[
            "case_id"
        ].to_list()

    approved = of_status("APPROVED", "ADJUDICATION")
    reviewed = of_status("APPROVED", "REVIEW")
    voided = latest.filter(
        (pl.col("status") == "VOIDED") & (pl.col("decided_by") != pl.col("case_id"))
    )["case_id"].to_list()
    pended = of_status("PENDED")
    assert approved and reviewed and voided and pended
    plan = [
        # (new case_id or None = the earlier case's own id, frequency, original)
        ("E01", "8", voided[0]),  # original already VOIDED: rejected
        ("E02", "7", approved[0]),  # replaces an approved case: deductible given back
        ("E03", "7", approved[0]),  # the same original again: rejected
        ("E04", "5", ""),  # no such frequency: rejected
        ("E05", "8", ""),  # a void naming nothing: rejected
        ("E06", "7", "NO-SUCH-CASE"),  # names no decided case: rejected
        ("E07", "8", reviewed[0]),  # voids a case an examiner approved
        ("E08", "8", pended[0]),  # voids a case still pended
        (None, "1", ""),  # resubmission of an earlier case_id: rejected
        ("E09", "1", ""),  # the voided original's claim again: no duplicate any more
    ]
    # Whose claim each row carries (valid payloads: the rows' issues are their own).
    sources = [approved[2], *[approved[0]] * 2, *[approved[1]] * 3]
    sources += [reviewed[0], pended[0], approved[3], approved[0]]
    text = (
        generated.unique("case_id", keep="first", maintain_order=True)
        .join(pl.DataFrame({"case_id": sources, "_at": range(len(sources))}), on="case_id")
        .sort("_at")
    )
    assert text.height == len(plan)
    return text.drop("_at").with_columns(
        pl.Series("case_id", [new or src for (new, _, _), src in zip(plan, sources, strict=True)]),
        pl.Series("claim_frequency", [f for _, f, _ in plan]),
        pl.Series("original_case_id", [o for _, _, o in plan]),
    )


@pytest.mark.parametrize("ruleset", _rulesets()[:2], ids=["v1", "v2"])
def test_twin_decides_each_batch_of_a_lake_like_the_pipeline(
    tmp_path: Path, ruleset: RuleSet
) -> None:
    members, providers, fees = reference_frames(120, 30, seed=22)
    for name, frame in (
        ("members.csv", members),
        ("providers.csv", providers),
        ("fee_schedule.csv", fees),
    ):
        frame.write_csv(tmp_path / name)
    reference = load_reference(tmp_path)
    per_batch = 1_500
    # 3% corrections (the generator's default is 1%) for more of them in a small lake.
    generated = with_corrections(
        case_frame(3 * per_batch, members, providers, fees, seed=22), per_batch, 22, share=0.03
    )
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    run = RunContext(lake, reference, ruleset, "twin-test")
    compared: list[pl.DataFrame] = []

    def record(batch: pl.DataFrame, name: str) -> None:
        path = tmp_path / name
        batch.write_parquet(path)
        twin = twin_decisions(path, reference, ruleset, history=_history(lake))
        (outcome,) = run_batches(run, [path])
        assert outcome.status == "PROCESSED"
        recorded = _recorded(lake, batch_id_of_bytes(path.read_bytes()))
        assert twin.height == recorded.height == batch.height + outcome.voided_originals
        both = recorded.with_row_index("at").join(
            twin.with_row_index("at"), on="at", suffix="_twin"
        )
        mismatched = both.filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_twin")) for c in COMPARED_LOG)
        )
        assert mismatched.height == 0, mismatched.head(5)
        compared.append(recorded)

    record(generated.slice(0, per_batch), "b1.parquet")
    # An examiner decides the PENDED cases of the first batch: approves two in three.
    pended = (
        eventlog.scan_table(lake, "decisions")
        .filter(pl.col("status") == "PENDED")
        .select("case_id")
        .collect()["case_id"]
    )
    assert pended.len() >= 3
    review = tmp_path / "review.csv"
    pl.DataFrame(
        {
            "case_id": pended,
            "decision": ["DENY" if n % 3 == 2 else "APPROVE" for n in range(pended.len())],
            "reason_code": ["CO-50" if n % 3 == 2 else "" for n in range(pended.len())],
            "examiner": "ann.lee",
            "note": "",
        }
    ).head(pended.len() - 1).write_csv(review)  # one left pended
    reviewed = run_review(ReviewContext(lake, reference, "review"), review)
    assert reviewed.batch.status == "PROCESSED"
    record(generated.slice(per_batch, per_batch), "b2.parquet")
    record(generated.slice(2 * per_batch, per_batch), "b3.parquet")
    record(_edge_rows(lake, generated), "b4.parquet")

    log = pl.concat(compared)
    # What was compared covers the lifecycle: voided originals that had consumed
    # deductible (given back), void rows, replacements, §9's rejections...
    voided = log.filter((pl.col("status") == "VOIDED") & pl.col("row_number").is_null())
    assert voided.height > 20
    assert set(log.filter(pl.col("row_number").is_null())["decided_by"]) <= set(log["case_id"])
    consumed = (
        eventlog.scan_table(lake, "decisions")
        .filter((pl.col("status") == "APPROVED") & (pl.col("deductible_cents") > 0))
        .join(voided.lazy().select("case_id"), on="case_id", how="semi")
        .collect()
    )
    assert consumed.height > 5
    # ... cases priced against a member-year that earlier batches and the review had
    # spent to the maximum (capped across batches), and maxima reached within a batch.
    approved = log.filter((pl.col("status") == "APPROVED") & pl.col("oop_max_cents").is_not_null())
    spent_after = (
        pl.col("oop_spent_before_cents") + pl.col("deductible_cents") + pl.col("coinsurance_cents")
    )
    reached = (pl.col("oop_spent_before_cents") < pl.col("oop_max_cents")) & (
        spent_after == pl.col("oop_max_cents")
    )
    assert approved.filter(reached & (pl.col("oop_max_cents") > 0)).height > 0
    later = pl.concat(compared[1:])
    later_approved = later.filter(
        (pl.col("status") == "APPROVED") & pl.col("oop_max_cents").is_not_null()
    )
    assert (
        later_approved.filter(
            (pl.col("oop_spent_before_cents") >= pl.col("oop_max_cents"))
            & (pl.col("oop_max_cents") > 0)
        ).height
        > 0
    )
    edge = compared[-1].filter(pl.col("case_id").str.starts_with("E")).select("case_id", "status")
    assert edge.rows() == [
        ("E01", REJECTED),
        # Its original's key is released: no duplicate of it.
        ("E02", "APPROVED"),
        ("E03", REJECTED),
        ("E04", REJECTED),
        ("E05", REJECTED),
        ("E06", REJECTED),
        ("E07", "VOIDED"),
        ("E08", "VOIDED"),
        # The same claim again: a duplicate of E02 (approved, earlier in the batch).
        ("E09", "DENIED"),
    ]
