"""Spec §5: pricing of APPROVED cases in integer cents, with the deductible and the
out-of-pocket maximum accumulated per member and calendar year.

`price()` states §5 as four named expressions (allowed, deductible, coinsurance,
paid) over the two balances each approved case sees: `used`, the deductible already
applied in its member-year, and `spent`, the deductible + coinsurance already
applied. Those balances are running totals in the pricing order; the helpers below
work them out without a loop over cases:

- `_in_pricing_order`: the approved cases, narrow, sorted by member, year and the
  pricing order (one packed integer key in the usual case);
- `_balances_within_runs`: within a *span run* (cases of one member-year in a row
  whose spans have the same deductible and maximum) the balances have a closed form
  (a clamped running sum; the derivation is in its docstring);
- `_run_starts`: from one span run of a member-year to the next the (used, spent)
  pair is carried, one vectorised step per span rank, and only for the member-years
  that have more than one run (a member-year mostly has one);
- `_read_back`: the amounts and balances go back to the cases' rows (one scatter of
  row numbers, then one gather per column).

tests/pricing_oracle.py is §5 as a plain loop over cases; the property tests compare
the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from claimsflow.core.rules.context import MEMBER_KEY
from claimsflow.vocabulary import APPROVED

#: The order in which a member-year's approved cases use up its balances (§5 step 2).
#: Review decisions are priced in the order of their file: ("row_number",).
PRICING_ORDER: Final = ("service_date", "received_date", "case_id")
AMOUNT_COLUMNS: Final = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")
#: The balances each APPROVED case saw (null for the others): `used` and `spent`.
USED_BEFORE: Final = "deductible_used_before_cents"
SPENT_BEFORE: Final = "oop_spent_before_cents"
BALANCE_COLUMNS: Final = (USED_BEFORE, SPENT_BEFORE)
PRICE_COLUMNS: Final = (*AMOUNT_COLUMNS, *BALANCE_COLUMNS)
#: What earlier decisions applied per member-year (the `accumulated` argument).
ACCUMULATED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "member_id": pl.String(),
    "service_year": pl.Int32(),
    "used_cents": pl.Int64(),
    "spent_cents": pl.Int64(),
}
MEMBER_YEAR: Final = ["member_id", "service_year"]
#: Pricing's queries are running sums over ordered frames already in memory: the
#: in-memory engine does them in one pass, the streaming one (Polars' default) slower.
_ENGINE: Final = "in-memory"

# The quantities §5 names, as columns of the approved cases being priced.
BILLED = pl.col("billed_cents")
FEE_PER_UNIT = pl.col("fee_allowed_cents")
UNITS = pl.col("units")
ALLOWED = pl.col("allowed_cents")
DEDUCTIBLE = pl.col("deductible_cents")
COINSURANCE = pl.col("coinsurance_cents")
#: The covering span's terms: D, the member's coinsurance share, M (null: no maximum).
D = pl.col("annual_deductible_cents")
PERCENT = pl.col("coinsurance_percent")
M = pl.col("oop_max_cents")
USED = pl.col(USED_BEFORE)
SPENT = pl.col(SPENT_BEFORE)


def price(
    decisions: pl.DataFrame,
    accumulated: pl.DataFrame | None = None,
    *,
    order: Sequence[str] = PRICING_ORDER,
) -> pl.DataFrame:
    """`decisions` with the §5 amounts and the balances each APPROVED case saw.

    decisions: adjudicated cases (status, member_id, service_date, case_id,
        billed_cents, fee_allowed_cents, units, annual_deductible_cents,
        coinsurance_percent, oop_max_cents, and the `order` columns). Only APPROVED
        cases are priced; the others carry 0 in every amount and null balances. A
        missing oop_max_cents column means no span has a maximum.
    accumulated: member_id, service_year, used_cents, spent_cents: the deductible
        (used) and deductible + coinsurance (spent) that earlier decisions applied in
        each member-year (no row: nothing).
    order: the order in which a member-year's cases of this frame use its balances.

    Adds allowed_cents, deductible_cents, coinsurance_cents, paid_cents,
    deductible_used_before_cents and oop_spent_before_cents (replacing any present).
    """
    # §5 for one approved case, where USED and SPENT are the balances it sees.
    allowed = pl.min_horizontal(BILLED, FEE_PER_UNIT * UNITS)  # step 1
    deductible = capped(deductible_before_cap(ALLOWED, USED), room(SPENT))  # step 2, 4
    coinsurance = capped(  # step 3, 4
        coinsurance_before_cap(ALLOWED, deductible_before_cap(ALLOWED, USED)),
        room(SPENT) - DEDUCTIBLE,
    )
    paid = ALLOWED - DEDUCTIBLE - COINSURANCE  # step 5

    cases = decisions.drop(*PRICE_COLUMNS, strict=False).with_columns(
        allowed.alias("allowed_cents")
    )
    # Collected here, with only what goes back to the cases: the query (which holds
    # the sorted cases and their runs) is let go before the amounts are read back,
    # the batch's peak (0.2 GiB less at 10M cases, issue 15).
    priced = (
        _with_balances(_in_pricing_order(cases, order), accumulated, cases["member_id"])
        .with_columns(deductible.alias("deductible_cents"))
        .with_columns(coinsurance.alias("coinsurance_cents"))
        .select("_at", "deductible_cents", "coinsurance_cents", *BALANCE_COLUMNS)
        .collect(engine=_ENGINE)
    )
    # Allowed and paid need no balance: they are worked out in the cases' order.
    return (
        _read_back(cases, priced)
        .with_columns(paid.alias("paid_cents"))
        .select(pl.exclude(PRICE_COLUMNS), *PRICE_COLUMNS)
    )


def deductible_before_cap(allowed: pl.Expr, used: pl.Expr) -> pl.Expr:
    """§5 step 2: min(allowed, max(0, D - used))."""
    return pl.min_horizontal(allowed, (D - used).clip(lower_bound=0))


def coinsurance_before_cap(allowed: pl.Expr, deductible: pl.Expr) -> pl.Expr:
    """§5 step 3: the member's share of the rest, in integer arithmetic, half up."""
    return ((allowed - deductible) * PERCENT + 50) // 100


def room(spent: pl.Expr) -> pl.Expr:
    """§5 step 4: max(0, M - spent); null when the span has no maximum."""
    return (M - spent).clip(lower_bound=0)


def capped(amount: pl.Expr, limit: pl.Expr) -> pl.Expr:
    """§5 step 4: min(amount, limit). A null limit (no maximum) caps nothing:
    `min_horizontal` skips nulls."""
    return pl.min_horizontal(amount, limit)


# --- ordering and packing ------------------------------------------------------------


def _in_pricing_order(cases: pl.DataFrame, order: Sequence[str]) -> pl.DataFrame:
    """The approved cases, narrow, sorted by member, year and `order`.

    `_at` is a case's row in `cases`. Only the sort key is built for the approved
    rows; the columns pricing reads are gathered once, already in order. A case
    without span terms (approved under a rule set without the member rules) is
    priced with no deductible, no coinsurance and no maximum.
    """
    member = cases.select(_member_key(cases)).to_series()
    rows = cases.select((pl.col("status") == APPROVED).arg_true()).to_series()
    at = _sorted_rows(cases, member, rows, list(order)).cast(pl.Int64)
    # No oop_max_cents column: no span has a maximum.
    maximum = M.cast(pl.Int64).gather(at) if "oop_max_cents" in cases.columns else None
    return cases.select(
        pl.lit(at).alias("_at"),
        pl.lit(member).gather(at),
        pl.col("service_date").dt.year().cast(pl.Int32).gather(at).alias("service_year"),
        ALLOWED.cast(pl.Int64).gather(at),
        D.cast(pl.Int64).fill_null(0).gather(at),
        PERCENT.cast(pl.Int64).fill_null(0).gather(at),
        pl.lit(None, pl.Int64).alias("oop_max_cents") if maximum is None else maximum,
    )


def _sorted_rows(
    cases: pl.DataFrame, member: pl.Series, rows: pl.Series, order: list[str]
) -> pl.Series:
    """`rows` (of `cases`) sorted by member, service year, then `order`; ties keep
    the rows' order.

    In the default order, member, service date and received date are packed into
    one Int64 when the dates span less than 2^15 days (always, in practice): one
    integer and at most one text sort key instead of four. Sorting by service date
    within a member also sorts by year.
    """
    if rows.is_empty():
        return rows
    by_member = pl.lit(member).gather(rows)
    if order != list(PRICING_ORDER):
        year = pl.col("service_date").dt.year().gather(rows)
        by = [by_member, year, *(pl.col(name).gather(rows) for name in order)]
        return cases.select(pl.lit(rows).sort_by(by, maintain_order=True)).to_series()
    service, received = (pl.col(name).gather(rows) for name in ("service_date", "received_date"))
    lo, hi = cases.select(
        pl.min_horizontal(service.min(), received.min()).cast(pl.Int64).alias("lo"),
        pl.max_horizontal(service.max(), received.max()).cast(pl.Int64).alias("hi"),
    ).row(0)
    case_id = pl.col("case_id").gather(rows)
    if hi - lo >= 1 << 15:  # pragma: no cover - dates 90 years apart in one batch
        by = [by_member, service, received, case_id]
        return cases.select(pl.lit(rows).sort_by(by, maintain_order=True)).to_series()
    day = 1 << 15
    packed = by_member * (day * day) + (service.cast(pl.Int64) - lo) * day
    packed = packed + (received.cast(pl.Int64) - lo)
    in_order = cases.select(pl.lit(rows).alias("row"), packed.alias("key")).sort(
        "key", maintain_order=True
    )
    # Cases often arrive in case_id order: a stable sort on the integer alone then
    # keeps case_id order within ties, without comparing text.
    if cases.select(pl.col("case_id").is_sorted()).item():
        return in_order["row"]
    return _ties_by_case_id(in_order, cases["case_id"])


def _ties_by_case_id(in_order: pl.DataFrame, case_id: pl.Series) -> pl.Series:
    """The rows of `in_order` (row, key; stably sorted by key) with each run of equal
    keys put in case_id order.

    Only the rows whose key another row shares are compared by case_id (a member's
    cases with the same service and receipt dates: few), and they are put back in
    the places their run holds: sorting every approved case by its text key took
    ~0.5 s more at 10M cases (issue 15).
    """
    key = in_order["key"]
    tied = ((key == key.shift(1)) | (key == key.shift(-1))).fill_null(False).arg_true()
    rows = in_order["row"]
    if tied.is_empty():
        return rows
    runs = pl.DataFrame({"row": rows.gather(tied), "key": key.gather(tied)})
    by_case_id = pl.lit(case_id).gather(pl.col("row"))
    resolved = runs.sort(pl.col("key"), by_case_id, maintain_order=True).get_column("row")
    return rows.clone().scatter(tied, resolved)


def _member_key(decisions: pl.DataFrame) -> pl.Expr:
    """An integer per member: the context's, or (without one for every approved
    case) a dense number per distinct member_id."""
    if MEMBER_KEY in decisions.columns:
        unkeyed = (pl.col("status") == APPROVED) & pl.col(MEMBER_KEY).is_null()
        if not decisions.select(unkeyed.any()).item():
            return pl.col(MEMBER_KEY).cast(pl.Int64).alias(MEMBER_KEY)
    return pl.col("member_id").rank("dense").cast(pl.Int64).alias(MEMBER_KEY)


# --- the balances ----------------------------------------------------------------------


def _with_balances(
    approved: pl.DataFrame, accumulated: pl.DataFrame | None, member_ids: pl.Series
) -> pl.LazyFrame:
    """The approved cases (in pricing order) with USED and SPENT, the balances each sees.

    `member_ids`: the member_id of each row of the cases (`_at` points there).
    """
    runs = _marked_runs(approved)
    year_starts = _year_starts(runs, accumulated, member_ids)
    any_maximum = approved["oop_max_cents"].null_count() < approved.height
    used_at_start, spent_at_start = _run_starts(runs, year_starts, any_maximum=any_maximum)
    return _balances_within_runs(
        runs.lazy().with_columns(
            pl.lit(used_at_start).gather(pl.col("_run")).alias("_u0"),
            pl.lit(spent_at_start).gather(pl.col("_run")).alias("_s0"),
        ),
        any_maximum=any_maximum,
    ).select("_at", ALLOWED, D, PERCENT, M, USED, SPENT)


def _marked_runs(approved: pl.DataFrame) -> pl.DataFrame:
    """Member-years and span runs, numbered in order from 0 (`_year`, `_run`).

    A span run: the cases of one member-year in a row whose spans have the same
    deductible D and maximum M (the coinsurance percent may differ within a run: it
    only enters each case's own step 3). `_allowed_before`: the allowed of the run's
    earlier cases.
    """

    def changed(column: pl.Expr) -> pl.Expr:
        return column.ne_missing(column.shift(1))

    new_year = changed(pl.col(MEMBER_KEY)) | changed(pl.col("service_year"))
    return (
        approved.lazy()
        .with_columns(new_year.alias("_new_year"))
        .with_columns((pl.col("_new_year") | changed(D) | changed(M)).alias("_new_run"))
        .with_columns(
            (pl.col("_new_year").cum_sum() - 1).alias("_year"),
            (pl.col("_new_run").cum_sum() - 1).alias("_run"),
            _before_in_run(ALLOWED).alias("_allowed_before"),
        )
        .collect(engine=_ENGINE)
    )


def _before_in_run(amount: pl.Expr) -> pl.Expr:
    """The sum of `amount` over the earlier cases of the same span run: a running sum
    over the frame, less its value at the run's first case."""
    before = amount.cum_sum() - amount
    return before - pl.when(pl.col("_new_run")).then(before).forward_fill()


def _year_starts(
    runs: pl.DataFrame, accumulated: pl.DataFrame | None, member_ids: pl.Series
) -> pl.DataFrame:
    """Per member-year (by `_year`): what earlier decisions used and spent in it."""
    if accumulated is None or accumulated.is_empty():
        zero = pl.repeat(0, int(runs["_new_year"].sum()), dtype=pl.Int64, eager=True)
        return pl.DataFrame({"used_cents": zero, "spent_cents": zero})
    years = runs.select(
        pl.lit(member_ids).gather(pl.col("_at").filter(pl.col("_new_year"))).alias("member_id"),
        pl.col("service_year").filter(pl.col("_new_year")),
    )
    prior = (
        accumulated.select(pl.col(name).cast(dtype) for name, dtype in ACCUMULATED_SCHEMA.items())
        .group_by(MEMBER_YEAR)
        .agg(pl.col("used_cents").sum(), pl.col("spent_cents").sum())
    )
    return (
        years.join(prior, on=MEMBER_YEAR, how="left", maintain_order="left")
        .select("used_cents", "spent_cents")
        .fill_null(0)
    )


def _run_starts(
    runs: pl.DataFrame, year_starts: pl.DataFrame, *, any_maximum: bool
) -> tuple[pl.Series, pl.Series]:
    """(used, spent) at the start of each span run, indexed by `_run`.

    A member-year's first run starts from what earlier decisions applied; each later
    run starts from the balances the run before it ended with. Those end balances
    depend on every case of the run (each case's coinsurance is rounded on its own),
    so the carry prices the run's cases from its start: one vectorised step per span
    rank (first runs of all such member-years, then second runs, ...), over the
    member-years with more than one run only.
    """
    first_of_year = pl.when(pl.col("_new_year")).then(pl.col("_run")).forward_fill()
    table = (
        runs.lazy()
        .select("_run", "_year", "_new_year", "_new_run")
        .filter(pl.col("_new_run"))
        .select(
            "_run",
            "_year",
            (pl.col("_run") - first_of_year).alias("_rank"),
            # Runs of one member-year are numbered in a row: the next run is `_run + 1`.
            (pl.col("_year").shift(-1) == pl.col("_year")).fill_null(False).alias("_has_next"),
        )
        .collect(engine=_ENGINE)
    )
    used = year_starts["used_cents"].gather(table["_year"]).alias("used")
    spent = year_starts["spent_cents"].gather(table["_year"]).alias("spent")
    handing_over = table.filter(pl.col("_has_next"))
    if handing_over.is_empty():
        return used, spent
    cases = runs.filter(pl.col("_run").is_in(handing_over["_run"].implode())).with_columns(
        pl.lit(table["_rank"]).gather(pl.col("_run")).alias("_rank")
    )
    last_rank: int = handing_over.select(pl.col("_rank").max()).item()
    for rank in range(last_rank + 1):  # one step per span rank, not per case
        these = cases.lazy().filter(pl.col("_rank") == rank)
        ends = (
            _balances_within_runs(
                these.with_columns(
                    pl.lit(used).gather(pl.col("_run")).alias("_u0"),
                    pl.lit(spent).gather(pl.col("_run")).alias("_s0"),
                ),
                any_maximum=any_maximum,
            )
            .group_by("_run")
            .agg(
                (pl.col("_u0").first() + pl.col("_taken").sum()).alias("used"),
                (pl.col("_s0").first() + pl.col("_spent_by").sum()).alias("spent"),
            )
            .collect(engine=_ENGINE)
        )
        following = ends["_run"] + 1
        used = used.scatter(following, ends["used"])
        spent = spent.scatter(following, ends["spent"])
    return used, spent


def _balances_within_runs(runs: pl.LazyFrame, *, any_maximum: bool) -> pl.LazyFrame:
    """USED and SPENT before each case, from the start (u0, s0) of its span run.

    Also `_taken` and `_spent_by`: what the case adds to them (the carry sums them).

    Why this is §5. Within a run D and M are fixed; a_i is case i's allowed, A_i the
    sum of a_j over the run's cases before i.

    Without a maximum, used before case i is the clamped running sum
        u'_i = max(u0, min(D, u0 + A_i)).
    If u0 >= D, every case takes max(0, D - used) = 0 and used stays u0, which is
    what the formula gives. Otherwise, by induction: if used before i is
    min(D, u0 + A_i), case i takes d'_i = min(a_i, D - used), so used after it is
    min(used + a_i, D) = min(D, u0 + A_i + a_i) = min(D, u0 + A_(i+1)); the outer
    max(u0, .) changes nothing, as u0 <= min(D, u0 + A_i). Each case's deductible
    d'_i (step 2 with u'_i) and coinsurance c'_i (step 3, with its own percent)
    follow, and spent before i is a plain running sum: S_i = s0 + sum of
    d'_j + c'_j over the run's earlier cases.

    With a maximum M, real balances are the uncapped ones until the cap binds.
    If s0 >= M, room is 0 from the run's first case on: every amount is 0 and spent
    stays s0. If s0 < M, let k be the first case with S_k + d'_k + c'_k > M. Before
    k, room_i = M - S_i >= d'_i + c'_i, so nothing is capped. At k,
    room_k = M - S_k >= 0 and d_k + c_k = min(d'_k + c'_k, room_k) = room_k, so spent
    reaches M; after k room is 0, every amount is 0, the balances stay. Both cases:
        spent_i = min(S_i, max(M, s0))     (S_i >= s0, and S_i > M after k)
        room_i = max(0, M - spent_i)
        d_i = min(d'_i, room_i);  c_i = min(c'_i, room_i - d_i)
    (up to k, used is u'_i, so d'_i and c'_i are what §5 computes; after k any
    amount is capped to 0). Used before i is then u0 plus the run's earlier d_j:
    u'_i up to k, frozen after it.
    """
    staged = (
        runs.with_columns(
            pl.max_horizontal(
                pl.col("_u0"), pl.min_horizontal(D, pl.col("_u0") + pl.col("_allowed_before"))
            ).alias("_used_uncapped")
        )
        .with_columns(deductible_before_cap(ALLOWED, pl.col("_used_uncapped")).alias("_d"))
        .with_columns(coinsurance_before_cap(ALLOWED, pl.col("_d")).alias("_c"))
        .with_columns(
            (pl.col("_s0") + _before_in_run(pl.col("_d") + pl.col("_c"))).alias("_spent_uncapped")
        )
    )
    if not any_maximum:  # nothing is capped
        return staged.with_columns(
            pl.col("_used_uncapped").alias(USED_BEFORE),
            pl.col("_spent_uncapped").alias(SPENT_BEFORE),
            pl.col("_d").alias("_taken"),
            (pl.col("_d") + pl.col("_c")).alias("_spent_by"),
        )
    spent = (
        pl.when(M.is_null())
        .then(pl.col("_spent_uncapped"))
        .otherwise(pl.min_horizontal("_spent_uncapped", pl.max_horizontal(M, "_s0")))
    )
    return (
        staged.with_columns(spent.alias(SPENT_BEFORE))
        .with_columns(capped(pl.col("_d"), room(SPENT)).alias("_taken"))
        .with_columns(
            (pl.col("_taken") + capped(pl.col("_c"), room(SPENT) - pl.col("_taken"))).alias(
                "_spent_by"
            ),
            (pl.col("_u0") + _before_in_run(pl.col("_taken"))).alias(USED_BEFORE),
        )
    )


# --- back in the cases' order ----------------------------------------------------------


def _read_back(cases: pl.DataFrame, priced: pl.DataFrame) -> pl.DataFrame:
    """`cases` with the approved cases' amounts and balances in their rows: 0 amounts
    and null balances in the others. Takes the columns out of `priced` (which is left
    with `_at` only).

    One scatter of row numbers (each case's row in `priced`, null if not approved),
    then one gather per column: cheaper than sorting `priced` back to the cases'
    order, or scattering every column. The columns are read back one at a time, each
    let go of in `priced` once gathered: gathered at once, all of them and all of
    `priced` were held together, the batch's peak (~0.25 GiB more at 10M cases,
    issue 15).
    """
    row = pl.repeat(None, cases.height, dtype=pl.Int64, eager=True).scatter(
        priced["_at"], pl.int_range(priced.height, dtype=pl.Int64, eager=True)
    )
    approved = pl.col("status") == APPROVED
    read_back = cases.with_columns(
        pl.when(approved).then(ALLOWED).fill_null(0).cast(pl.Int64).alias("allowed_cents")
    )
    for name in ("deductible_cents", "coinsurance_cents", *BALANCE_COLUMNS):
        column = priced.drop_in_place(name).gather(row)
        read_back = read_back.with_columns(
            column.fill_null(0) if name in AMOUNT_COLUMNS else column
        )
        del column
    return read_back.drop(MEMBER_KEY, strict=False)
