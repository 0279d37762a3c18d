"""Spec §2: reference data (members, providers, fee schedule), loaded and typed.

Invalid reference data stops the run before anything is written: the error
names the file, the row (1-based data row; the header is line 1) and the column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandera.polars as pa
import polars as pl

from claimsflow.csvtext import CsvTextError, first_read_error, read_csv_text
from claimsflow.text import reader_problem
from claimsflow.vocabulary import READ_ERRORS
from schemas.failures import cell_failures
from schemas.reference import FEE_SCHEDULE_SCHEMA, MEMBERS_SCHEMA, PROVIDERS_SCHEMA
from schemas.text_checks import cents, integer, iso_date

MEMBERS_FILE = "members.csv"
PROVIDERS_FILE = "providers.csv"
FEE_SCHEDULE_FILE = "fee_schedule.csv"


class ReferenceDataError(Exception):
    """Reference data that cannot be used; the message names file, row and column."""


@dataclass(frozen=True)
class Reference:
    """Typed reference data.

    members: member_id, coverage_start, coverage_end (null = open), deductible_cents,
        coinsurance_percent, oop_max_cents (null = no maximum) — one row per coverage span.
    providers: provider_id, provider_status, in_network.
    fee_schedule: procedure_code, fee_allowed_cents (per unit), prior_auth_required,
        max_units (null = no limit).
    """

    members: pl.DataFrame
    providers: pl.DataFrame
    fee_schedule: pl.DataFrame


def load_reference(directory: Path) -> Reference:
    """The typed reference data of `directory` (ReferenceDataError if unusable).

    The last folder loaded is kept while its files' bytes are the same (SHA-256):
    `adjudicate run` checks the reference before its flow starts, then the flow's
    task loads it again, and typing 500,000 member spans takes seconds (issue 15);
    hashing them takes milliseconds.
    """
    key = _fingerprint(directory)
    if key is not None and _last_loaded and _last_loaded[0][0] == key:
        return _last_loaded[0][1]
    reference = _load_reference(directory)
    if key is not None:
        _last_loaded[:] = [(key, reference)]
    return reference


#: The last (fingerprint, reference) loaded: at most one.
_last_loaded: list[tuple[tuple[str, ...], Reference]] = []


def _fingerprint(directory: Path) -> tuple[str, ...] | None:
    """The folder and the SHA-256 of each file; None if one cannot be read (the load
    then reports it)."""
    try:
        digests = [
            hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in (MEMBERS_FILE, PROVIDERS_FILE, FEE_SCHEDULE_FILE)
        ]
    except OSError:
        return None
    return (str(directory.resolve()), *digests)


def _load_reference(directory: Path) -> Reference:
    members_text = _read_text_csv(directory / MEMBERS_FILE, MEMBERS_SCHEMA)
    providers_text = _read_text_csv(directory / PROVIDERS_FILE, PROVIDERS_SCHEMA)
    fees_text = _read_text_csv(directory / FEE_SCHEDULE_FILE, FEE_SCHEDULE_SCHEMA)
    reference = Reference(
        members=typed_members(members_text),
        providers=typed_providers(providers_text),
        fee_schedule=typed_fee_schedule(fees_text),
    )
    _check_unique(directory / PROVIDERS_FILE, reference.providers, "provider_id")
    _check_unique(directory / FEE_SCHEDULE_FILE, reference.fee_schedule, "procedure_code")
    _check_spans_do_not_overlap(directory / MEMBERS_FILE, reference.members)
    return reference


def typed_members(text: pl.DataFrame) -> pl.DataFrame:
    return text.select(
        pl.col("row_number"),
        pl.col("member_id"),
        iso_date(pl.col("coverage_start")).alias("coverage_start"),
        iso_date(pl.col("coverage_end")).alias("coverage_end"),
        cents(pl.col("annual_deductible")).alias("deductible_cents"),
        integer(pl.col("coinsurance_percent")).alias("coinsurance_percent"),
        (
            cents(pl.col("oop_max")) if "oop_max" in text.columns else pl.lit(None, dtype=pl.Int64)
        ).alias("oop_max_cents"),
    )


def typed_providers(text: pl.DataFrame) -> pl.DataFrame:
    return text.select(
        pl.col("row_number"),
        pl.col("provider_id"),
        pl.col("status").alias("provider_status"),
        (pl.col("in_network").str.to_lowercase() == "true").alias("in_network"),
    )


def typed_fee_schedule(text: pl.DataFrame) -> pl.DataFrame:
    return text.select(
        pl.col("row_number"),
        pl.col("procedure_code"),
        cents(pl.col("allowed_amount")).alias("fee_allowed_cents"),
        (pl.col("prior_auth_required").str.to_lowercase() == "true").alias("prior_auth_required"),
        integer(pl.col("max_units")).alias("max_units"),
    )


def _read_text_csv(path: Path, schema: pa.DataFrameSchema) -> pl.DataFrame:
    if not path.is_file():
        raise ReferenceDataError(f"{path}: reference file not found")
    try:
        frame = read_csv_text(path.read_bytes())
    except CsvTextError as exc:
        if exc.repeated is not None:
            # Named only if it is one of the file's own columns: a header made of data
            # would name a cell (members.csv holds member ids), and errors are logged.
            if exc.repeated in schema.columns:
                raise ReferenceDataError(
                    f"{path}: column {exc.repeated} appears more than once in the header"
                ) from None
            raise ReferenceDataError(
                f"{path}: the header repeats a column name (field {exc.position})"
            ) from None
        raise ReferenceDataError(f"{path}: {exc}") from None
    except Exception as exc:
        # The reader's error may quote a cell: never shown.
        raise ReferenceDataError(f"{path}: cannot be read as CSV: {reader_problem(exc)}") from exc
    cut = first_read_error(frame)
    if cut is not None:
        row, column, error = cut
        raise ReferenceDataError(f"{path}: row {row}, column {column}: {error}")
    frame = frame.drop(READ_ERRORS, strict=False)
    # Reference files are maintained by hand: surrounding blanks are not meaningful.
    frame = frame.with_columns(pl.all().str.strip_chars())
    missing = [
        name
        for name, column in schema.columns.items()
        if column.required and name not in frame.columns
    ]
    if missing:
        raise ReferenceDataError(f"{path}: missing required column(s): {', '.join(missing)}")
    failures = cell_failures(frame, schema)
    if failures.height:
        first = failures.sort("index").row(0, named=True)
        raise ReferenceDataError(
            f"{path}: row {first['index'] + 1}, column {first['column']}: {first['error']}"
        )
    return frame.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("row_number"))


def _check_unique(path: Path, frame: pl.DataFrame, key: str) -> None:
    first = pl.col("row_number").first().over(key).alias("_first")
    repeated = frame.with_columns(first).filter(pl.col("row_number") != pl.col("_first"))
    if repeated.height:
        row = repeated.sort("row_number").row(0, named=True)
        # Rows, not values: an error is printed and logged (docs/security.md).
        raise ReferenceDataError(
            f"{path}: row {row['row_number']}, column {key}: repeats the {key} of row "
            f"{row['_first']}"
        )


def _check_spans_do_not_overlap(path: Path, members: pl.DataFrame) -> None:
    ordered = members.sort("member_id", "coverage_start", "row_number")
    # Sorted by member, a span's previous span of the same member is the row before it
    # when that row has the same member_id: no window over members (three of them took
    # 2.6 s for 500,000 spans; issue 15).
    same_member = pl.col("member_id") == pl.col("member_id").shift(1)
    previous_end = pl.col("coverage_end").shift(1)
    has_previous = same_member & pl.col("coverage_start").shift(1).is_not_null()
    previous_row = pl.col("row_number").shift(1).alias("_previous")
    overlapping = ordered.with_columns(previous_row).filter(
        has_previous & (previous_end.is_null() | (previous_end >= pl.col("coverage_start")))
    )
    if overlapping.height:
        row = overlapping.row(0, named=True)
        # Rows, not the member id: an error is printed and logged (docs/security.md).
        raise ReferenceDataError(
            f"{path}: row {row['row_number']}, column coverage_start: this coverage span "
            f"overlaps the span of row {row['_previous']} of the same member"
        )
