"""Pandera's failure cases as one row per failed cell: what every schema's users
(case batches, reference files, review files) turn into errors that name a column."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

MISSING = "required value is missing"


def cell_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """One row per failed cell check: `index` (0-based row), `column`, `error`."""
    empty = pl.DataFrame(
        schema={"index": pl.Int64, "column": pl.String, "error": pl.String},
    )
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = pl.DataFrame(exc.failure_cases)
        unplaced = cases.filter(pl.col("index").is_null())
        if unplaced.height:
            # A check that fails as a whole (an exception inside it) would
            # otherwise let bad rows through unnoticed: that is a defect, not data.
            first = unplaced.row(0, named=True)
            raise RuntimeError(
                f"validation check {first['check']!r} on column {first['column']!r} "
                f"failed as a whole: {first['failure_case']}"
            ) from exc
        return cases.select(
            pl.col("index").cast(pl.Int64),
            pl.col("column").cast(pl.String),
            pl.when(pl.col("check") == "not_nullable")
            .then(pl.lit(MISSING))
            .otherwise(pl.col("check"))
            .alias("error"),
        ).unique(maintain_order=True)
    return empty
