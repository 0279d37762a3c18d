"""One batch decided: spec §4 (rules), §5 (pricing) and §9 (corrections), as a pure
function of the batch's validated cases, the reference data, the rule set and what
earlier batches decided (`BatchHistory` frames). Nothing here reads or writes a file.

In batch order, spec §9 first: each valid correction row voids its original (a new
VOIDED decision of the original, `decision_source = CORRECTION`), which gives the
original's deductible and out-of-pocket back and releases its duplicate key; then
every row but the voids is adjudicated and priced (§4, §5); a void row is recorded
VOIDED under its own case_id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from claimsflow.core.history import BatchHistory
from claimsflow.core.pricing import AMOUNT_COLUMNS, PRICE_COLUMNS, price
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import adjudication_context
from claimsflow.core.rules.engine import adjudicate
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import CORRECTIONS, ValidatedBatch
from claimsflow.vocabulary import ADJUDICATION, CORRECTION, ROW_NUMBER, VOIDED
from schemas.case_batch import VOID

#: Adjudicates and prices cases given their history: `decide_cases` in one piece, or
#: the partitioned executor's split by member (claimsflow/pipeline/partitioning.py).
AdjudicateCases = Callable[[pl.DataFrame, "BatchHistory"], tuple[pl.DataFrame, pl.DataFrame]]

#: What a decision says (spec §7 `decisions`, less the batch's stamps), with the row's
#: row_number: the terms it was priced on, not the rest of the rule context.
DECISION_COLUMNS: tuple[str, ...] = (
    ROW_NUMBER,
    "case_id",
    "status",
    "reason_codes",
    *PRICE_COLUMNS,
    "oop_max_cents",
    "annual_deductible_cents",
    "coinsurance_percent",
    "fee_allowed_cents",
    "decision_source",
    "decided_by",
)


@dataclass(frozen=True)
class BatchDecision:
    """Everything one batch decided.

    cases: the valid rows, typed (what the log's `cases` table receives).
    decisions: one decision per valid row, in batch order, after the VOIDED decisions
        of the originals the batch's corrections void (spec §9); DECISION_COLUMNS.
    rule_hits, rejections: as their event tables.
    """

    rows_in: int
    cases: pl.DataFrame
    decisions: pl.DataFrame
    rule_hits: pl.DataFrame
    rejections: pl.DataFrame

    @property
    def voided_originals(self) -> int:
        """Earlier cases this batch's corrections voided."""
        return self.decisions.height - self.cases.height


def decide(
    validated: ValidatedBatch,
    rows_in: int,
    reference: Reference,
    ruleset: RuleSet,
    history: BatchHistory,
    *,
    adjudicate_cases: AdjudicateCases | None = None,
) -> BatchDecision:
    """Decide and price the valid cases of one batch (spec §4, §5, §9).

    `adjudicate_cases` decides the cases that are adjudicated (all but the voids),
    by default `decide_cases` in one piece.
    """
    cases = validated.cases
    corrections = corrections_in(cases)
    seen = history.after_voids(corrections["case_id"])
    voids = pl.col("claim_frequency") == VOID
    if adjudicate_cases is None:
        adjudicated, hits = decide_cases(cases.filter(~voids), reference, ruleset, seen)
    else:
        adjudicated, hits = adjudicate_cases(cases.filter(~voids), seen)
    decisions = pl.concat(
        [
            voided_originals(corrections),
            in_batch_order(
                adjudicated.select(DECISION_COLUMNS), void_decisions(cases.filter(voids))
            ),
        ],
        how="diagonal_relaxed",
    )
    return BatchDecision(
        rows_in=rows_in,
        cases=cases,
        decisions=decisions,
        rule_hits=hits,
        rejections=validated.rejections,
    )


def decide_cases(
    cases: pl.DataFrame, reference: Reference, ruleset: RuleSet, history: BatchHistory
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Priced decisions and rule hits of cases to adjudicate, given what earlier
    batches decided (after this batch's voids).

    All the state it reads is per member (coverage, duplicate keys, accumulators), so
    it gives the same answer on the whole batch as on any split of it by member with
    each part's own members' history (claimsflow/pipeline/partitioning.py).
    """
    context = adjudication_context(cases, reference)
    adjudication = adjudicate(context, ruleset, history.prior_claims)
    decisions = price(adjudication.decisions, history.accumulated)
    return decisions.with_columns(
        pl.lit(ADJUDICATION).alias("decision_source"),
        pl.lit(None, dtype=pl.String).alias("decided_by"),
    ), adjudication.rule_hits


def corrections_in(cases: pl.DataFrame) -> pl.DataFrame:
    """The batch's valid correction rows, in file order: the original each voids
    (`case_id`) and the row that voids it (`decided_by`)."""
    if "claim_frequency" not in cases.columns:
        return pl.DataFrame(schema={"case_id": pl.String(), "decided_by": pl.String()})
    return cases.filter(pl.col("claim_frequency").is_in(CORRECTIONS)).select(
        pl.col("original_case_id").alias("case_id"), pl.col("case_id").alias("decided_by")
    )


def voided_originals(corrections: pl.DataFrame) -> pl.DataFrame:
    """Spec §9: each corrected original's new decision, VOIDED by the correcting row."""
    return _voided(corrections.select("case_id", "decided_by"), CORRECTION)


def void_decisions(voids: pl.DataFrame) -> pl.DataFrame:
    """Spec §9: a void row is not adjudicated; it is recorded VOIDED under its own
    case_id, as the correction that it is (decided_by: itself)."""
    return _voided(
        voids.select(ROW_NUMBER, "case_id", pl.col("case_id").alias("decided_by")), CORRECTION
    )


def _voided(rows: pl.DataFrame, source: str) -> pl.DataFrame:
    return rows.with_columns(
        pl.lit(VOIDED).alias("status"),
        pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"),
        *(pl.lit(0, dtype=pl.Int64).alias(a) for a in AMOUNT_COLUMNS),
        pl.lit(source).alias("decision_source"),
    )


def in_batch_order(adjudicated: pl.DataFrame, voids: pl.DataFrame) -> pl.DataFrame:
    """The adjudicated rows' and the void rows' decisions, in the batch's row order
    (both carry the row's row_number). Both parts come in row order, so they are
    merged rather than sorted: a sort of the batch's wide decisions frame peaked at
    ~0.6 GiB per million cases above its input, a merge at about half (issue 16).
    `decide` merges only DECISION_COLUMNS: the merge of the rule context's 38 columns
    took ~1 s per million cases, most of the lifecycle's extra time."""
    if voids.is_empty():
        return adjudicated
    adjudicated = adjudicated.with_columns(
        pl.lit(None, dtype).alias(name)
        for name, dtype in voids.schema.items()
        if name not in adjudicated.columns
    )
    schema = adjudicated.schema
    voids = voids.select(
        pl.col(name).cast(dtype) if name in voids.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )
    if adjudicated[ROW_NUMBER].is_sorted() and voids[ROW_NUMBER].is_sorted():
        return adjudicated.merge_sorted(voids, key=ROW_NUMBER)
    return pl.concat([adjudicated, voids]).sort(ROW_NUMBER)
