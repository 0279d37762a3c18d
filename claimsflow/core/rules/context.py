"""The adjudication context: each valid case joined with its reference data.

Rule conditions are written against these columns (docs/rules.md lists them).
Everything is a join or a column expression: no per-row Python.
"""

from __future__ import annotations

import polars as pl

from claimsflow.core.reference import Reference

#: The columns of a received case, as kept in the event log's payloads.
CASE_PAYLOAD_COLUMNS: tuple[str, ...] = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_cents",
    "prior_auth_id",
    "claim_frequency",
    "original_case_id",
)

#: Columns a rule condition may name, with their types (for validation and docs).
CONTEXT_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "member_id": pl.String(),
    "provider_id": pl.String(),
    "service_date": pl.Date(),
    "received_date": pl.Date(),
    "procedure_code": pl.String(),
    "diagnosis_code": pl.String(),
    "units": pl.Int64(),
    "billed_cents": pl.Int64(),
    "prior_auth_id": pl.String(),
    "prior_auth_missing": pl.Boolean(),
    "member_known": pl.Boolean(),
    "covered": pl.Boolean(),
    "first_coverage_start": pl.Date(),
    "annual_deductible_cents": pl.Int64(),
    "coinsurance_percent": pl.Int64(),
    "oop_max_cents": pl.Int64(),
    "provider_known": pl.Boolean(),
    "provider_status": pl.String(),
    "in_network": pl.Boolean(),
    "days_to_receive": pl.Int64(),
    "fee_known": pl.Boolean(),
    "fee_allowed_cents": pl.Int64(),
    "prior_auth_required": pl.Boolean(),
    "max_units": pl.Int64(),
    "claim_frequency": pl.String(),
    "original_case_id": pl.String(),
}
#: The received case's columns with their types (the event log's `cases` table).
CASE_PAYLOAD_SCHEMA: dict[str, pl.DataType] = {c: CONTEXT_SCHEMA[c] for c in CASE_PAYLOAD_COLUMNS}


#: The pricing terms of the covering span (spec §2, §5): null when no span covers.
SPAN_TERMS = ("annual_deductible_cents", "coinsurance_percent", "oop_max_cents")

#: An integer per member of members.csv (null for an unknown member): pricing sorts
#: and groups cases by member on it instead of hashing and comparing text again.
MEMBER_KEY = "_member_key"


def adjudication_context(cases: pl.DataFrame, reference: Reference) -> pl.DataFrame:
    """Join typed cases (from validation) with members, providers and fees.

    The result keeps the cases' order and has every column of CONTEXT_SCHEMA,
    then MEMBER_KEY. Each lookup is a join of the key column alone, and its
    columns are placed beside the cases': the case columns are never copied.
    """
    cases = _with_claim_frequency(cases)
    members = reference.members
    per_member = (
        members.group_by("member_id", maintain_order=True)
        .agg(pl.col("coverage_start").min().alias("first_coverage_start"))
        .with_row_index(MEMBER_KEY)
    )
    member = _lookup(cases, "member_id", per_member)
    span = _covering_span(
        cases["service_date"],
        next(s for s in member if s.name == MEMBER_KEY),
        members.join(per_member, on="member_id", how="left"),
    )
    provider = _lookup(
        cases,
        "provider_id",
        reference.providers.select(
            "provider_id", "provider_status", "in_network", pl.lit(True).alias("provider_known")
        ),
    )
    fee = _lookup(
        cases,
        "procedure_code",
        reference.fee_schedule.select(
            "procedure_code",
            "fee_allowed_cents",
            "prior_auth_required",
            "max_units",
            pl.lit(True).alias("fee_known"),
        ),
    )
    covered = pl.col("coverage_start").is_not_null() & (
        pl.col("coverage_end").is_null() | (pl.col("service_date") <= pl.col("coverage_end"))
    )
    joined = cases.hstack([*span.get_columns(), *member, *provider, *fee])
    return joined.with_columns(
        covered.alias("covered"),
        pl.col("prior_auth_id").is_null().alias("prior_auth_missing"),
        pl.col("first_coverage_start").is_not_null().alias("member_known"),
        pl.col("provider_known").fill_null(False),
        pl.col("fee_known").fill_null(False),
        (pl.col("received_date") - pl.col("service_date"))
        .dt.total_days()
        .cast(pl.Int64)
        .alias("days_to_receive"),
    ).select(
        *[name for name in cases.columns if name not in CONTEXT_SCHEMA and name != MEMBER_KEY],
        *[
            # Terms of an uncovered case are meaningless: keep them null, not stale.
            pl.when(pl.col("covered")).then(pl.col(name)).alias(name)
            if name in SPAN_TERMS
            else pl.col(name)
            for name in CONTEXT_SCHEMA
        ],
        MEMBER_KEY,
    )


def _with_claim_frequency(cases: pl.DataFrame) -> pl.DataFrame:
    """Cases typed elsewhere than by validation may lack the correction columns: an
    original claim (spec §1: missing claim_frequency is `1`)."""
    defaults = {"claim_frequency": pl.lit("1"), "original_case_id": pl.lit(None, pl.String)}
    return cases.with_columns(v.alias(c) for c, v in defaults.items() if c not in cases.columns)


def _covering_span(
    service_date: pl.Series, member_key: pl.Series, spans: pl.DataFrame
) -> pl.DataFrame:
    """Per case, the latest span of its member starting on or before its service date.

    Spans of one member never overlap (checked on load), so that span is the only
    one that can cover the date. Spans are sorted by (member, start); a member's
    spans are a run of that order, found by the member's integer key. Members have
    a few spans each: for each rank of span within a member, one vectorised step
    counts the cases' spans starting on or before their date (no sort of the cases,
    no join on text). Past UNROLLED_SPANS spans for one member, a binary search of
    packed (member, day) keys does it instead.
    """
    ordered = spans.select(
        pl.col(MEMBER_KEY).cast(pl.Int64),
        "coverage_start",
        "coverage_end",
        pl.col("deductible_cents").alias("annual_deductible_cents"),
        "coinsurance_percent",
        "oop_max_cents",
    ).sort(MEMBER_KEY, "coverage_start")
    if ordered.is_empty():
        # No span at all (a partition whose members are all unknown): nothing covers.
        return ordered.drop(MEMBER_KEY).clear(service_date.len())
    keys = pl.int_range(ordered.select(pl.col(MEMBER_KEY).max() + 1).item(), eager=True)
    first = ordered[MEMBER_KEY].search_sorted(keys, side="left").cast(pl.Int64)
    count = ordered[MEMBER_KEY].search_sorted(keys, side="right").cast(pl.Int64) - first
    most: int = count.to_frame().max().item()
    cases = pl.DataFrame({"member": member_key.cast(pl.Int64), "day": service_date})
    if most > UNROLLED_SPANS:
        position = _span_by_search(cases, ordered)
    else:
        starts, last = pl.lit(ordered["coverage_start"]), ordered.height - 1
        at = pl.lit(first).gather(pl.col("member"))
        spans_of_member = pl.lit(count).gather(pl.col("member"))
        # A member's spans in start order: those starting on or before the day are a
        # prefix of them, and the last of that prefix is the answer.
        started = pl.sum_horizontal(
            (
                (spans_of_member > rank)
                & (starts.gather((at + rank).clip(upper_bound=last)) <= pl.col("day"))
            ).cast(pl.Int64)
            for rank in range(most)
        )
        position = cases.select(pl.when(started > 0).then(at + started - 1)).to_series()
    return ordered.drop(MEMBER_KEY).select(pl.all().gather(position))


#: Spans of one member up to which `_covering_span` takes one step per span rank.
UNROLLED_SPANS = 8


def _span_by_search(cases: pl.DataFrame, ordered: pl.DataFrame) -> pl.Series:
    """Per case (member, day), the row of `ordered` (sorted by member, start) of the
    latest span of its member starting on or before the day, by binary search."""
    days = [d for d in (ordered["coverage_start"].min(), cases["day"].min()) if d is not None]
    base = pl.lit(min(days)).cast(pl.Date).cast(pl.Int64)

    def packed(member: pl.Expr, day: pl.Expr) -> pl.Expr:
        # Days from the earliest date fit in 32 bits, member numbers in 31.
        return member * (1 << 32) + (day.cast(pl.Int64) - base)

    span_key = ordered.select(packed(pl.col(MEMBER_KEY), pl.col("coverage_start"))).to_series()
    case_key = cases.select(packed(pl.col("member"), pl.col("day")).fill_null(-1)).to_series()
    at = span_key.search_sorted(case_key, side="right").cast(pl.Int64) - 1
    same_member = ordered[MEMBER_KEY].gather(at.clip(lower_bound=0)) == cases["member"]
    return pl.select(
        pl.when(pl.lit(at) >= 0).then(pl.when(pl.lit(same_member)).then(pl.lit(at)))
    ).to_series()


_KEY_HASH = "_key_hash"


def _lookup(cases: pl.DataFrame, key: str, table: pl.DataFrame) -> list[pl.Series]:
    """The columns of `table` (unique on `key`) for each case, in case order.

    The join is on a 64-bit hash of the key, then each match is confirmed by the key
    itself: a join on text builds and probes a table of strings, three times slower
    at 10M cases. A case whose key is absent but hashes like a reference key fails
    the confirmation and finds nothing, as it should; two reference keys hashing
    alike (never seen) fall back to the join on text.
    """
    hashed = table.with_columns(pl.col(key).hash().alias(_KEY_HASH))
    alike = cases.schema[key] == table.schema[key]  # the same type hashes alike
    if not alike or hashed[_KEY_HASH].n_unique() != hashed.height:  # pragma: no cover
        found = cases.select(key).join(table, on=key, how="left", maintain_order="left")
        if found.height != cases.height:
            raise ValueError(f"reference keys of {key} are not unique")
        return found.drop(key).get_columns()
    found = cases.select(pl.col(key).hash().alias(_KEY_HASH)).join(
        hashed, on=_KEY_HASH, how="left", maintain_order="left"
    )
    confirmed = pl.lit(found[key] == cases[key])
    return found.select(
        pl.when(confirmed).then(pl.col(name)).alias(name) for name in table.columns if name != key
    ).get_columns()
