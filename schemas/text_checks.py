"""Vectorised text checks shared by the case and reference schemas.

Every input is validated as text first (CSV and JSON carry text; Parquet columns
are rendered to text), so a bad cell names its column and value instead of
failing a whole-column cast.
"""

from __future__ import annotations

from collections.abc import Callable

import pandera.polars as pa
import polars as pl

Parser = Callable[[pl.Expr], pl.Expr]

ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DECIMAL_2DP = r"^[0-9]+(\.[0-9]{1,2})?$"
INTEGER = r"^[0-9]+$"


def iso_date(expr: pl.Expr) -> pl.Expr:
    """Text `YYYY-MM-DD` that names a real calendar day, else null."""
    return pl.when(expr.str.contains(ISO_DATE)).then(
        expr.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    )


def cents(expr: pl.Expr) -> pl.Expr:
    """Decimal text with at most 2 decimal places as integer cents, else null.

    Done on the digits themselves so that no binary float ever touches money: the
    text is read as a decimal of scale 2 (exact), whose value in cents is whole.
    More than 13 significant integer digits do not fit its precision of 15: null,
    as an invalid amount. A third of the time of slicing the text into its whole
    and fractional digits (issue 15); tests/test_fast_paths.py checks it against a
    plain-Python oracle.
    """
    return pl.when(expr.str.contains(DECIMAL_2DP)).then(
        (expr.cast(pl.Decimal(15, 2), strict=False) * 100).cast(pl.Int64, strict=False)
    )


def integer(expr: pl.Expr) -> pl.Expr:
    """Unsigned integer text (at most 9 digits) as Int64, else null."""
    # Non-strict casts: `when` does not stop the cast from seeing the other rows.
    return pl.when(expr.str.contains(r"^[0-9]{1,9}$")).then(expr.cast(pl.Int64, strict=False))


def not_empty() -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(pl.col(data.key).str.len_chars() > 0),
        error="required value is missing",
        name="not_empty",
    )


def length_between(lo: int, hi: int) -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(
            pl.col(data.key).str.len_chars().is_between(lo, hi) | (pl.col(data.key) == "")
        ),
        error=f"must be {lo} to {hi} characters",
        name="length_between",
    )


def matches(pattern: str, error: str) -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(
            pl.col(data.key).str.contains(pattern) | (pl.col(data.key) == "")
        ),
        error=error,
        name="matches",
    )


def parses(parser: Parser, error: str) -> pa.Check:
    """The cell parses with `parser` (an Expr -> Expr giving null on failure)."""

    def check(data: pa.PolarsData) -> pl.LazyFrame:
        col = pl.col(data.key)
        return data.lazyframe.select(parser(col).is_not_null() | (col == ""))

    return pa.Check(check, error=error, name="parses")


def in_range(parser: Parser, lo: int, hi: int, error: str) -> pa.Check:
    """The parsed value lies in [lo, hi]; unparseable cells are reported by `parses`."""

    def check(data: pa.PolarsData) -> pl.LazyFrame:
        value = parser(pl.col(data.key))
        return data.lazyframe.select(value.is_null() | value.is_between(lo, hi))

    return pa.Check(check, error=error, name="in_range")


def one_of(values: list[str], error: str) -> pa.Check:
    return pa.Check(
        lambda data: data.lazyframe.select(
            pl.col(data.key).is_in(values) | (pl.col(data.key) == "")
        ),
        error=error,
        name="one_of",
    )
