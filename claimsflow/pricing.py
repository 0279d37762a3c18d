"""Spec §5: pricing of APPROVED cases, in integer cents, with the deductible
accumulated per member and calendar year.

The deductible is a running balance: each approved case takes what is left of
the year's deductible, in the order (service_date, received_date, case_id).
Within one coverage span the balance has a closed form, so the running sum is a
window expression; only where a member changes spans within one year (a
different deductible) is the balance carried from span to span, one vectorised
step per span rank, never per case.
"""

from __future__ import annotations

import polars as pl

from claimsflow.rules.engine import APPROVED

PRICE_COLUMNS = (
    "allowed_cents",
    "deductible_cents",
    "coinsurance_cents",
    "paid_cents",
    "deductible_used_before_cents",
)
MEMBER_YEAR = ["member_id", "service_year"]
DEDUCTIBLE_ORDER = ["service_date", "received_date", "case_id"]


def price(decisions: pl.DataFrame, deductible_used: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add the amount columns to adjudicated cases.

    `deductible_used` (member_id, service_year, used_cents) is the deductible
    already applied by APPROVED cases of earlier batches.
    """
    ordered = decisions.with_row_index("_order")
    approved = ordered.filter(pl.col("status") == APPROVED).with_columns(
        pl.min_horizontal(
            pl.col("billed_cents"), pl.col("fee_allowed_cents") * pl.col("units")
        ).alias("allowed_cents"),
        pl.col("service_date").dt.year().cast(pl.Int32).alias("service_year"),
    )
    priced = (
        _apply_deductible(approved, deductible_used)
        .with_columns(
            (
                (
                    (pl.col("allowed_cents") - pl.col("deductible_cents"))
                    * pl.col("coinsurance_percent")
                    + 50
                )
                // 100
            ).alias("coinsurance_cents"),
        )
        .with_columns(
            (
                pl.col("allowed_cents") - pl.col("deductible_cents") - pl.col("coinsurance_cents")
            ).alias("paid_cents")
        )
    )
    amounts = priced.select("_order", *PRICE_COLUMNS)
    return (
        ordered.join(amounts, on="_order", how="left", maintain_order="left")
        .with_columns(pl.col(c).fill_null(0) for c in PRICE_COLUMNS[:4])
        .drop("_order")
    )


def _apply_deductible(approved: pl.DataFrame, used: pl.DataFrame | None) -> pl.DataFrame:
    prior = (
        used.select(
            "member_id", pl.col("service_year").cast(pl.Int32), pl.col("used_cents").cast(pl.Int64)
        )
        if used is not None
        else pl.DataFrame(
            schema={"member_id": pl.String, "service_year": pl.Int32, "used_cents": pl.Int64}
        )
    )
    d = pl.col("annual_deductible_cents")
    staged = (
        approved.join(prior, on=MEMBER_YEAR, how="left")
        .with_columns(pl.col("used_cents").fill_null(0).alias("_used_before_batch"))
        .drop("used_cents")
        .sort(*MEMBER_YEAR, *DEDUCTIBLE_ORDER)
        .with_columns(
            (d != d.shift(1))
            .fill_null(True)
            .cast(pl.Int32)
            .cum_sum()
            .over(MEMBER_YEAR)
            .alias("_span")
        )
        .with_columns(
            (pl.col("allowed_cents").cum_sum() - pl.col("allowed_cents"))
            .over([*MEMBER_YEAR, "_span"])
            .alias("_allowed_before"),
        )
    )
    span_start = _span_start_balances(staged)
    u0 = pl.col("_span_start")
    balance = pl.max_horizontal(u0, pl.min_horizontal(d, u0 + pl.col("_allowed_before")))
    return (
        staged.join(span_start, on=[*MEMBER_YEAR, "_span"], how="left")
        .with_columns(balance.alias("deductible_used_before_cents"))
        .with_columns(
            pl.min_horizontal(
                pl.col("allowed_cents"),
                pl.max_horizontal(pl.lit(0), d - pl.col("deductible_used_before_cents")),
            ).alias("deductible_cents")
        )
        .drop("_span", "_allowed_before", "_span_start", "_used_before_batch")
    )


def _span_start_balances(staged: pl.DataFrame) -> pl.DataFrame:
    """Deductible used at the start of each (member, year, span) run of cases."""
    spans = staged.group_by([*MEMBER_YEAR, "_span"]).agg(
        pl.col("annual_deductible_cents").first().alias("_d"),
        pl.col("allowed_cents").sum().alias("_total"),
        pl.col("_used_before_batch").first().alias("_u0"),
    )
    starts = spans.filter(pl.col("_span") == 1).select(*MEMBER_YEAR, pl.col("_u0").alias("_start"))
    result: list[pl.DataFrame] = []
    last_span = int(spans.select(pl.col("_span").max().fill_null(0)).item())
    for rank in range(1, last_span + 1):  # one step per span rank, not per case
        current = spans.filter(pl.col("_span") == rank).join(starts, on=MEMBER_YEAR)
        result.append(current.select(*MEMBER_YEAR, "_span", pl.col("_start").alias("_span_start")))
        starts = current.select(
            *MEMBER_YEAR,
            pl.max_horizontal(
                pl.col("_start"),
                pl.min_horizontal(pl.col("_d"), pl.col("_start") + pl.col("_total")),
            ).alias("_start"),
        )
    if not result:
        return pl.DataFrame(
            schema={
                "member_id": pl.String,
                "service_year": pl.Int32,
                "_span": pl.Int32,
                "_span_start": pl.Int64,
            }
        )
    return pl.concat(result)
