"""Spec §8: the columns of an examiner's review file, validated as text, one error per
broken rule (each naming its column, as for case rows)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.text_checks import length_between, not_empty, one_of

APPROVE, DENY = "APPROVE", "DENY"
REVIEW_DECISIONS: tuple[str, ...] = (APPROVE, DENY)
#: A file without one of these columns is a REJECTED batch (spec §8); `note` may be left out.
REQUIRED_REVIEW_COLUMNS: tuple[str, ...] = ("case_id", "decision", "reason_code", "examiner")
OPTIONAL_REVIEW_COLUMNS: tuple[str, ...] = ("note",)
REVIEW_COLUMNS: tuple[str, ...] = REQUIRED_REVIEW_COLUMNS + OPTIONAL_REVIEW_COLUMNS
#: Spec §8: an X12 claim adjustment group code and a reason code (CO-45, PR-1, OA-23, PI-B7).
REASON_CODE_PATTERN = r"^(CO|PR|OA|PI)-[A-Z0-9]{1,5}$"
MAX_EXAMINER_CHARS = 64

_DECISION = pl.col("decision")
_REASON = pl.col("reason_code")
_GIVEN = _REASON.is_not_null() & (_REASON != "")


def _reason_required_for_deny() -> pa.Check:
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((_DECISION != DENY).fill_null(True) | _GIVEN)

    return pa.Check(check, error="required when decision is DENY", name="required_for_deny")


def _reason_empty_for_approve() -> pa.Check:
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((_DECISION != APPROVE).fill_null(True) | ~_GIVEN)

    return pa.Check(check, error="must be empty when decision is APPROVE", name="empty_for_approve")


def _reason_code_shape() -> pa.Check:
    """Judged on a given code of any row but an APPROVE one (whose code is reported as
    not empty instead): a DENY row, or a row whose decision is itself broken."""

    def check(data: pa.PolarsData) -> pl.LazyFrame:
        judged = _GIVEN & (_DECISION != APPROVE).fill_null(True)
        return data.lazyframe.select(~judged | _REASON.str.contains(REASON_CODE_PATTERN))

    return pa.Check(
        check,
        error="must be CO-, PR-, OA- or PI- and 1 to 5 characters of A-Z 0-9 (e.g. CO-45)",
        name="reason_code_shape",
    )


def _not_blank() -> pa.Check:
    # An examiner of spaces names nobody: the audit trail needs a name.
    return pa.Check(
        lambda data: data.lazyframe.select(
            (pl.col(data.key).str.strip_chars().str.len_chars() > 0) | (pl.col(data.key) == "")
        ),
        error="must not be blank",
        name="not_blank",
    )


REVIEW_SCHEMA = pa.DataFrameSchema(
    {
        # Whether the case exists and is PENDED is judged against the event log
        # (claimsflow/core/review.py); here only that a case is named.
        "case_id": pa.Column(pl.String, [not_empty()], nullable=False, required=True),
        "decision": pa.Column(
            pl.String,
            [not_empty(), one_of(list(REVIEW_DECISIONS), "must be APPROVE or DENY")],
            nullable=False,
            required=True,
        ),
        "reason_code": pa.Column(
            pl.String,
            [_reason_required_for_deny(), _reason_empty_for_approve(), _reason_code_shape()],
            nullable=True,
            required=True,
        ),
        "examiner": pa.Column(
            pl.String,
            [
                not_empty(),
                length_between(1, MAX_EXAMINER_CHARS),
                _not_blank(),
            ],
            nullable=False,
            required=True,
        ),
        "note": pa.Column(pl.String, nullable=True, required=False),
    },
    name="review_file",
    strict=False,  # extra columns are ignored (kept in the raw copy of a rejected row)
)
