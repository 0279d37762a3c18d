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

from claimsflow.core.repeats import repeats_earlier_row
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.vocabulary import RAW, READ_ERRORS, ROW_NUMBER, VOIDED
from schemas.case_batch import (
    CASE_BATCH_SCHEMA,
    CASE_COLUMNS,
    CASE_ID_PATTERN,
    OPTIONAL_COLUMNS,
    ORIGINAL,
    REPLACEMENT,
    VOID,
)
from schemas.failures import cell_failures
from schemas.text_checks import cents, integer, iso_date

#: claim_frequency values that correct an earlier case (spec §9).
CORRECTIONS = (REPLACEMENT, VOID)
ERRORS = "errors"
_CLEAN, _REPEAT, _RESUBMITTED = "_clean", "_repeat", "_resubmitted"
_CORRECTS, _ORIGINAL_STATUS = "_corrects", "_original_status"
#: The latest decision of earlier cases, as validation needs it (spec §3, §9).
DECIDED_STATUS_SCHEMA: dict[str, pl.DataType] = {"case_id": pl.String(), "status": pl.String()}


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch split into typed valid cases and rejected rows (with raw values).

    `cases` are in row order, except that void rows (spec §9) come after the others
    (`_valid_rows_voids_last`)."""

    cases: pl.DataFrame
    rejections: pl.DataFrame


def no_decisions() -> pl.DataFrame:
    return pl.DataFrame(schema=DECIDED_STATUS_SCHEMA)


@dataclass(frozen=True)
class EarlierRows:
    """What validating a chunk of a batch's rows needs from the rest of the batch
    (a batch validated a chunk at a time: claimsflow/pipeline/chunked.py).

    repeated: the row_numbers, in the whole batch, of the rows that repeat the case_id
        of an earlier row (`repeats_earlier_row` over every row of the batch).
    corrected: the originals that valid correction rows of earlier chunks correct.
    """

    repeated: pl.Series
    corrected: pl.Series


def validate_batch(
    raw: pl.DataFrame,
    decided: pl.DataFrame | None = None,
    *,
    release_raw: bool = False,
    earlier: EarlierRows | None = None,
) -> ValidatedBatch:
    """Split a text batch (from `reading`) into typed valid cases and rejections.

    `decided` holds the latest status of every case decided in an earlier batch that
    the batch names, as case_id or as original_case_id (at least those: more rows do
    no harm): a case_id found there is a resubmission (spec §3); a correction row
    must name one found there that is not VOIDED (spec §9). `raw` may lack the RAW
    column (see `reading.read_batch_bytes`): it is then built for the rejected rows
    only.

    `release_raw`: the caller gives `raw` up. Its columns are then taken out of it (it
    is left with none) as soon as validation is done with them, so that the batch's
    text and its typed cases are not both held at the end (~1 GiB at 10M rows,
    issue 15).

    `earlier`: `raw` is a chunk of a batch's rows, in file order after the chunks
    `earlier` tells of; the rows are judged as they would be in the whole batch.
    """
    decided = decided if decided is not None else no_decisions()
    repeats = (
        repeats_earlier_row(raw["case_id"])
        if earlier is None
        else raw[ROW_NUMBER].is_in(earlier.repeated.implode())
    )
    screened = _screen(raw, decided, repeats)
    # Pandera on the rows some check failed: the per-cell failures, in its order.
    suspect = ~screened[_CLEAN]
    failures = cell_failures(
        _with_optional_columns(raw.filter(suspect)).select(CASE_COLUMNS), CASE_BATCH_SCHEMA
    )
    failed_rows = screened[ROW_NUMBER].filter(suspect).gather(failures["index"])
    cell_errors = _with_read_errors(
        failures.with_columns(failed_rows.alias(ROW_NUMBER)), raw
    ).select(
        pl.col(ROW_NUMBER),
        pl.col("column").replace_strict(_COLUMN_RANK, default=len(_COLUMN_RANK)).alias("rank"),
        (pl.col("column") + ": " + pl.col("error")).alias("error"),
    )
    corrections = _correction_rows(screened, decided)
    found = [cell_errors, _flagged_errors(screened, _IDENTITY_ERRORS)]
    found.append(_flagged_errors(corrections, _correction_errors()))
    # Spec §9: a correction is rejected when an earlier row that was NOT rejected
    # already corrects the same original, so this is judged on the rows that are
    # left once every other error is known.
    otherwise_rejected = pl.concat([f.select(ROW_NUMBER) for f in found])[ROW_NUMBER]
    corrected = earlier.corrected if earlier is not None else None
    found.append(_repeated_corrections(corrections, otherwise_rejected, corrected))
    errors = (
        pl.concat([f.cast(cell_errors.schema) for f in found])
        .sort(ROW_NUMBER, "rank", maintain_order=True)
        .group_by(ROW_NUMBER, maintain_order=True)
        .agg(pl.col("error").alias(ERRORS))
    )
    # One mask for both sides (`screened` has raw's rows, in raw's order).
    rejected = screened[ROW_NUMBER].is_in(errors[ROW_NUMBER].implode())
    rejections = _rejections(raw.filter(rejected), errors)
    # The valid rows' typed columns, one column at a time, each let go of once copied:
    # filtering the frame whole held both copies at once (~1 GiB at 10M rows). The
    # text columns validation does not change are taken from `raw` (see `_screen`).
    rows = _valid_rows_voids_last(screened, ~rejected)
    if release_raw:
        for name in [c for c in raw.columns if c not in _AS_READ]:
            raw.drop_in_place(name)
    typed: list[pl.Series] = []
    for name in _CASE_TYPES:
        if name in screened.columns:
            column = screened.get_column(name)
        else:
            column = raw.drop_in_place(name) if release_raw else raw.get_column(name)
        kept = column.filter(rows) if rows.dtype == pl.Boolean else column.gather(rows)
        typed.append(kept.rechunk())
        screened = screened.drop(name, strict=False)
        del column, kept
    return ValidatedBatch(cases=pl.DataFrame(typed), rejections=rejections)


def _valid_rows_voids_last(screened: pl.DataFrame, kept: pl.Series) -> pl.Series:
    """Which rows of `screened` the valid cases are, in their order: the mask `kept`
    (row order), or, when some valid rows void a case (spec §9), the positions of the
    other valid rows in row order, then those of the void rows.

    Void rows are recorded but never adjudicated: placed last, the rows `decide`
    adjudicates are a slice of the batch, not a filtered copy of it (0.7 GiB and
    ~0.7 s at 10M cases, issue 16). A case's place among a batch's rows means
    nothing in the log (row_number keeps the file's order).
    """
    void = (screened.get_column("claim_frequency") == VOID).fill_null(False)
    if not (kept & void).any():
        return kept
    return pl.concat([(kept & ~void).arg_true(), (kept & void).arg_true()])


_COLUMN_RANK = {name: i for i, name in enumerate(CASE_COLUMNS)}
_CASE_ID_SHAPE = "must be 1 to 64 characters of A-Z a-z 0-9 - _"

#: Row-level errors found by the screen: (column, flag expression, message).
_IDENTITY_ERRORS: tuple[tuple[str, pl.Expr, str], ...] = (
    (
        "case_id",
        pl.col(_REPEAT),
        "repeats the case_id of an earlier row of this batch",
    ),
    (
        "case_id",
        pl.col(_RESUBMITTED),
        "already has a decision from an earlier batch (resubmission)",
    ),
)


def _correction_errors() -> tuple[tuple[str, pl.Expr, str], ...]:
    """Spec §9: what makes a replacement or void row unusable, on original_case_id."""
    original = pl.col("original_case_id")
    named = pl.col(_CORRECTS) & original.is_not_null()
    well_formed = original.str.contains(CASE_ID_PATTERN)
    return (
        (
            "original_case_id",
            pl.col(_CORRECTS) & original.is_null(),
            "required when claim_frequency is 7 (replacement) or 8 (void)",
        ),
        ("original_case_id", named & ~well_formed, _CASE_ID_SHAPE),
        (
            "original_case_id",
            named & well_formed & pl.col(_ORIGINAL_STATUS).is_null(),
            "no earlier batch decided this case",
        ),
        (
            "original_case_id",
            named & (pl.col(_ORIGINAL_STATUS) == VOIDED),
            "the original case is already VOIDED",
        ),
    )


def _flagged_errors(
    screened: pl.DataFrame, checks: tuple[tuple[str, pl.Expr, str], ...]
) -> pl.DataFrame:
    """One row (row_number, rank, error) per flag that is set, in the order given.

    The rows with a flag set are found first: they are few (the rejected ones), and
    building a list of structs on every row of a large batch cost ~20 s per million
    rows (docs/benchmarks.md, lifecycle)."""
    flags = [flag.fill_null(False) for _, flag, _ in checks]
    return (
        screened.filter(pl.any_horizontal(flags))
        .select(
            pl.col(ROW_NUMBER),
            pl.concat_list(
                pl.when(flag.fill_null(False)).then(
                    pl.struct(
                        pl.lit(_COLUMN_RANK[column]).alias("rank"),
                        pl.lit(f"{column}: {message}").alias("error"),
                    )
                )
                for column, flag, message in checks
            ).alias("_found"),
        )
        .explode("_found")
        .drop_nulls("_found")
        .unnest("_found")
    )


def _correction_rows(screened: pl.DataFrame, decided: pl.DataFrame) -> pl.DataFrame:
    """The batch's correction rows (spec §9), in file order, with the latest status of
    the original each names (null: no earlier batch decided it).

    Looked up for these rows only: they are few, and every check of §9 is on them
    (the lookup on every row of a 10M-row batch took ~0.4 s, issue 16).
    """
    rows = screened.filter(pl.col(_CORRECTS)).select(ROW_NUMBER, "original_case_id")
    return rows.with_columns(
        pl.col("original_case_id")
        .replace_strict(decided["case_id"], decided["status"], default=None, return_dtype=pl.String)
        .alias(_ORIGINAL_STATUS),
        pl.lit(True).alias(_CORRECTS),
    )


def _repeated_corrections(
    corrections: pl.DataFrame, rejected: pl.Series, corrected: pl.Series | None
) -> pl.DataFrame:
    """Correction rows, among those not otherwise rejected, whose original an earlier
    such row already corrects (the first one in file order is the one applied), in
    these rows or, when given, among the originals `corrected` by earlier chunks."""
    candidates = corrections.filter(~pl.col(ROW_NUMBER).is_in(rejected.implode())).select(
        ROW_NUMBER, "original_case_id"
    )
    original = pl.col("original_case_id")
    repeated = ~original.is_first_distinct()
    if corrected is not None:
        repeated = repeated | original.is_in(corrected.implode())
    return candidates.filter(repeated).select(
        pl.col(ROW_NUMBER),
        pl.lit(_COLUMN_RANK["original_case_id"]).alias("rank"),
        pl.lit("original_case_id: an earlier row of this batch already corrects this case").alias(
            "error"
        ),
    )


# The typed case columns (the cases table's payload): dates are dates, money is
# integer cents.
_CASE_TYPES: tuple[str, ...] = (ROW_NUMBER, *CASE_PAYLOAD_COLUMNS)


def _typed_columns() -> list[pl.Expr]:
    frequency = pl.col("claim_frequency")
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
        _present(pl.col("prior_auth_id")).alias("prior_auth_id"),
        # Spec §1: an empty or missing claim_frequency is 1 (an original claim).
        pl.when(_present(frequency).is_null())
        .then(pl.lit(ORIGINAL))
        .otherwise(frequency)
        .alias("claim_frequency"),
        # Spec §1: original_case_id is ignored unless the row corrects a case.
        pl.when(frequency.is_in(CORRECTIONS))
        .then(_present(pl.col("original_case_id")))
        .alias("original_case_id"),
    ]


#: Typed columns that are the text as read: the valid cases take them from the
#: batch itself (`validate_batch`), not from the screen.
_AS_READ = frozenset(("case_id", "member_id", "provider_id", "procedure_code", "diagnosis_code"))


def _present(text: pl.Expr) -> pl.Expr:
    """Text, with the empty string as missing."""
    return pl.when(text != "").then(text)


def _screen(raw: pl.DataFrame, decided: pl.DataFrame, repeats: pl.Series) -> pl.DataFrame:
    """One pass over the batch: whether every schema check passes, the identity
    flags (`repeats`: whether each row repeats an earlier row's case_id), and the
    typed columns.

    The check expressions are the schema's own (`_check_expressions`), evaluated
    with Pandera's semantics (a null check result passes unless the check says
    otherwise; a non-nullable column must have no null). A row whose checks all
    pass is one Pandera would report nothing for, because every check is a
    row-wise expression; every other row goes through Pandera itself. Evaluated
    in one lazy query, each parse (dates, cents) is done once and shared by the
    checks and the typed columns (common subexpression elimination).

    The optional columns a file leaves out are added inside the query: added to the
    frame, they made Polars rechunk every column the reader left in pieces (1.4 GiB
    and 0.7 s at 10M rows, issue 15). The text columns that are kept as read
    (`_AS_READ`) are left out: rechunked here, they were a second copy of the
    batch's text beside `raw` until the valid rows were taken (~1.2 GiB at 10M rows).
    """
    checks = _check_expressions(CASE_BATCH_SCHEMA, _with_optional_columns(raw.clear()))
    clean = pl.all_horizontal(checks) if checks is not None else pl.lit(False)
    absent = [c for c in OPTIONAL_COLUMNS if c not in raw.columns]
    return (
        raw.lazy()
        .with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)
        .select(
            *(c for c in _typed_columns() if c.meta.output_name() not in _AS_READ),
            clean.alias(_CLEAN),
            pl.col("case_id").is_in(decided["case_id"].implode()).alias(_RESUBMITTED),
            pl.col("claim_frequency").is_in(CORRECTIONS).fill_null(False).alias(_CORRECTS),
        )
        .collect()
        .with_columns(repeats.alias(_REPEAT))
        # Each column in one piece: the query leaves them in ~100, which made every
        # later step of the batch copy them again (decide's peak +1.2 GB at 10M).
        .rechunk()
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


def _with_read_errors(cell_errors: pl.DataFrame, raw: pl.DataFrame) -> pl.DataFrame:
    """The cell errors (row_number, column, error) with the reader's row errors.

    The reader reports a field the line does not hold (or a key given twice): the
    checks of that column on that row are its to report, not the cell checks."""
    if READ_ERRORS not in raw.columns:
        return cell_errors
    read = (
        raw.select(ROW_NUMBER, READ_ERRORS)
        .drop_nulls(READ_ERRORS)
        .explode(READ_ERRORS)
        .unnest(READ_ERRORS)
        .select(ROW_NUMBER, "column", "error")
    )
    if read.is_empty():
        return cell_errors
    cells = cell_errors.select(ROW_NUMBER, "column", "error")
    return pl.concat(
        [read, cells.join(read, on=[ROW_NUMBER, "column"], how="anti", maintain_order="left")]
    )


def _rejections(rows: pl.DataFrame, errors: pl.DataFrame) -> pl.DataFrame:
    """The rejected rows (of the raw batch) with their errors and raw values, in file
    order."""
    if RAW in rows.columns:
        kept = pl.col(RAW)
    else:
        # The row as read, for the rejected rows only (reading left it out).
        read = [c for c in rows.columns if c not in (ROW_NUMBER, READ_ERRORS)]
        kept = pl.struct(read).struct.json_encode() if read else pl.lit("{}")
    return (
        rows.select(pl.col(ROW_NUMBER), pl.col("case_id"), kept.alias(RAW))
        .join(errors, on=ROW_NUMBER, how="left", maintain_order="left")
        .select(ROW_NUMBER, "case_id", ERRORS, RAW)
        .sort(ROW_NUMBER)
    )


def _with_optional_columns(raw: pl.DataFrame) -> pl.DataFrame:
    """The optional columns a file may leave out, as missing values (spec §1)."""
    absent = [c for c in OPTIONAL_COLUMNS if c not in raw.columns]
    return raw.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent)
