"""Evaluating a compiled rule set over the adjudication context (spec §4).

Every rule is evaluated for every case at once (one boolean column per rule).
The hits of a case are packed into one integer (bit i = rule i fired); a batch
has few distinct hit patterns, so the hit policy (status, reason codes, rule
hits) is worked out once per pattern and joined back on that integer.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from claimsflow.core.repeats import hash_repeated
from claimsflow.core.rules.ruleset import Rule, RuleSet
from claimsflow.vocabulary import APPROVED, DENIED, PENDED

STATUS_OF_OUTCOME = {"DENY": DENIED, "PEND": PENDED}
CODE_SEPARATOR = ","
#: Hit patterns are packed into an Int64: at most this many rules per rule set.
MAX_PACKED_RULES = 62
_MASK = "_hits"


@dataclass(frozen=True)
class Adjudication:
    """Decisions (the context plus `status`, `reason_codes`) and the rule hits."""

    decisions: pl.DataFrame
    rule_hits: pl.DataFrame


def hit_column(rule: Rule) -> str:
    return f"hit:{rule.id}"


def adjudicate(
    context: pl.DataFrame, ruleset: RuleSet, prior_claim_keys: pl.DataFrame | None = None
) -> Adjudication:
    """Apply `ruleset` to every case of `context`.

    `prior_claim_keys` holds the duplicate keys of cases decided APPROVED or
    PENDED in earlier batches (spec §4, rule 9).
    """
    plain = [r for r in ruleset.rules if r.kind == "expression"]
    duplicates = [r for r in ruleset.rules if r.kind == "duplicate"]
    hits = context.lazy().select(
        (r.condition.fill_null(False) if r.condition is not None else pl.lit(False)).alias(
            hit_column(r)
        )
        for r in plain
    )
    if duplicates:
        # A duplicate is judged on its earlier twins' *base* outcome: the decision
        # of every rule but the duplicate rules themselves.
        base_status, _ = hit_policy(ruleset, [r for r in ruleset.rules if r.kind != "duplicate"])
        hits = hits.with_columns((base_status != DENIED).alias("_base_live"))
    fired = hits.collect()
    for rule in duplicates:
        fired = fired.with_columns(
            duplicate_flags(rule, prior_claim_keys, context, fired["_base_live"]).alias(
                hit_column(rule)
            )
        )
    rules = list(ruleset.rules)
    if len(rules) > MAX_PACKED_RULES:  # pragma: no cover - no real rule set is this long
        status, reason_codes = hit_policy(ruleset, rules)
        decided = context.hstack(
            fired.select(status.alias("status"), reason_codes.alias("reason_codes"))
        )
        long = fired.select(pl.int_range(pl.len()).alias("_case"), *[hit_column(r) for r in rules])
        return Adjudication(
            decisions=decided, rule_hits=_rule_hits_from_columns(context, long, ruleset)
        )
    mask = fired.select(_packed(rules).alias(_MASK))
    patterns = _patterns(mask[_MASK].unique().sort().to_list(), ruleset)
    outcome = mask.join(patterns, on=_MASK, how="left", maintain_order="left")
    return Adjudication(
        decisions=context.hstack(outcome.select("status", "reason_codes").get_columns()),
        rule_hits=_rule_hits(context["case_id"], outcome, ruleset),
    )


def _packed(rules: list[Rule]) -> pl.Expr:
    """The hit pattern as an integer: bit i set when rule i fired.

    Added one rule at a time: `sum_horizontal` over the rules evaluated every rule's
    term at once, an Int64 column each (1.3 GiB for 13 rules at 10M cases, the
    batch's peak, issue 15); the chain holds the running sum and one term.
    """
    # Zeros as long as the frame (a bare literal would be one row).
    packed = pl.int_range(pl.len(), dtype=pl.Int64) * 0
    for i, rule in enumerate(rules):
        packed = packed + pl.col(hit_column(rule)).cast(pl.Int64) * (1 << i)
    return packed


def _patterns(masks: list[int], ruleset: RuleSet) -> pl.DataFrame:
    """Status, reason codes and fired rule numbers of each distinct hit pattern.

    Python here runs once per pattern (a handful per batch), never per case.
    """
    rules = list(ruleset.rules)
    statuses: list[str] = []
    codes: list[list[str]] = []
    fired: list[list[int]] = []
    for mask in masks:
        hit = [i for i in range(len(rules)) if mask >> i & 1]
        if ruleset.hit_policy == "first":
            counted = hit[:1]
            status = STATUS_OF_OUTCOME[rules[hit[0]].outcome] if hit else APPROVED
        else:
            counted = hit
            outcomes = {rules[i].outcome for i in hit}
            status = DENIED if "DENY" in outcomes else PENDED if "PEND" in outcomes else APPROVED
        statuses.append(status)
        codes.append([rules[i].reason_code for i in counted])
        fired.append([i + 1 for i in hit])
    return pl.DataFrame(
        {_MASK: masks, "status": statuses, "reason_codes": codes, "_fired": fired},
        schema={
            _MASK: pl.Int64,
            "status": pl.String,
            "reason_codes": pl.List(pl.String),
            "_fired": pl.List(pl.Int64),
        },
    )


def _rule_meta(ruleset: RuleSet) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rule_order": list(range(1, len(ruleset.rules) + 1)),
            "rule_id": [r.id for r in ruleset.rules],
            "rule_description": [r.description for r in ruleset.rules],
            "outcome": [r.outcome for r in ruleset.rules],
            "reason_code": [r.reason_code for r in ruleset.rules],
        },
        schema_overrides={"rule_order": pl.Int64},
    )


def _rule_hits(case_ids: pl.Series, outcome: pl.DataFrame, ruleset: RuleSet) -> pl.DataFrame:
    """One row per (case, rule that fired), in case order then rule order."""
    return (
        pl.DataFrame([case_ids, outcome[_MASK], outcome["_fired"]])
        .filter(pl.col(_MASK) != 0)
        .select("case_id", pl.col("_fired").alias("rule_order"))
        .explode("rule_order")  # keeps case order, then the list's (rule) order
        .join(_rule_meta(ruleset), on="rule_order", how="left", maintain_order="left")
        .select("case_id", "rule_id", "rule_order", "rule_description", "outcome", "reason_code")
    )


def _rule_hits_from_columns(  # pragma: no cover - see MAX_PACKED_RULES
    context: pl.DataFrame, hits: pl.DataFrame, ruleset: RuleSet
) -> pl.DataFrame:
    meta = _rule_meta(ruleset).with_columns(
        pl.Series("_hit", [hit_column(r) for r in ruleset.rules])
    )
    long = (
        hits.with_columns(context["case_id"])
        .unpivot(index=["_case", "case_id"], variable_name="_hit", value_name="_fired")
        .filter(pl.col("_fired"))
    )
    return (
        long.join(meta, on="_hit")
        .sort("_case", "rule_order")
        .select("case_id", "rule_id", "rule_order", "rule_description", "outcome", "reason_code")
    )


def hit_policy(ruleset: RuleSet, rules: list[Rule]) -> tuple[pl.Expr, pl.Expr]:
    """Status and reason-code expressions over the hit columns of `rules`."""
    if not rules:
        return pl.lit(APPROVED), pl.lit([], dtype=pl.List(pl.String))
    # Joined text then split: an order of magnitude faster than a list of
    # nullable literals (reason codes never contain the separator; see ruleset.py).
    joined = pl.concat_str(
        [pl.when(pl.col(hit_column(r))).then(pl.lit(r.reason_code)) for r in rules],
        separator=CODE_SEPARATOR,
        ignore_nulls=True,
    )
    codes = (
        pl.when(joined == "")
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(joined.str.split(CODE_SEPARATOR))
    )
    if ruleset.hit_policy == "first":
        status = pl.coalesce(
            *(
                pl.when(pl.col(hit_column(r))).then(pl.lit(STATUS_OF_OUTCOME[r.outcome]))
                for r in rules
            ),
            pl.lit(APPROVED),
        )
        return status, codes.list.head(1)
    # collect: every hit counts; deny over pend over approve.
    any_deny = pl.any_horizontal(
        [pl.col(hit_column(r)) for r in rules if r.outcome == "DENY"] or [pl.lit(False)]
    )
    any_pend = pl.any_horizontal(
        [pl.col(hit_column(r)) for r in rules if r.outcome == "PEND"] or [pl.lit(False)]
    )
    status = (
        pl.when(any_deny)
        .then(pl.lit(DENIED))
        .when(any_pend)
        .then(pl.lit(PENDED))
        .otherwise(pl.lit(APPROVED))
    )
    return status, codes


def duplicate_flags(
    rule: Rule, prior_claim_keys: pl.DataFrame | None, context: pl.DataFrame, live: pl.Series
) -> pl.Series:
    """Rule kind `duplicate`: an earlier case of this batch with the same key whose
    base outcome is not DENIED (`live`), or the same key decided APPROVED/PENDED before.

    Only cases whose key occurs more than once in the batch can have an earlier
    twin: the ordered window runs over those few, not over the batch. They are
    found by a hash of the key (one integer per case, cheap to sort: `hash_repeated`);
    a hash collision only adds a case to the few, where the window compares real keys.
    """
    key = list(rule.key)
    order = list(rule.order_by)
    frame = context.select(*dict.fromkeys([*key, *order])).with_columns(live.alias("_live"))
    shared = hash_repeated(frame.select(pl.struct(key).hash()).to_series())
    twins = (
        frame.with_row_index("_at")
        .filter(shared)
        .sort(order, maintain_order=True)
        .select(
            "_at",
            (
                (pl.col("_live").cast(pl.Int64).cum_sum() - pl.col("_live").cast(pl.Int64)).over(
                    key
                )
                > 0
            ).alias("_fired"),
        )
    )
    flags = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True).scatter(
        twins["_at"], twins["_fired"]
    )
    if prior_claim_keys is None or prior_claim_keys.height == 0:
        return flags
    seen = prior_claim_keys.select(key).unique().with_columns(pl.lit(True).alias("_seen"))
    before = frame.select(key).join(seen, on=key, how="left", maintain_order="left")["_seen"]
    return flags | before.fill_null(False)
