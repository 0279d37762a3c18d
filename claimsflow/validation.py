"""Spec §3: validation and rejection of case rows.

Pandera checks each cell against the §1 schema; the failures become a list of
errors per row, each naming its column. Batch-level identity rules (the first
row of a case_id wins; a case_id decided in an earlier batch is a resubmission)
are applied on top, vectorised.

At scale almost every row is valid, so the schema is applied in two steps that
together give exactly Pandera's verdict (see `_screen`): the schema's own check
expressions are evaluated in one fused pass over the batch, sharing each parse
with the typed columns, and Pandera then validates only the rows that fail some
check, producing the per-cell failures and their messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from claimsflow.reading import RAW, ROW_NUMBER
from claimsflow.repeats import repeats_earlier_row
from schemas.case_batch import CASE_BATCH_SCHEMA, CASE_COLUMNS
from schemas.text_checks import cents, integer, iso_date

ERRORS = "errors"
_MISSING = "required value is missing"
_CLEAN, _REPEAT, _RESUBMITTED = "_clean", "_repeat", "_resubmitted"


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
    earlier batch (spec §3, resubmission). `raw` may lack the RAW column (see
    `reading.read_batch_bytes`): it is then built for the rejected rows only.
    """
    text = _with_optional_columns(raw)
    decided = (
        decided_case_ids
        if decided_case_ids is not None
        else pl.Series("case_id", [], dtype=pl.String)
    )
    screened = _screen(text, decided)
    # Pandera on the rows some check failed: the per-cell failures, in its order.
    suspect = ~screened[_CLEAN]
    failures = cell_failures(text.filter(suspect).select(CASE_COLUMNS), CASE_BATCH_SCHEMA)
    failed_rows = screened[ROW_NUMBER].filter(suspect).gather(failures["index"])
    column_rank = {name: i for i, name in enumerate(CASE_COLUMNS)}
    cell_errors = failures.with_columns(failed_rows.alias(ROW_NUMBER)).select(
        pl.col(ROW_NUMBER),
        pl.col("column").replace_strict(column_rank, default=len(column_rank)).alias("rank"),
        (pl.col("column") + ": " + pl.col("error")).alias("error"),
    )
    identity_errors = (
        screened.filter(pl.col(_REPEAT) | pl.col(_RESUBMITTED))
        .select(
            pl.col(ROW_NUMBER),
            pl.lit(column_rank["case_id"]).alias("rank"),
            pl.concat_list(
                pl.when(pl.col(_REPEAT)).then(
                    pl.lit("case_id: repeats the case_id of an earlier row of this batch")
                ),
                pl.when(pl.col(_RESUBMITTED)).then(
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
    # One mask for both sides (`screened` has raw's rows, in raw's order).
    rejected = screened[ROW_NUMBER].is_in(errors[ROW_NUMBER].implode())
    return ValidatedBatch(
        cases=screened.select(_CASE_TYPES).filter(~rejected),
        rejections=_rejections(raw.filter(rejected), errors),
    )


# The typed case columns: dates are dates, money is integer cents.
_CASE_TYPES: tuple[str, ...] = (
    ROW_NUMBER,
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


def _typed_columns() -> list[pl.Expr]:
    return [
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
    ]


def typed_cases(text: pl.DataFrame) -> pl.DataFrame:
    """Valid text rows as typed cases: dates are dates, money is integer cents."""
    return text.select(_typed_columns())


def _screen(text: pl.DataFrame, decided: pl.Series) -> pl.DataFrame:
    """One pass over the batch: whether every schema check passes, the identity
    flags, and the typed columns.

    The check expressions are the schema's own (`_check_expressions`), evaluated
    with Pandera's semantics (a null check result passes unless the check says
    otherwise; a non-nullable column must have no null). A row whose checks all
    pass is one Pandera would report nothing for, because every check is a
    row-wise expression; every other row goes through Pandera itself. Evaluated
    in one lazy query, each parse (dates, cents) is done once and shared by the
    checks and the typed columns (common subexpression elimination).
    """
    checks = _check_expressions(CASE_BATCH_SCHEMA, text)
    clean = pl.all_horizontal(checks) if checks is not None else pl.lit(False)
    return (
        text.lazy()
        .select(
            *_typed_columns(),
            clean.alias(_CLEAN),
            pl.col("case_id").is_in(decided.implode()).alias(_RESUBMITTED),
        )
        .collect()
        .with_columns(repeats_earlier_row(text["case_id"]).alias(_REPEAT))
    )


class _CheckRecorder:
    """Stands in for the LazyFrame a Pandera check selects from, to keep its expression."""

    def __init__(self) -> None:
        self.exprs: tuple[pl.Expr, ...] = ()

    def select(self, *exprs: pl.Expr) -> _CheckRecorder:
        self.exprs = exprs
        return self


def _check_expressions(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> list[pl.Expr] | None:
    """Every check of `schema` as one boolean expression per check (True = passes).

    None when the schema holds anything this cannot express exactly (a check that
    is not a single row-wise `select`, element-wise or frame-wide checks, unique
    or coerced columns, a column missing or not text): then every row goes
    through Pandera.
    """
    if schema.checks or schema.coerce or schema.unique:
        return None
    exprs: list[pl.Expr] = []
    for name, column in schema.columns.items():
        if name not in frame.columns:
            if column.required:
                return None
            continue
        if frame.schema[name] != pl.String or column.unique or column.coerce:
            return None
        if not column.nullable:
            exprs.append(pl.col(name).is_not_null())
        for check in column.checks:
            recorder = _CheckRecorder()
            if check.element_wise or check._check_fn is None:
                return None
            data = PolarsData(cast(pl.LazyFrame, recorder), name)
            try:
                out = check._check_fn(data, **check._check_kwargs)
            except Exception:
                return None
            if out is not recorder or len(recorder.exprs) != 1:
                return None
            exprs.append(recorder.exprs[0].fill_null(bool(check.ignore_na)))
    return exprs


def _rejections(rows: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """The rejected rows (of the raw batch) with their errors and raw values, in file
    order."""
    if RAW in rows.columns:
        kept = pl.col(RAW)
    else:
        # The row as read, for the rejected rows only (reading left it out).
        read = [c for c in rows.columns if c != ROW_NUMBER]
        kept = pl.struct(read).struct.json_encode() if read else pl.lit("{}")
    return (
        rows.select(pl.col(ROW_NUMBER), pl.col("case_id"), kept.alias(RAW))
        .join(errors, on=ROW_NUMBER, how="left", maintain_order="left")
        .select(ROW_NUMBER, "case_id", ERRORS, RAW)
        .sort(ROW_NUMBER)
    )


def _with_optional_columns(raw: pl.DataFrame) -> pl.DataFrame:
    if "prior_auth_id" in raw.columns:
        return raw
    return raw.with_columns(pl.lit(None, dtype=pl.String).alias("prior_auth_id"))
