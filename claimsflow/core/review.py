"""Spec §8: an examiner's review file, as a pure function of its rows, the state of the
cases it names and the reference data. Nothing here reads or writes a file.

Rows are applied one at a time in file order, but no row of a file can change what
another row sees except through the member-year balances: a row may only decide a
case that no earlier row of the file names (a later row naming it is rejected,
whatever became of the earlier one), so every row judges its case by the case's
latest decision before the file. That makes the rules vectorised:

- `validate_review`: the schema (schemas/review.py) on text, then the case's state:
  named before in this file, never decided, or its latest decision not PENDED;
- `decide_review`: DENY rows are DENIED with their reason code and no amounts;
  APPROVE rows are priced (spec §5) with the reference data of the review, in file
  order within each member-year, on top of everything recorded for that member-year
  (`accumulated`); an APPROVE row that cannot be priced (no span covers the service
  date any more, or the procedure left the fee schedule) is rejected on case_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import polars as pl

from claimsflow.core.pricing import price
from claimsflow.core.reference import Reference
from claimsflow.core.repeats import repeats_earlier_row
from claimsflow.core.rules.context import CASE_PAYLOAD_SCHEMA, adjudication_context
from claimsflow.core.validation import no_decisions
from claimsflow.vocabulary import APPROVED, DENIED, PENDED, RAW, READ_ERRORS, REVIEW, ROW_NUMBER
from schemas.failures import cell_failures
from schemas.review import APPROVE, DENY, OPTIONAL_REVIEW_COLUMNS, REVIEW_COLUMNS, REVIEW_SCHEMA

ERRORS: Final = "errors"
#: Spec §8: an APPROVE row's decisions use the member-year balances in file order.
REVIEW_PRICING_ORDER: Final = (ROW_NUMBER,)
#: The rule set of a case's adjudication, which its review decision carries (spec §8).
RULESET_COLUMNS: Final = ("ruleset_name", "ruleset_version", "ruleset_parameters_hash")
#: A reviewed case as the review reads it: what it was received with, and the rule set
#: that adjudicated it.
REVIEWED_CASE_SCHEMA: Final[dict[str, pl.DataType]] = {
    **CASE_PAYLOAD_SCHEMA,
    **dict.fromkeys(RULESET_COLUMNS, pl.String()),
}
#: A row of a review file once its cells are valid (text as written; note may be null).
ROW_SCHEMA: Final[dict[str, pl.DataType]] = {
    ROW_NUMBER: pl.Int64(),
    **dict.fromkeys(REVIEW_COLUMNS, pl.String()),
    RAW: pl.String(),
}
REJECTION_SCHEMA: Final[dict[str, pl.DataType]] = {
    ROW_NUMBER: pl.Int64(),
    "case_id": pl.String(),
    ERRORS: pl.List(pl.String()),
    RAW: pl.String(),
}
#: The amounts a decision carries (0 for a DENY), and the pricing terms it records.
AMOUNT_COLUMNS: Final = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")
_COLUMN_RANK = {name: i for i, name in enumerate(REVIEW_COLUMNS)}

# Messages on case_id (spec §8).
REPEATED = "case_id: repeats the case_id of an earlier row of this file"
NEVER_DECIDED = "case_id: no batch decided this case"
NO_SPAN = "case_id: cannot be priced: no coverage span of the member covers the service date"
NO_FEE = "case_id: cannot be priced: the procedure code is not on the fee schedule"


_NOT_PENDED = "case_id: the case's latest decision is {}, not PENDED"


def not_pended(status: str) -> str:
    return _NOT_PENDED.format(status)


@dataclass(frozen=True)
class ValidatedReview:
    """A review file split into rows to apply (ROW_SCHEMA, file order) and rejected rows
    (REJECTION_SCHEMA, file order)."""

    rows: pl.DataFrame
    rejections: pl.DataFrame

    @property
    def approvals(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("decision") == APPROVE)


@dataclass(frozen=True)
class ReviewHistory:
    """What a review sees of the log, as frames.

    cases: each reviewed case as received, with its adjudication's rule set
        (REVIEWED_CASE_SCHEMA; at least the cases of the rows to apply).
    accumulated: per member-year of the APPROVE rows, what latest-APPROVED cases used
        (deductible) and spent (deductible + coinsurance), as the pricing reads it.
    """

    cases: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REVIEWED_CASE_SCHEMA))
    accumulated: pl.DataFrame | None = None


@dataclass(frozen=True)
class ReviewDecision:
    """What a review file decided: one decision per applied row, in file order, and
    every rejected row (of validation or pricing), in file order."""

    rows_in: int
    decisions: pl.DataFrame
    rejections: pl.DataFrame

    @property
    def rows_decided(self) -> int:
        return self.decisions.height


def reviewed_case_ids(raw: pl.DataFrame) -> pl.Series:
    """The case_ids a review file names (its rows', as written), for the status read."""
    if "case_id" not in raw.columns:
        return pl.Series("case_id", [], dtype=pl.String)
    return raw["case_id"].drop_nulls().unique(maintain_order=True)


def validate_review(raw: pl.DataFrame, statuses: pl.DataFrame | None = None) -> ValidatedReview:
    """Split a review file's text frame (from `reading`, with row_number and raw) into
    rows to apply and rejected rows.

    `statuses` (DECIDED_STATUS_SCHEMA) is the latest status of the cases the file names
    (at least those; more rows do no harm): a row's case must be there and PENDED.
    """
    decided = statuses if statuses is not None else no_decisions()
    text = raw.with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in OPTIONAL_REVIEW_COLUMNS if c not in raw
    )
    failures = cell_failures(text.select(REVIEW_COLUMNS), REVIEW_SCHEMA)
    found = _with_read_errors(
        failures.select(
            pl.lit(text[ROW_NUMBER]).gather(pl.col("index")).alias(ROW_NUMBER),
            "column",
            "error",
        ),
        text,
    )
    cell_errors = found.select(
        ROW_NUMBER,
        pl.col("column").replace_strict(_COLUMN_RANK, default=len(_COLUMN_RANK)).alias("rank"),
        (pl.col("column") + ": " + pl.col("error")).alias("error"),
    )
    named = pl.col("case_id").is_not_null() & (pl.col("case_id") != "")
    status = pl.col("case_id").replace_strict(
        decided["case_id"], decided["status"], default=None, return_dtype=pl.String
    )
    repeated = pl.lit(repeats_earlier_row(text["case_id"].replace("", None)))
    state = text.select(
        pl.col(ROW_NUMBER),
        pl.lit(_COLUMN_RANK["case_id"]).alias("rank"),
        pl.when(named & repeated)
        .then(pl.lit(REPEATED))
        .when(named & status.is_null())
        .then(pl.lit(NEVER_DECIDED))
        .when(named & (status != PENDED))
        .then(pl.format(_NOT_PENDED, status))
        .alias("error"),
    ).drop_nulls("error")
    errors = (
        pl.concat([cell_errors, state.cast(cell_errors.schema)])
        .sort(ROW_NUMBER, "rank", maintain_order=True)
        .group_by(ROW_NUMBER, maintain_order=True)
        .agg(pl.col("error").alias(ERRORS))
    )
    rejected = text[ROW_NUMBER].is_in(errors[ROW_NUMBER].implode())
    rows = text.filter(~rejected).select(
        # An empty note is no note (null in the log), as an empty prior_auth_id is none.
        pl.when(pl.col(name) != "").then(pl.col(name)).cast(dtype).alias(name)
        if name == "note"
        else pl.col(name).cast(dtype)
        for name, dtype in ROW_SCHEMA.items()
    )
    rejections = (
        text.filter(rejected)
        .select(ROW_NUMBER, "case_id", RAW)
        .join(errors, on=ROW_NUMBER, how="left", maintain_order="left")
        .select(list(REJECTION_SCHEMA))
    )
    return ValidatedReview(rows=rows, rejections=rejections)


def _with_read_errors(cell_errors: pl.DataFrame, text: pl.DataFrame) -> pl.DataFrame:
    """The cell errors (row_number, column, error) with the reader's row errors (a line
    with fewer or more fields than the header, spec §3): a field the line does not hold
    is the reader's to report, not its column's checks."""
    if READ_ERRORS not in text.columns:
        return cell_errors
    read = (
        text.select(ROW_NUMBER, READ_ERRORS)
        .drop_nulls(READ_ERRORS)
        .explode(READ_ERRORS)
        .unnest(READ_ERRORS)
        .select(ROW_NUMBER, "column", "error")
    )
    if read.is_empty():
        return cell_errors
    return pl.concat(
        [read, cell_errors.join(read, on=[ROW_NUMBER, "column"], how="anti", maintain_order="left")]
    )


def decide_review(
    validated: ValidatedReview, rows_in: int, reference: Reference, history: ReviewHistory
) -> ReviewDecision:
    """Spec §8: the decisions of a validated review file's rows, in file order.

    Each decision carries decision_source REVIEW, decided_by the examiner, the note,
    and the rule set (name, version, parameters hash) of the case's adjudication.
    APPROVE rows are priced with `reference` as it is now, in file order within each
    member-year, after `history.accumulated`.
    """
    rows = validated.rows.join(
        history.cases.select(list(REVIEWED_CASE_SCHEMA)).unique("case_id", keep="last"),
        on="case_id",
        how="left",
        maintain_order="left",
    )
    unknown = rows.filter(pl.col("member_id").is_null())
    if unknown.height:  # a decided case always has its received row: a defect, not data
        raise ValueError(f"no received case row for {unknown['case_id'].to_list()[:5]}")
    approved, unpriceable = _priced_approvals(
        rows.filter(pl.col("decision") == APPROVE), reference, history.accumulated
    )
    denied = _denials(rows.filter(pl.col("decision") == DENY))
    decisions = (
        pl.concat([approved, denied], how="diagonal_relaxed")
        .sort(ROW_NUMBER)
        .with_columns(
            pl.lit(REVIEW).alias("decision_source"),
            pl.col("examiner").alias("decided_by"),
        )
        .drop("decision", "reason_code", "examiner", RAW, strict=False)
    )
    rejections = pl.concat([validated.rejections, unpriceable]).sort(ROW_NUMBER)
    return ReviewDecision(rows_in=rows_in, decisions=decisions, rejections=rejections)


def _priced_approvals(
    rows: pl.DataFrame, reference: Reference, accumulated: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APPROVED decisions of the APPROVE rows that can be priced, and the rejections of
    those that cannot (spec §8)."""
    context = adjudication_context(rows, reference)
    problems = pl.concat_list(
        pl.when(~pl.col("covered")).then(pl.lit(NO_SPAN)),
        pl.when(~pl.col("fee_known")).then(pl.lit(NO_FEE)),
    ).list.drop_nulls()
    checked = context.with_columns(problems.alias(ERRORS))
    priceable = checked.filter(pl.col(ERRORS).list.len() == 0)
    unpriceable = checked.filter(pl.col(ERRORS).list.len() > 0).select(list(REJECTION_SCHEMA))
    priced = price(
        priceable.with_columns(pl.lit(APPROVED).alias("status")),
        accumulated,
        order=REVIEW_PRICING_ORDER,
    ).with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("reason_codes"))
    return priced.drop(ERRORS), unpriceable


def _denials(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(
        pl.lit(DENIED).alias("status"),
        pl.concat_list(pl.col("reason_code")).alias("reason_codes"),
        *(pl.lit(0, dtype=pl.Int64).alias(name) for name in AMOUNT_COLUMNS),
    )


def review_statuses(decisions: pl.DataFrame) -> dict[str, int]:
    """Decided rows by status (APPROVED, DENIED)."""
    counts = dict.fromkeys((APPROVED, DENIED), 0)
    for status, n in decisions.group_by("status").len().iter_rows():
        counts[str(status)] = int(n)
    return counts
