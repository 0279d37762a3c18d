"""Spec §5: pricing of APPROVED cases, in integer cents, with the deductible
accumulated per member and calendar year.

The deductible is a running balance: each approved case takes what is left of
the year's deductible, in the order (service_date, received_date, case_id).
Within one coverage span the balance has a closed form (a clamped running sum),
so it is one sorted pass; only where a member changes spans within one year (a
different deductible) is the balance carried from span to span, one vectorised
step per span rank, never per case.

Only the approved cases' pricing columns are computed (on a narrow frame sorted
by an integer key); non-approved cases carry zero amounts.
"""

from __future__ import annotations

import polars as pl

from claimsflow.rules.context import MEMBER_KEY
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
_NEEDED = (
    "member_id",
    "service_date",
    "received_date",
    "case_id",
    "billed_cents",
    "fee_allowed_cents",
    "units",
    "annual_deductible_cents",
    "coinsurance_percent",
)


def price(decisions: pl.DataFrame, deductible_used: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add the amount columns to adjudicated cases.

    `deductible_used` (member_id, service_year, used_cents) is the deductible
    already applied by APPROVED cases of earlier batches.
    """
    approved = (
        decisions.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_at"),
            *_NEEDED,
            _member_key(decisions),
            pl.col("status") == APPROVED,
        )
        .filter(pl.col("status"))
        .select(
            "_at",
            MEMBER_KEY,
            "member_id",
            "service_date",
            "received_date",
            "case_id",
            pl.min_horizontal(
                pl.col("billed_cents"), pl.col("fee_allowed_cents") * pl.col("units")
            ).alias("allowed_cents"),
            pl.col("service_date").dt.year().cast(pl.Int32).alias("service_year"),
            "annual_deductible_cents",
            "coinsurance_percent",
        )
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
    # Back in the cases' order: the approved cases' amounts, in order, are read by each
    # approved case's rank among them (a sort and gathers: scatters are slower).
    in_order = priced.select("_at", *PRICE_COLUMNS).sort("_at")
    approved_case = pl.col("status") == APPROVED
    # Both branches of `when` are evaluated: the rank of a case before the first
    # approved one is clipped to 0 (and unused), and none approved reads nothing.
    rank = (approved_case.cast(pl.Int64).cum_sum() - 1).clip(lower_bound=0)
    read = {
        name: pl.when(approved_case).then(
            pl.lit(in_order[name]).gather(rank) if in_order.height else pl.lit(None, pl.Int64)
        )
        for name in PRICE_COLUMNS
    }
    amounts = decisions.select(
        # Non-approved cases carry 0 (an amount: null counts as 0 too) or null (the
        # balance before).
        (amount if name == "deductible_used_before_cents" else amount.fill_null(0)).alias(name)
        for name, amount in read.items()
    )
    return decisions.drop(MEMBER_KEY, strict=False).hstack(amounts.get_columns())


def _member_key(decisions: pl.DataFrame) -> pl.Expr:
    """An integer per member: the context's, or (without one for every approved
    case) a dense number per distinct member_id."""
    if MEMBER_KEY in decisions.columns:
        unkeyed = (pl.col("status") == APPROVED) & pl.col(MEMBER_KEY).is_null()
        if not decisions.select(unkeyed.any()).item():
            return pl.col(MEMBER_KEY).cast(pl.Int64).alias(MEMBER_KEY)
    return pl.col("member_id").rank("dense").cast(pl.Int64).alias(MEMBER_KEY)


def _apply_deductible(approved: pl.DataFrame, used: pl.DataFrame | None) -> pl.DataFrame:
    ordered = _in_deductible_order(approved)
    if used is not None and used.height:
        prior = used.select(
            "member_id", pl.col("service_year").cast(pl.Int32), pl.col("used_cents").cast(pl.Int64)
        )
        before_batch = ordered.select(MEMBER_YEAR).join(
            prior, on=MEMBER_YEAR, how="left", maintain_order="left"
        )["used_cents"]
        ordered = ordered.with_columns(before_batch.fill_null(0).alias("_used_before_batch"))
    else:
        ordered = ordered.with_columns(pl.lit(0, dtype=pl.Int64).alias("_used_before_batch"))
    d = pl.col("annual_deductible_cents")
    new_year = (pl.col(MEMBER_KEY) != pl.col(MEMBER_KEY).shift(1)) | (
        pl.col("service_year") != pl.col("service_year").shift(1)
    )
    # A span run: the cases of one member-year with the same deductible in a row.
    new_span = (new_year | (d != d.shift(1))).fill_null(True)
    allowed_sum = pl.col("allowed_cents").cum_sum()
    staged = ordered.with_columns(
        new_year.fill_null(True).alias("_new_year"),
        new_span.alias("_new_span"),
        (allowed_sum - pl.col("allowed_cents")).alias("_sum_before"),
    ).with_columns(
        pl.col("_new_span").cum_sum().alias("_span"),
        # Running sum of allowed within the span run (sums restart at its first case).
        (
            pl.col("_sum_before")
            - pl.when(pl.col("_new_span")).then(pl.col("_sum_before")).forward_fill()
        ).alias("_allowed_before"),
    )
    u0 = pl.col("_span_start")
    balance = pl.max_horizontal(u0, pl.min_horizontal(d, u0 + pl.col("_allowed_before")))
    return (
        staged.with_columns(_span_start_balances(staged).alias("_span_start"))
        .with_columns(balance.alias("deductible_used_before_cents"))
        .with_columns(
            pl.min_horizontal(
                pl.col("allowed_cents"),
                pl.max_horizontal(pl.lit(0), d - pl.col("deductible_used_before_cents")),
            ).alias("deductible_cents")
        )
    )


def _in_deductible_order(approved: pl.DataFrame) -> pl.DataFrame:
    """Approved cases sorted by member, year and DEDUCTIBLE_ORDER.

    Member, service date and received date are packed into one Int64 when the
    dates span less than 2^15 days (always, in practice): one integer and one
    text sort key instead of four.
    """
    if approved.height == 0:
        return approved
    bounds = approved.select(
        pl.min_horizontal(pl.col("service_date").min(), pl.col("received_date").min())
        .cast(pl.Int64)
        .alias("lo"),
        pl.max_horizontal(pl.col("service_date").max(), pl.col("received_date").max())
        .cast(pl.Int64)
        .alias("hi"),
    ).row(0)
    lo, hi = int(bounds[0]), int(bounds[1])
    if hi - lo >= 1 << 15:  # pragma: no cover - dates 90 years apart in one batch
        return approved.sort(MEMBER_KEY, *DEDUCTIBLE_ORDER)
    day = 1 << 15
    packed = (
        pl.col(MEMBER_KEY) * (day * day)
        + (pl.col("service_date").cast(pl.Int64) - lo) * day
        + (pl.col("received_date").cast(pl.Int64) - lo)
    )
    if approved.select(pl.col("case_id").is_sorted()).item():
        # Cases usually arrive in case_id order: a stable sort on the integer alone
        # then keeps case_id order within ties, without comparing text.
        return approved.sort(packed, maintain_order=True)
    return approved.sort(packed, "case_id")


def _span_start_balances(staged: pl.DataFrame) -> pl.Series:
    """Deductible used at the start of each case's span run (per case).

    The first run of a member-year starts from what earlier batches used; each
    later run (another span, another deductible) starts from the balance the run
    before it ended with. Only member-years with more than one run need the
    carry: the others' runs start from what earlier batches used.
    """
    first_run = pl.col("_new_year")
    span_rank = pl.col("_span") - pl.when(first_run).then(pl.col("_span")).forward_fill() + 1
    ranked = staged.select(
        "_span",
        "_used_before_batch",
        first_run.cum_sum().alias("_year"),
        span_rank.alias("_rank"),
    )
    carried_years = ranked.filter(pl.col("_rank") > 1)["_year"].unique()
    if carried_years.len() == 0:
        return ranked["_used_before_batch"]
    carried = pl.col("_year").is_in(carried_years.implode())
    spans = (
        staged.with_columns(ranked["_rank"], ranked["_year"])
        .filter(carried)
        .group_by("_span", maintain_order=True)
        .agg(
            pl.col("_year").first(),
            pl.col("_rank").first(),
            pl.col("annual_deductible_cents").first().alias("_d"),
            pl.col("allowed_cents").sum().alias("_total"),
            pl.col("_used_before_batch").first().alias("_u0"),
        )
    )
    starts = spans.filter(pl.col("_rank") == 1).select("_year", pl.col("_u0").alias("_start"))
    result: list[pl.DataFrame] = []
    last_rank = int(spans.select(pl.col("_rank").max()).item())
    for rank in range(1, last_rank + 1):  # one step per span rank, not per case
        current = spans.filter(pl.col("_rank") == rank).join(starts, on="_year")
        result.append(current.select("_span", pl.col("_start").alias("_span_start")))
        starts = current.select(
            "_year",
            pl.max_horizontal(
                pl.col("_start"),
                pl.min_horizontal(pl.col("_d"), pl.col("_start") + pl.col("_total")),
            ).alias("_start"),
        )
    computed = pl.concat(result)
    # Span runs are numbered 1..n in order: a dense array, read back by run number.
    runs = int(ranked.select(pl.col("_span").max()).item() or 0) + 1
    by_span = pl.repeat(None, runs, dtype=pl.Int64, eager=True).scatter(
        computed["_span"], computed["_span_start"]
    )
    return ranked.select(
        pl.coalesce(pl.lit(by_span).gather(pl.col("_span")), pl.col("_used_before_batch"))
    ).to_series()
