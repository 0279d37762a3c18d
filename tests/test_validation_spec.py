"""Spec §1 column rules and §3 rejection, with hand-written failing and passing values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.history import MemoryHistory, as_status_frame
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import ValidatedBatch, validate_batch
from claimsflow.ingest.reading import read_batch_bytes
from claimsflow.pipeline.batch import RunContext, decide_batch, process_batch
from tests.batch_helpers import REQUIRED_HEADER, case_row, csv_bytes, write_csv


def validate(rows: Sequence[dict[str, str]], decided: Sequence[str] = ()) -> ValidatedBatch:
    raw = read_batch_bytes(csv_bytes(rows), "csv")
    return validate_batch(raw, as_status_frame(decided, ["APPROVED"] * len(decided)))


def errors_by_row(result: ValidatedBatch) -> dict[int, list[str]]:
    return {
        int(r["row_number"]): list(r["errors"]) for r in result.rejections.iter_rows(named=True)
    }


def columns_named(errors: Sequence[str]) -> list[str]:
    return [e.split(":", 1)[0] for e in errors]


def check_value(column: str, value: str, ok: bool, **others: str) -> None:
    """One row with `column` set to `value`: valid iff `ok`; if not, errors name `column`."""
    row = case_row("C1", **others)
    row[column] = value
    result = validate([row])
    if ok:
        assert result.rejections.height == 0, errors_by_row(result)
        assert result.cases.height == 1
        return
    assert result.cases.height == 0, f"{column}={value!r} should be rejected"
    errors = errors_by_row(result)[1]
    assert errors, "a rejected row carries at least one error"
    assert all(": " in e for e in errors)
    assert columns_named(errors) == [column] * len(errors), errors


# --- one rule at a time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("C", True),
        ("abc-DEF_123", True),
        ("A" * 64, True),
        ("A" * 65, False),
        ("", False),
        ("C 1", False),
        ("C.1", False),
        ("C/1", False),
        ("Ç1", False),
        ("C1\t", False),
    ],
)
def test_case_id(value: str, ok: bool) -> None:
    check_value("case_id", value, ok)


@pytest.mark.parametrize("column", ["member_id", "provider_id"])
@pytest.mark.parametrize(
    ("value", "ok"),
    [("X", True), ("X" * 32, True), ("X" * 33, False), ("", False)],
)
def test_member_and_provider_id_length(column: str, value: str, ok: bool) -> None:
    check_value(column, value, ok)


@pytest.mark.parametrize("column", ["service_date", "received_date"])
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024-05-01", True),
        ("2024-02-30", False),
        ("2024-2-1", False),
        ("2023-02-29", False),
        ("2024/05/01", False),
        ("01-05-2024", False),
        ("2024-05-01T00:00:00", False),
        ("20240501", False),
        ("", False),
    ],
)
def test_dates_are_iso_calendar_days(column: str, value: str, ok: bool) -> None:
    # Keep the other date equal so that only the date under test can be wrong.
    other = "received_date" if column == "service_date" else "service_date"
    check_value(column, value, ok, **{other: "2024-05-01"})


def test_leap_day_is_a_date() -> None:
    check_value("service_date", "2024-02-29", True, received_date="2024-03-01")


@pytest.mark.parametrize(
    ("service", "received", "ok"),
    [
        ("2024-05-01", "2024-05-01", True),
        ("2024-05-01", "2024-05-02", True),
        ("2024-05-01", "2024-04-30", False),
        ("2024-01-01", "2023-12-31", False),
    ],
)
def test_received_date_not_before_service_date(service: str, received: str, ok: bool) -> None:
    # The error belongs to received_date, not to service_date.
    check_value("received_date", received, ok, service_date=service)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("99213", True),
        ("J1100", True),
        ("A4550", True),
        ("9921", False),
        ("992130", False),
        ("j1100", False),
        ("99 13", False),
        ("99-13", False),
        ("", False),
    ],
)
def test_procedure_code_shape(value: str, ok: bool) -> None:
    check_value("procedure_code", value, ok)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("J45", True),
        ("J45.9", True),
        ("J45.909", True),
        ("J45.1234", True),
        ("Z00.00", True),
        ("A1B.C2", True),
        ("I10", True),
        ("J4", False),
        ("j45", False),
        ("J45.12345", False),
        ("J45.", False),
        ("145", False),
        ("JA5", False),
        ("J45 9", False),
        ("J45.9a", False),
        ("", False),
    ],
)
def test_diagnosis_code_icd10_shape(value: str, ok: bool) -> None:
    check_value("diagnosis_code", value, ok)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1", True),
        ("4", True),
        ("999", True),
        ("0", False),
        ("1000", False),
        ("1.5", False),
        ("-1", False),
        ("abc", False),
        ("", False),
    ],
)
def test_units_whole_number_1_to_999(value: str, ok: bool) -> None:
    check_value("units", value, ok)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0", False),
        ("0.00", False),
        ("0.01", True),
        ("125", True),
        ("125.5", True),
        ("125.50", True),
        ("9999999.99", True),
        ("10000000.00", False),
        ("10000000", False),
        ("12.345", False),
        ("-5", False),
        ("abc", False),
        ("1,000.00", False),
        ("1e3", False),
        ("", False),
    ],
)
def test_billed_amount(value: str, ok: bool) -> None:
    check_value("billed_amount", value, ok)


@pytest.mark.parametrize(
    ("value", "cents"),
    [("0.01", 1), ("125", 12500), ("125.5", 12550), ("125.50", 12550), ("9999999.99", 999999999)],
)
def test_billed_amount_becomes_integer_cents(value: str, cents: int) -> None:
    result = validate([case_row("C1", billed_amount=value)])
    assert result.cases.schema["billed_cents"] == pl.Int64
    assert result.cases["billed_cents"].to_list() == [cents]


@pytest.mark.parametrize("value", ["", "PA-1"])
def test_prior_auth_id_is_optional(value: str) -> None:
    check_value("prior_auth_id", value, True)


def test_empty_prior_auth_id_counts_as_missing() -> None:
    result = validate([case_row("C1", prior_auth_id=""), case_row("C2", prior_auth_id="PA-9")])
    assert result.cases["prior_auth_id"].to_list() == [None, "PA-9"]


def test_empty_prior_auth_id_is_missing_for_the_prior_auth_rule(
    reference: Reference, ruleset_v1: RuleSet
) -> None:
    # 99214 requires prior authorisation (fixture fee schedule).
    rows = [
        case_row("C1", procedure_code="99214", prior_auth_id=""),
        case_row("C2", procedure_code="99214", prior_auth_id="PA-9", member_id="M002"),
    ]
    raw = read_batch_bytes(csv_bytes(rows), "csv")
    decided = decide_batch(raw, reference, ruleset_v1, MemoryHistory())
    by_case = {r["case_id"]: r for r in decided.decisions.iter_rows(named=True)}
    assert by_case["C1"]["status"] == "DENIED"
    assert "CO-197" in by_case["C1"]["reason_codes"]
    assert "CO-197" not in by_case["C2"]["reason_codes"]


def test_missing_prior_auth_column_counts_as_missing(
    reference: Reference, ruleset_v1: RuleSet
) -> None:
    rows = [case_row("C1", procedure_code="99214")]
    raw = read_batch_bytes(csv_bytes(rows, REQUIRED_HEADER), "csv")
    decided = decide_batch(raw, reference, ruleset_v1, MemoryHistory())
    assert decided.decisions["reason_codes"].to_list() == [["CO-197"]]


def test_extra_columns_are_ignored_but_kept_in_raw() -> None:
    result = validate([case_row("C1", note="ok"), case_row("C2", units="0", note="why")])
    assert result.cases["case_id"].to_list() == ["C1"]
    raw = json.loads(result.rejections["raw"][0])
    assert raw["note"] == "why"
    assert raw["units"] == "0"


# --- errors of a row ------------------------------------------------------------------


def test_a_row_with_several_errors_lists_them_all() -> None:
    row = case_row(
        "C 1",
        member_id="",
        provider_id="P" * 33,
        service_date="2024-02-30",
        procedure_code="9921",
        diagnosis_code="j45",
        units="0",
        billed_amount="12.345",
    )
    errors = errors_by_row(validate([row]))[1]
    assert sorted(columns_named(errors)) == sorted(
        [
            "case_id",
            "member_id",
            "provider_id",
            "service_date",
            "procedure_code",
            "diagnosis_code",
            "units",
            "billed_amount",
        ]
    )
    assert all(e.split(":", 1)[1].strip() for e in errors), "each error says what is wrong"


def test_received_before_service_and_other_errors_are_all_listed() -> None:
    row = case_row("C1", service_date="2024-05-02", received_date="2024-05-01", units="1000")
    errors = errors_by_row(validate([row]))[1]
    assert sorted(columns_named(errors)) == ["received_date", "units"]


def test_bad_service_date_does_not_also_blame_received_date() -> None:
    errors = errors_by_row(validate([case_row("C1", service_date="2024-13-01")]))[1]
    assert columns_named(errors) == ["service_date"]


def test_valid_and_invalid_rows_of_one_batch_are_split() -> None:
    rows = [
        case_row("C1"),
        case_row("C2", units="0"),
        case_row("C3", billed_amount="abc"),
        case_row("C4"),
    ]
    result = validate(rows)
    assert result.cases["case_id"].to_list() == ["C1", "C4"]
    assert result.rejections["case_id"].to_list() == ["C2", "C3"]
    assert result.rejections["row_number"].to_list() == [2, 3]
    assert columns_named(errors_by_row(result)[2]) == ["units"]
    assert columns_named(errors_by_row(result)[3]) == ["billed_amount"]


def test_units_range_is_checked_even_when_another_row_has_non_integer_units() -> None:
    rows = [case_row("C1", units="1.5"), case_row("C2", units="1000"), case_row("C3", units="0")]
    result = validate(rows)
    assert result.cases.height == 0
    errors = errors_by_row(result)
    assert columns_named(errors[2]) == ["units"]
    assert columns_named(errors[3]) == ["units"]


def test_billed_range_is_checked_even_when_another_row_has_a_huge_amount() -> None:
    rows = [
        case_row("C1", billed_amount="99999999999999999999"),
        case_row("C2", billed_amount="0"),
        case_row("C3", billed_amount="10000000.00"),
    ]
    result = validate(rows)
    assert result.cases.height == 0
    errors = errors_by_row(result)
    assert columns_named(errors[2]) == ["billed_amount"]
    assert columns_named(errors[3]) == ["billed_amount"]


def test_each_rule_holds_in_a_batch_mixing_every_kind_of_error() -> None:
    # One row per broken rule, all in one batch (no non-numeric units/huge amounts,
    # which are covered by the xfail tests above), plus two valid rows.
    cases = {
        "R01": ("case_id", case_row("R 01")),
        "R02": ("member_id", case_row("R02", member_id="M" * 33)),
        "R03": ("provider_id", case_row("R03", provider_id="")),
        "R04": ("service_date", case_row("R04", service_date="2024-2-1")),
        "R05": ("received_date", case_row("R05", received_date="2024-04-01")),
        "R06": ("procedure_code", case_row("R06", procedure_code="9921")),
        "R07": ("diagnosis_code", case_row("R07", diagnosis_code="J45.12345")),
        "R08": ("units", case_row("R08", units="1000")),
        "R09": ("units", case_row("R09", units="0")),
        "R10": ("billed_amount", case_row("R10", billed_amount="10000000.00")),
        "R11": ("billed_amount", case_row("R11", billed_amount="0")),
        "R12": ("billed_amount", case_row("R12", billed_amount="12.345")),
    }
    rows = [case_row("OK1"), *(row for _, row in cases.values()), case_row("OK2")]
    result = validate(rows)
    assert result.cases["case_id"].to_list() == ["OK1", "OK2"]
    errors = errors_by_row(result)
    for number, (column, _row) in enumerate(cases.values(), start=2):
        assert columns_named(errors[number]) == [column], (number, errors[number])


def test_jsonl_row_without_case_id_is_rejected_with_a_null_case_id() -> None:
    first = json.dumps(case_row("C1"))
    second = json.dumps({k: v for k, v in case_row("C2").items() if k != "case_id"})
    raw = read_batch_bytes(f"{first}\n{second}\n".encode(), "jsonl")
    result = validate_batch(raw)
    assert result.cases["case_id"].to_list() == ["C1"]
    assert result.rejections["case_id"].to_list() == [None]
    assert columns_named(result.rejections["errors"][0].to_list()) == ["case_id"]


# --- case_id identity ---------------------------------------------------------------


def test_first_row_of_a_case_id_wins_and_later_rows_are_rejected() -> None:
    rows = [
        case_row("C1"),
        case_row("C2"),
        case_row("C1", billed_amount="99.00"),
        case_row("C1", units="0"),
    ]
    result = validate(rows)
    assert result.cases["case_id"].to_list() == ["C1", "C2"]
    assert result.cases["billed_cents"].to_list() == [8000, 8000]
    errors = errors_by_row(result)
    assert set(errors) == {3, 4}
    assert columns_named(errors[3]) == ["case_id"]
    assert "case_id" in columns_named(errors[4])
    assert "units" in columns_named(errors[4])


def test_first_row_of_a_case_id_is_the_one_processed_even_if_invalid() -> None:
    rows = [case_row("C1", units="0"), case_row("C1"), case_row("C1", member_id="M002")]
    result = validate(rows)
    assert result.cases.height == 0
    errors = errors_by_row(result)
    assert columns_named(errors[1]) == ["units"], "the first row is judged on its own merits"
    assert columns_named(errors[2]) == ["case_id"]
    assert columns_named(errors[3]) == ["case_id"]


def test_resubmitted_case_id_is_rejected_on_case_id() -> None:
    result = validate([case_row("C1"), case_row("C2")], decided=["C1", "OTHER"])
    assert result.cases["case_id"].to_list() == ["C2"]
    assert columns_named(errors_by_row(result)[1]) == ["case_id"]


def test_resubmission_across_batches(tmp_path: Path, run_context: RunContext) -> None:
    first = write_csv(tmp_path / "a.csv", [case_row("C1"), case_row("C2", units="0")])
    second = write_csv(
        tmp_path / "b.csv",
        [case_row("C1", billed_amount="90.00"), case_row("C2"), case_row("C3")],
    )
    outcome_a = process_batch(first, run_context)
    outcome_b = process_batch(second, run_context)
    assert (outcome_a.rows_decided, outcome_a.rows_rejected) == (1, 1)
    # C1 was decided in a.csv: a resubmission. C2 was only rejected there, so it is new.
    assert (outcome_b.rows_decided, outcome_b.rows_rejected) == (2, 1)
    assert isinstance(run_context.lake, Path)  # the fixture's lake is a local folder
    rejections = pl.read_parquet(
        run_context.lake / "events" / "batches" / outcome_b.batch_id / "rejections.parquet"
    )
    assert rejections["case_id"].to_list() == ["C1"]
    assert columns_named(rejections["errors"][0].to_list()) == ["case_id"]


def test_resubmission_seen_by_history_rebuilt_from_the_lake(
    tmp_path: Path, run_context: RunContext
) -> None:
    process_batch(write_csv(tmp_path / "a.csv", [case_row("C1")]), run_context)
    again = write_csv(tmp_path / "b.csv", [case_row("C2"), case_row("C1")])
    outcome = process_batch(again, run_context)
    assert (outcome.rows_decided, outcome.rows_rejected) == (1, 1)


# --- nothing is lost ------------------------------------------------------------------


def test_rows_in_equals_decided_plus_rejected(reference: Reference, ruleset_v1: RuleSet) -> None:
    rows = [
        case_row("C1"),
        case_row("C2", member_id="UNKNOWN"),
        case_row("C3", units="0"),
        case_row("C1"),
        case_row("C4", billed_amount="20000.00"),
        case_row("C5", diagnosis_code="j45"),
        case_row("C6", provider_id="P002"),
    ]
    raw = read_batch_bytes(csv_bytes(rows), "csv")
    # C6 has a decision from an earlier batch (only its case_id matters here).
    history = MemoryHistory.of(pl.DataFrame({"case_id": ["C6"], "status": ["DENIED"]}))
    decided = decide_batch(raw, reference, ruleset_v1, history)
    assert decided.rows_in == len(rows)
    assert decided.decisions.height + decided.rejections.height == len(rows)
    assert sorted(decided.decisions["case_id"].to_list()) == ["C1", "C2", "C4"]
    assert sorted(decided.rejections["row_number"].to_list()) == [3, 4, 6, 7]


def test_every_row_number_is_decided_or_rejected_exactly_once(
    reference: Reference, ruleset_v1: RuleSet
) -> None:
    rows = [case_row(f"C{i}", units=str(i % 5)) for i in range(30)]
    rows += [case_row("C3"), case_row("C7", billed_amount="1.001")]
    raw = read_batch_bytes(csv_bytes(rows), "csv")
    decided = decide_batch(raw, reference, ruleset_v1, MemoryHistory())
    case_rows = decided.cases["row_number"].to_list()
    rejected_rows = decided.rejections["row_number"].to_list()
    assert sorted(case_rows + rejected_rows) == list(range(1, len(rows) + 1))
    assert decided.decisions.height == len(case_rows)
