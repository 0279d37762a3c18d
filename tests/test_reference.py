"""Spec §2 reference data: loading and typing, and errors naming file, row and column."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.reference import ReferenceDataError, load_reference
from tests.batch_helpers import (
    FEE_SCHEDULE_CSV,
    MEMBERS_CSV,
    PROVIDERS_CSV,
    write_reference,
)

MEMBERS_HEADER = "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent\n"
PROVIDERS_HEADER = "provider_id,status,in_network\n"
FEES_HEADER = "procedure_code,allowed_amount,prior_auth_required,max_units\n"


def load_error(tmp_path: Path, **overrides: str) -> str:
    directory = write_reference(tmp_path / "ref", **overrides)
    with pytest.raises(ReferenceDataError) as caught:
        load_reference(directory)
    message = str(caught.value)
    assert "\n" not in message.strip(), "one line"
    return message


def assert_names(message: str, file: str, row: int | None, column: str | None) -> None:
    assert file in message, message
    if row is not None:
        assert re.search(rf"\brow {row}\b", message), message
    if column is not None:
        assert column in message, message


# --- a good reference set loads and is typed ------------------------------------------


def test_a_reference_loaded_again_unchanged_is_not_parsed_again(tmp_path: Path) -> None:
    # `adjudicate run` checks the reference, then its flow loads it: the second load
    # returns the first one's frames while the bytes are the same.
    directory = write_reference(tmp_path / "ref")
    first = load_reference(directory)
    assert load_reference(directory) is first
    # The same size and (within the file system's clock tick) the same mtime: only the
    # bytes tell the change, and they are what is compared.
    (directory / "members.csv").write_text(MEMBERS_CSV.replace("500.00,20", "500.00,30"))
    changed = load_reference(directory)
    assert changed is not first
    assert changed.members.sort("member_id")["coinsurance_percent"].to_list()[0] == 30
    # A copy in another folder is loaded from its own files.
    other = write_reference(tmp_path / "other")
    assert load_reference(other) is not changed


def test_fixture_reference_loads_typed(reference_dir: Path) -> None:
    reference = load_reference(reference_dir)
    members = reference.members.sort("member_id", "coverage_start")
    assert members["member_id"].to_list() == ["M001", "M002", "M002"]
    assert members["coverage_start"].to_list() == [
        dt.date(2024, 1, 1),
        dt.date(2023, 1, 1),
        dt.date(2024, 3, 1),
    ]
    assert members["coverage_end"].to_list() == [None, dt.date(2023, 12, 31), None]
    assert members["deductible_cents"].to_list() == [50000, 0, 25000]
    assert members["coinsurance_percent"].to_list() == [20, 10, 0]
    providers = reference.providers.sort("provider_id")
    assert providers["provider_status"].to_list() == ["ACTIVE", "SUSPENDED", "ACTIVE"]
    assert providers["in_network"].to_list() == [True, True, False]
    fees = reference.fee_schedule.sort("procedure_code")
    assert fees["procedure_code"].to_list() == ["99213", "99214", "J1100"]
    assert fees["fee_allowed_cents"].to_list() == [10000, 15000, 1250]
    assert fees["prior_auth_required"].to_list() == [False, True, False]
    assert fees["max_units"].to_list() == [4, None, None]


def test_adjacent_spans_do_not_overlap(tmp_path: Path) -> None:
    members = MEMBERS_HEADER + "M1,2023-01-01,2023-12-31,0,0\nM1,2024-01-01,,0,0\n"
    reference = load_reference(write_reference(tmp_path / "ref", members=members))
    assert reference.members.height == 2


def test_header_only_reference_files_load_empty(tmp_path: Path) -> None:
    directory = write_reference(
        tmp_path / "ref",
        members=MEMBERS_HEADER,
        providers=PROVIDERS_HEADER,
        fee_schedule=FEES_HEADER,
    )
    reference = load_reference(directory)
    assert (reference.members.height, reference.providers.height) == (0, 0)
    assert reference.fee_schedule.height == 0


def test_coinsurance_bounds_0_and_100_are_valid(tmp_path: Path) -> None:
    members = MEMBERS_HEADER + "M1,2024-01-01,,0,0\nM2,2024-01-01,,0.50,100\n"
    reference = load_reference(write_reference(tmp_path / "ref", members=members))
    assert sorted(reference.members["coinsurance_percent"].to_list()) == [0, 100]


def test_oop_max_is_optional_and_typed_in_cents(tmp_path: Path) -> None:
    # Without the column (the fixture's members.csv): no span has a maximum.
    reference = load_reference(write_reference(tmp_path / "without"))
    assert reference.members.schema["oop_max_cents"] == pl.Int64
    assert reference.members["oop_max_cents"].to_list() == [None, None, None]
    # With it: 1500.00 -> 150000 cents, 0 -> 0 (a maximum of nothing), empty -> none,
    # 12.5 -> 1250, " 7.05 " (blanks around it) -> 705.
    members = (
        MEMBERS_HEADER.replace("\n", ",oop_max\n")
        + "M1,2024-01-01,,0,0,1500.00\n"
        + "M2,2024-01-01,,0,0,0\n"
        + "M3,2024-01-01,,0,0,\n"
        + "M4,2024-01-01,,0,0,12.5\n"
        + "M5,2024-01-01,,0,0, 7.05 \n"
    )
    reference = load_reference(write_reference(tmp_path / "with", members=members))
    assert reference.members.sort("member_id")["oop_max_cents"].to_list() == [
        150_000,
        0,
        None,
        1_250,
        705,
    ]


@pytest.mark.parametrize("value", ["-1.00", "abc", "12.345", "1,000.00", "1e3"])
def test_bad_oop_max(tmp_path: Path, value: str) -> None:
    members = MEMBERS_HEADER.replace("\n", ",oop_max\n") + (
        "M1,2024-01-01,,0,0,100.00\n"  # row 1 is fine
        f'M2,2024-01-01,,0,0,"{value}"\n'  # row 2 is not
    )
    message = load_error(tmp_path, members=members)
    assert_names(message, "members.csv", 2, "oop_max")
    assert "0 or more" in message


# --- invalid reference data -------------------------------------------------------------


def test_bad_coverage_date(tmp_path: Path) -> None:
    members = MEMBERS_CSV.replace("M002,2024-03-01", "M002,2024-02-30")
    message = load_error(tmp_path, members=members)
    assert_names(message, "members.csv", 3, "coverage_start")


def test_bad_coverage_end_date(tmp_path: Path) -> None:
    members = MEMBERS_CSV.replace("2023-12-31", "31/12/2023")
    assert_names(load_error(tmp_path, members=members), "members.csv", 2, "coverage_end")


def test_coverage_end_before_start(tmp_path: Path) -> None:
    members = MEMBERS_CSV.replace("2023-12-31", "2022-12-31")
    assert_names(load_error(tmp_path, members=members), "members.csv", 2, "coverage_end")


@pytest.mark.parametrize("value", ["101", "-1", "20.5", "abc", ""])
def test_bad_coinsurance_percent(tmp_path: Path, value: str) -> None:
    members = MEMBERS_CSV.replace(",500.00,20", f",500.00,{value}")
    assert_names(load_error(tmp_path, members=members), "members.csv", 1, "coinsurance_percent")


@pytest.mark.parametrize("value", ["500.001", "-5.00", "abc", ""])
def test_bad_annual_deductible(tmp_path: Path, value: str) -> None:
    members = MEMBERS_CSV.replace(",0.00,10", f",{value},10")
    assert_names(load_error(tmp_path, members=members), "members.csv", 2, "annual_deductible")


def test_missing_member_id(tmp_path: Path) -> None:
    members = MEMBERS_CSV.replace("M001,", ",", 1)
    assert_names(load_error(tmp_path, members=members), "members.csv", 1, "member_id")


@pytest.mark.parametrize("value", ["PAUSED", "active", ""])
def test_bad_provider_status(tmp_path: Path, value: str) -> None:
    providers = PROVIDERS_CSV.replace("P002,SUSPENDED", f"P002,{value}")
    assert_names(load_error(tmp_path, providers=providers), "providers.csv", 2, "status")


@pytest.mark.parametrize("value", ["yes", "1", "Y", ""])
def test_bad_in_network(tmp_path: Path, value: str) -> None:
    providers = PROVIDERS_CSV.replace("P003,ACTIVE,false", f"P003,ACTIVE,{value}")
    assert_names(load_error(tmp_path, providers=providers), "providers.csv", 3, "in_network")


def test_duplicate_provider_id(tmp_path: Path) -> None:
    providers = PROVIDERS_CSV + "P001,ACTIVE,false\n"
    message = load_error(tmp_path, providers=providers)
    assert_names(message, "providers.csv", 4, "provider_id")
    # The rows, not the value: errors are printed and logged (docs/security.md).
    assert message.endswith("repeats the provider_id of row 1")
    assert "P001" not in message


def test_duplicate_procedure_code(tmp_path: Path) -> None:
    fees = FEE_SCHEDULE_CSV + "99213,1.00,false,\n"
    assert_names(load_error(tmp_path, fee_schedule=fees), "fee_schedule.csv", 4, "procedure_code")


def test_bad_fee_schedule_values(tmp_path: Path) -> None:
    cases = [
        (FEE_SCHEDULE_CSV.replace("100.00", "abc"), 1, "allowed_amount"),
        (FEE_SCHEDULE_CSV.replace("150.00,true", "150.00,yes"), 2, "prior_auth_required"),
        (FEE_SCHEDULE_CSV.replace("false,4", "false,four"), 1, "max_units"),
        (FEE_SCHEDULE_CSV.replace("J1100", "J110"), 3, "procedure_code"),
    ]
    for number, (text, row, column) in enumerate(cases):
        directory = write_reference(tmp_path / f"ref{number}", fee_schedule=text)
        with pytest.raises(ReferenceDataError) as caught:
            load_reference(directory)
        assert_names(str(caught.value), "fee_schedule.csv", row, column)


def test_overlapping_spans_of_one_member(tmp_path: Path) -> None:
    # M001 has an open span from 2024-01-01 (row 1); row 4 starts inside it.
    members = MEMBERS_CSV + "M001,2024-06-01,2024-12-31,0.00,0\n"
    message = load_error(tmp_path, members=members)
    assert_names(message, "members.csv", 4, "coverage_start")
    # The other span's row, never the member id (personal data; errors are logged).
    assert message.endswith("overlaps the span of row 1 of the same member")
    assert "M001" not in message


def test_overlap_on_a_shared_boundary_day(tmp_path: Path) -> None:
    # Both ends are inclusive: a span starting on the day another ends overlaps it.
    members = MEMBERS_HEADER + "M1,2023-01-01,2023-12-31,0,0\nM1,2023-12-31,,0,0\n"
    assert_names(load_error(tmp_path, members=members), "members.csv", 2, "coverage_start")


def test_overlap_listed_out_of_date_order_names_an_overlapping_row(tmp_path: Path) -> None:
    members = MEMBERS_HEADER + (
        "M1,2024-01-01,,0,0\n"  # row 1
        "M2,2020-01-01,,0,0\n"  # row 2 (other member, no overlap)
        "M1,2023-06-01,2024-02-01,0,0\n"  # row 3 overlaps row 1
    )
    message = load_error(tmp_path, members=members)
    assert "members.csv" in message and "coverage_" in message and "M1" not in message
    assert re.search(r"\brow [13]\b.*\brow [13]\b", message), message


def test_spans_of_different_members_may_overlap(tmp_path: Path) -> None:
    members = MEMBERS_HEADER + "M1,2024-01-01,,0,0\nM2,2024-01-01,,0,0\n"
    assert load_reference(write_reference(tmp_path / "ref", members=members)).members.height == 2


@pytest.mark.parametrize("name", ["members.csv", "providers.csv", "fee_schedule.csv"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    directory = write_reference(tmp_path / "ref")
    (directory / name).unlink()
    with pytest.raises(ReferenceDataError, match=re.escape(name)):
        load_reference(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match=r"members\.csv"):
        load_reference(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("stem", "text", "file", "column"),
    [
        (
            "members",
            MEMBERS_CSV.replace("coinsurance_percent", "coins"),
            "members.csv",
            "coinsurance_percent",
        ),
        (
            "providers",
            PROVIDERS_CSV.replace("in_network", "network"),
            "providers.csv",
            "in_network",
        ),
        (
            "fee_schedule",
            FEE_SCHEDULE_CSV.replace("max_units", "Max_Units"),
            "fee_schedule.csv",
            "max_units",
        ),
    ],
)
def test_missing_column(tmp_path: Path, stem: str, text: str, file: str, column: str) -> None:
    message = load_error(tmp_path, **{stem: text})
    assert_names(message, file, None, column)
    assert "missing" in message


def test_empty_reference_file(tmp_path: Path) -> None:
    assert "providers.csv" in load_error(tmp_path, providers="")


def test_ragged_reference_file(tmp_path: Path) -> None:
    assert "providers.csv" in load_error(tmp_path, providers=PROVIDERS_CSV + "P9,ACTIVE,true,x\n")


def test_first_bad_row_is_the_one_named(tmp_path: Path) -> None:
    providers = PROVIDERS_HEADER + "P1,ACTIVE,true\nP2,ACTIVE,maybe\nP3,PAUSED,true\n"
    assert_names(load_error(tmp_path, providers=providers), "providers.csv", 2, "in_network")
