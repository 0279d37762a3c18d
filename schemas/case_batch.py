"""Spec §1: the columns of a case batch, validated as text, one error per broken rule."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from schemas.text_checks import (
    cents,
    in_range,
    integer,
    iso_date,
    length_between,
    matches,
    not_empty,
    one_of,
    parses,
)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("prior_auth_id", "claim_frequency", "original_case_id")
CASE_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

CASE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PROCEDURE_CODE_PATTERN = r"^[A-Z0-9]{5}$"
DIAGNOSIS_CODE_PATTERN = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
MAX_BILLED_CENTS = 999_999_999
#: Spec §1, §9: claim_frequency `1` original, `7` replacement, `8` void; empty = `1`.
ORIGINAL, REPLACEMENT, VOID = "1", "7", "8"
CLAIM_FREQUENCIES: tuple[str, ...] = (ORIGINAL, REPLACEMENT, VOID)


def _received_not_before_service() -> pa.Check:
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        received = iso_date(pl.col("received_date"))
        service = iso_date(pl.col("service_date"))
        # Only judged when both dates parse: a bad date is reported on its own column.
        return data.lazyframe.select((received >= service) | received.is_null() | service.is_null())

    return pa.Check(check, error="must not be before service_date", name="not_before_service")


def _required(*checks: pa.Check) -> pa.Column:
    return pa.Column(pl.String, [not_empty(), *checks], nullable=False, required=True)


CASE_BATCH_SCHEMA = pa.DataFrameSchema(
    {
        "case_id": _required(
            matches(CASE_ID_PATTERN, "must be 1 to 64 characters of A-Z a-z 0-9 - _")
        ),
        "member_id": _required(length_between(1, 32)),
        "provider_id": _required(length_between(1, 32)),
        "service_date": _required(parses(iso_date, "must be an ISO date YYYY-MM-DD")),
        "received_date": _required(
            parses(iso_date, "must be an ISO date YYYY-MM-DD"),
            _received_not_before_service(),
        ),
        "procedure_code": _required(
            matches(PROCEDURE_CODE_PATTERN, "must be exactly 5 characters of A-Z 0-9")
        ),
        "diagnosis_code": _required(
            matches(DIAGNOSIS_CODE_PATTERN, "must have the ICD-10 shape (e.g. J45.909)")
        ),
        "units": _required(
            parses(integer, "must be a whole number"),
            in_range(integer, 1, 999, "must be between 1 and 999"),
        ),
        "billed_amount": _required(
            parses(cents, "must be a decimal amount with at most 2 decimal places"),
            in_range(cents, 1, MAX_BILLED_CENTS, "must be > 0 and at most 9,999,999.99"),
        ),
        "prior_auth_id": pa.Column(pl.String, nullable=True, required=False),
        "claim_frequency": pa.Column(
            pl.String,
            [one_of(list(CLAIM_FREQUENCIES), "must be 1 (original), 7 (replacement) or 8 (void)")],
            nullable=True,
            required=False,
        ),
        # Checked with the corrections (claimsflow/core/validation.py): required, and
        # of the case_id shape, only when claim_frequency is 7 or 8 (spec §1, §9).
        "original_case_id": pa.Column(pl.String, nullable=True, required=False),
    },
    name="case_batch",
    strict=False,  # extra columns are ignored (spec §1)
)
