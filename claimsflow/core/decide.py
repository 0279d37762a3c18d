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

from dataclasses import dataclass

import polars as pl

from claimsflow.core.history import BatchHistory
from claimsflow.core.pricing import AMOUNT_COLUMNS, PRICE_COLUMNS, PRICING_ORDER, price
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import MEMBER_KEY, adjudication_context
from claimsflow.core.rules.engine import adjudicate
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import CORRECTIONS, ValidatedBatch
from claimsflow.vocabulary import ADJUDICATION, CORRECTION, ROW_NUMBER, VOIDED
from schemas.case_batch import VOID

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
    decisions: one decision per valid row (DECISION_COLUMNS): the VOIDED decisions of
        the originals the batch's corrections void (spec §9), then the adjudicated rows
        in row order, then the void rows in row order.
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
) -> BatchDecision:
    """Decide and price the valid cases of one batch (spec §4, §5, §9).

    The decisions are the VOIDED originals (in the order of the rows correcting
    them), the adjudicated cases' in file order, then the void rows'. A case's place
    among its batch's decisions means nothing (`row_number` keeps the file's order):
    merging the void rows into their places cost seconds and gigabytes at 10M cases
    (issues 15, 16).
    """
    settled = settle_corrections(validated.cases, history)
    adjudicated, hits = decide_cases(settled.to_adjudicate, reference, ruleset, settled.history)
    decisions = pl.concat(
        [voided_originals(settled.corrections), adjudicated, void_decisions(settled.voids)],
        how="diagonal_relaxed",
    )
    return BatchDecision(
        rows_in=rows_in,
        cases=validated.cases,
        decisions=decisions,
        rule_hits=hits,
        rejections=validated.rejections,
    )


@dataclass(frozen=True)
class SettledCorrections:
    """Spec §9 settled on the whole batch, before any case is adjudicated.

    corrections: the originals the batch's correction rows void (`case_id`), each with
        the row voiding it (`decided_by`), in file order.
    history: what earlier batches decided, once those originals are VOIDED.
    to_adjudicate: every valid case but the void rows (adjudicated and priced, §4, §5).
    voids: the void rows (recorded VOIDED, never adjudicated).
    """

    corrections: pl.DataFrame
    history: BatchHistory
    to_adjudicate: pl.DataFrame
    voids: pl.DataFrame


def settle_corrections(cases: pl.DataFrame, history: BatchHistory) -> SettledCorrections:
    """Spec §9, first in batch order: each valid correction row voids its original,
    which gives the original's deductible and out-of-pocket back and releases its
    duplicate key, before the batch's cases are adjudicated (in one piece, or in
    parts by member: claimsflow/pipeline/partitioning.py)."""
    corrections = corrections_in(cases)
    to_adjudicate, voids = split_voids(cases)
    return SettledCorrections(
        corrections=corrections,
        history=history.after_voids(corrections["case_id"]),
        to_adjudicate=to_adjudicate,
        voids=voids,
    )


def decide_cases(
    cases: pl.DataFrame, reference: Reference, ruleset: RuleSet, history: BatchHistory
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Priced decisions (`DECISION_COLUMNS`) and rule hits of cases to adjudicate,
    given what earlier batches decided (after this batch's voids).

    All the state it reads is per member (coverage, duplicate keys, accumulators), so
    it gives the same answer on the whole batch as on any split of it by member with
    each part's own members' history (claimsflow/pipeline/partitioning.py).
    """
    context = adjudication_context(cases, reference)
    adjudication = adjudicate(context, ruleset, history.prior_claims)
    hits, adjudicated = adjudication.rule_hits, adjudication.decisions
    del context, adjudication
    # Pricing reads a few of the rule context's columns and a decision records a few
    # more: the rest is let go before pricing, the batch's peak (~0.4 GiB at 10M cases,
    # issue 15).
    adjudicated = adjudicated.select(c for c in adjudicated.columns if c in _PRICED_FROM)
    decisions = price(adjudicated, history.accumulated)
    # What a decision records, not the case columns pricing read: a partitioned run
    # writes each part's decisions, which the batch's tables are written from.
    return decisions.with_columns(
        pl.lit(ADJUDICATION).alias("decision_source"),
        pl.lit(None, dtype=pl.String).alias("decided_by"),
    ).select(DECISION_COLUMNS), hits


#: What pricing reads (`price`'s documented inputs, the member key the context built)
#: and what a decision records.
_PRICED_FROM = frozenset(
    (
        *DECISION_COLUMNS,
        MEMBER_KEY,
        "member_id",
        "service_date",
        "received_date",
        "billed_cents",
        "units",
        *PRICING_ORDER,
    )
)


def split_voids(cases: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Spec §9: the cases to adjudicate (all but the void rows) and the void rows.

    Validation places the void rows last (`validate_batch`): the cases to adjudicate
    are then a slice of the batch, which copies nothing; in any other order, a filter.
    """
    if "claim_frequency" not in cases.columns:  # typed elsewhere: originals only (§1)
        return cases, cases.clear()
    void = (cases.get_column("claim_frequency") == VOID).fill_null(False)
    count = int(void.sum())
    if count == 0:
        return cases, cases.clear()
    others = cases.height - count
    if void.slice(others).all():
        return cases.slice(0, others), cases.slice(others)
    return cases.filter(~void), cases.filter(void)


def corrections_in(cases: pl.DataFrame) -> pl.DataFrame:
    """The batch's valid correction rows, in file order: the original each voids
    (`case_id`) and the row that voids it (`decided_by`)."""
    if "claim_frequency" not in cases.columns:
        return pl.DataFrame(schema={"case_id": pl.String(), "decided_by": pl.String()})
    rows = cases.filter(pl.col("claim_frequency").is_in(CORRECTIONS))
    if ROW_NUMBER in rows.columns:  # the void rows come last (`split_voids`)
        rows = rows.sort(ROW_NUMBER)
    return rows.select(
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
