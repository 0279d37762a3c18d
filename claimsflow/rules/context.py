"""The adjudication context: each valid case joined with its reference data.

Rule conditions are written against these columns (docs/rules.md lists them).
Everything is a join or a column expression: no per-row Python.
"""

from __future__ import annotations

import polars as pl

from claimsflow.reference import Reference

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
    "provider_known": pl.Boolean(),
    "provider_status": pl.String(),
    "in_network": pl.Boolean(),
    "days_to_receive": pl.Int64(),
    "fee_known": pl.Boolean(),
    "fee_allowed_cents": pl.Int64(),
    "prior_auth_required": pl.Boolean(),
    "max_units": pl.Int64(),
}


def adjudication_context(cases: pl.DataFrame, reference: Reference) -> pl.DataFrame:
    """Join typed cases (from validation) with members, providers and fees.

    The result keeps the cases' order and has every column of CONTEXT_SCHEMA.
    """
    members = reference.members
    first_start = members.group_by("member_id").agg(
        pl.col("coverage_start").min().alias("first_coverage_start")
    )
    # Spans of one member never overlap (checked on load), so the only span that
    # can cover a date is the latest one starting on or before it.
    spans = members.select(
        "member_id",
        pl.col("coverage_start"),
        pl.col("coverage_end"),
        pl.col("deductible_cents").alias("annual_deductible_cents"),
        "coinsurance_percent",
    ).sort("coverage_start")
    with_span = (
        cases.with_row_index("_order")
        .sort("service_date")
        .join_asof(
            spans,
            left_on="service_date",
            right_on="coverage_start",
            by="member_id",
            strategy="backward",
            coalesce=False,
            check_sortedness=False,
        )
        .sort("_order")
        .drop("_order")
    )
    covered = pl.col("coverage_start").is_not_null() & (
        pl.col("coverage_end").is_null() | (pl.col("service_date") <= pl.col("coverage_end"))
    )
    providers = reference.providers.select(
        "provider_id", "provider_status", "in_network", pl.lit(True).alias("provider_known")
    )
    fees = reference.fee_schedule.select(
        "procedure_code",
        "fee_allowed_cents",
        "prior_auth_required",
        "max_units",
        pl.lit(True).alias("fee_known"),
    )
    joined = (
        with_span.with_columns(covered.alias("covered"))
        .join(first_start, on="member_id", how="left", maintain_order="left")
        .join(providers, on="provider_id", how="left", maintain_order="left")
        .join(fees, on="procedure_code", how="left", maintain_order="left")
    )
    return joined.with_columns(
        pl.col("prior_auth_id").is_null().alias("prior_auth_missing"),
        pl.col("first_coverage_start").is_not_null().alias("member_known"),
        pl.col("provider_known").fill_null(False),
        pl.col("fee_known").fill_null(False),
        # Terms of an uncovered case are meaningless: keep them null, not stale.
        pl.when(pl.col("covered"))
        .then(pl.col("annual_deductible_cents"))
        .alias("annual_deductible_cents"),
        pl.when(pl.col("covered")).then(pl.col("coinsurance_percent")).alias("coinsurance_percent"),
        (pl.col("received_date") - pl.col("service_date"))
        .dt.total_days()
        .cast(pl.Int64)
        .alias("days_to_receive"),
    ).select(
        *[name for name in cases.columns if name not in CONTEXT_SCHEMA],
        *CONTEXT_SCHEMA,
    )
