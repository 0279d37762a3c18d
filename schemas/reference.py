"""Spec §2: reference data schemas (members, providers, fee schedule), validated as text."""

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

BOOLEAN_TEXT = ["true", "false", "TRUE", "FALSE", "True", "False"]


def _required(*checks: pa.Check) -> pa.Column:
    return pa.Column(pl.String, [not_empty(), *checks], nullable=False, required=True)


def _optional(*checks: pa.Check) -> pa.Column:
    return pa.Column(pl.String, list(checks), nullable=True, required=True)


def _optional_column(*checks: pa.Check) -> pa.Column:
    """A column the file may leave out altogether (absent = empty in every row)."""
    return pa.Column(pl.String, list(checks), nullable=True, required=False)


def _span_ends_after_start() -> pa.Check:
    def check(data: pa.PolarsData) -> pl.LazyFrame:
        start = iso_date(pl.col("coverage_start"))
        end = iso_date(pl.col("coverage_end"))
        return data.lazyframe.select(end.is_null() | start.is_null() | (end >= start))

    return pa.Check(check, error="must not be before coverage_start", name="end_after_start")


MEMBERS_SCHEMA = pa.DataFrameSchema(
    {
        "member_id": _required(length_between(1, 32)),
        "coverage_start": _required(parses(iso_date, "must be an ISO date YYYY-MM-DD")),
        "coverage_end": _optional(
            parses(iso_date, "must be an ISO date YYYY-MM-DD or empty"),
            _span_ends_after_start(),
        ),
        "annual_deductible": _required(
            parses(cents, "must be a decimal amount with at most 2 decimal places"),
        ),
        "coinsurance_percent": _required(
            parses(integer, "must be a whole number"),
            in_range(integer, 0, 100, "must be between 0 and 100"),
        ),
        # The span's annual out-of-pocket maximum; empty (or no column) = no maximum.
        "oop_max": _optional_column(
            parses(cents, "must be an amount of 0 or more with at most 2 decimal places or empty"),
        ),
    },
    name="members",
    strict=False,
)

PROVIDERS_SCHEMA = pa.DataFrameSchema(
    {
        "provider_id": _required(length_between(1, 32)),
        "status": _required(one_of(["ACTIVE", "SUSPENDED"], "must be ACTIVE or SUSPENDED")),
        "in_network": _required(one_of(BOOLEAN_TEXT, "must be true or false")),
    },
    name="providers",
    strict=False,
)

FEE_SCHEDULE_SCHEMA = pa.DataFrameSchema(
    {
        "procedure_code": _required(
            matches(r"^[A-Z0-9]{5}$", "must be exactly 5 characters of A-Z 0-9")
        ),
        "allowed_amount": _required(
            parses(cents, "must be a decimal amount with at most 2 decimal places"),
        ),
        "prior_auth_required": _required(one_of(BOOLEAN_TEXT, "must be true or false")),
        "max_units": _optional(parses(integer, "must be a whole number or empty")),
    },
    name="fee_schedule",
    strict=False,
)
