"""Spec §3: validation and rejection of case rows.

Pandera checks each cell against the §1 schema; the failures become a list of
errors per row, each naming its column. Batch-level identity rules (the first
row of a case_id wins; a case_id decided in an earlier batch is a resubmission)
are applied on top, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from claimsflow.reading import RAW, ROW_NUMBER
from schemas.case_batch import CASE_BATCH_SCHEMA, CASE_COLUMNS
from schemas.text_checks import cents, integer, iso_date

ERRORS = "errors"
_MISSING = "required value is missing"


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch split into typed valid cases and rejected rows (with raw values)."""

    cases: pl.DataFrame
    rejections: pl.DataFrame


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
        cell_level = cases
        return cell_level.select(
            pl.col("index").cast(pl.Int64),
            pl.col("column").cast(pl.String),
            pl.when(pl.col("check") == "not_nullable")
            .then(pl.lit(_MISSING))
            .otherwise(pl.col("check"))
            .alias("error"),
        ).unique(maintain_order=True)
    return empty


def validate_batch(raw: pl.DataFrame, decided_case_ids: pl.Series | None = None) -> ValidatedBatch:
    """Split a text batch (from `reading`) into typed valid cases and rejections.

    `decided_case_ids` holds every case_id that already has a decision from an
    earlier batch (spec §3, resubmission).
    """
    text = _with_optional_columns(raw)
    failures = cell_failures(text.select(CASE_COLUMNS), CASE_BATCH_SCHEMA)
    column_rank = {name: i for i, name in enumerate(CASE_COLUMNS)}
    cell_errors = failures.select(
        (pl.col("index") + 1).alias(ROW_NUMBER),
        pl.col("column").replace_strict(column_rank, default=len(column_rank)).alias("rank"),
        (pl.col("column") + ": " + pl.col("error")).alias("error"),
    )
    decided = (
        decided_case_ids
        if decided_case_ids is not None
        else pl.Series("case_id", [], dtype=pl.String)
    )
    identity_errors = (
        text.select(
            pl.col(ROW_NUMBER),
            pl.lit(column_rank["case_id"]).alias("rank"),
            pl.concat_list(
                pl.when(
                    pl.col("case_id").is_not_null() & ~pl.col("case_id").is_first_distinct()
                ).then(pl.lit("case_id: repeats the case_id of an earlier row of this batch")),
                pl.when(pl.col("case_id").is_in(decided.implode())).then(
                    pl.lit("case_id: already has a decision from an earlier batch (resubmission)")
                ),
            ).alias("error"),
        )
        .explode("error")
        .drop_nulls("error")
    )
    errors = (
        pl.concat([cell_errors, identity_errors.cast(cell_errors.schema)])
        .sort(ROW_NUMBER, "rank", maintain_order=True)
        .group_by(ROW_NUMBER, maintain_order=True)
        .agg(pl.col("error").alias(ERRORS))
    )
    marked = text.join(errors, on=ROW_NUMBER, how="left")
    rejected = marked.filter(pl.col(ERRORS).is_not_null())
    valid = marked.filter(pl.col(ERRORS).is_null())
    return ValidatedBatch(
        cases=typed_cases(valid),
        rejections=rejected.select(
            pl.col(ROW_NUMBER),
            pl.col("case_id"),
            pl.col(ERRORS),
            pl.col(RAW),
        ).sort(ROW_NUMBER),
    )


def typed_cases(text: pl.DataFrame) -> pl.DataFrame:
    """Valid text rows as typed cases: dates are dates, money is integer cents."""
    return text.select(
        pl.col(ROW_NUMBER),
        pl.col("case_id"),
        pl.col("member_id"),
        pl.col("provider_id"),
        iso_date(pl.col("service_date")).alias("service_date"),
        iso_date(pl.col("received_date")).alias("received_date"),
        pl.col("procedure_code"),
        pl.col("diagnosis_code"),
        integer(pl.col("units")).alias("units"),
        cents(pl.col("billed_amount")).alias("billed_cents"),
        # Spec §1: an empty prior_auth_id counts as missing.
        pl.when(pl.col("prior_auth_id") != "")
        .then(pl.col("prior_auth_id"))
        .otherwise(None)
        .alias("prior_auth_id"),
    )


def _with_optional_columns(raw: pl.DataFrame) -> pl.DataFrame:
    if "prior_auth_id" in raw.columns:
        return raw
    return raw.with_columns(pl.lit(None, dtype=pl.String).alias("prior_auth_id"))
