"""What-if simulation (claimsflow.analysis.whatif) against hand-computed expectations.

A small history is recorded with rule set v1 (high-dollar review above 10,000.00),
then the cases received in April 2024 are replayed through the draft v2 (review
above 5,000.00). Reference (written below):
  M001: open span from 2024-01-01, deductible 100.00, coinsurance 20 %.
  M002: open span from 2024-01-01, no deductible, coinsurance 10 %.
  P001: active, in network. 99213: 100.00/unit, max 4. J9035: 8,000.00/unit.

Batches, in processing order (v1 decisions, then v2):
  b1 (before the window)
    A1 M001 99213 80.00, svc 03-01, rcv 03-05   APPROVED: deductible 80.00, paid 0
  b2
    C1 M001 J9035 6,000.00 svc 04-01 rcv 04-03  v1 APPROVED: ded 20.00 (100 - 80),
       coins (6,000 - 20) x 20 % = 1,196.00, paid 4,784.00 | v2 PENDED, paid 0
    C2 M001 99213 90.00 svc 04-10 rcv 04-12     v1 APPROVED: ded 0 (C1 took the rest),
       coins 18.00, paid 72.00 | v2 APPROVED: C1 pended takes no deductible, so
       ded 20.00, coins (90 - 20) x 20 % = 14.00, paid 56.00
    C3 M002 J9035 12,000.00 (2 units)          PENDED under both
    C4 M002 99213 50.00                         APPROVED under both: coins 5.00, paid 45.00
  b3
    D1 M001 J9035 6,000.00 svc 04-01 rcv 04-20  same key as C1, which was APPROVED
       (v1) or PENDED (v2) in an earlier batch: DENIED [CO-18] | [CO-18, P-HIGH-DOLLAR]
    D2 M002 J9035 5,500.00 svc 04-15 rcv 04-20  v1 APPROVED: coins 550.00, paid 4,950.00
       | v2 PENDED
  b4 (after the window)
    E1 M001 99213 70.00 rcv 05-02                 not replayed
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import polars as pl
import pytest

from claimsflow.analysis.whatif import (
    WhatIfError,
    as_text_batch,
    plan_replay,
    recorded_cases,
    simulate,
    write_report,
)
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import RunContext, process_batch
from claimsflow.settings import RULES_DIR
from claimsflow.vocabulary import REJECTED

HEADER = (
    "case_id,member_id,provider_id,service_date,received_date,procedure_code,"
    "diagnosis_code,units,billed_amount,prior_auth_id"
)
APRIL = (dt.date(2024, 4, 1), dt.date(2024, 4, 30))


def _row(case_id: str, member: str, svc: str, rcv: str, code: str, units: int, billed: str) -> str:
    return f"{case_id},{member},P001,{svc},{rcv},{code},J45.909,{units},{billed},"


BATCHES = {
    "b1.csv": [_row("A1", "M001", "2024-03-01", "2024-03-05", "99213", 1, "80.00")],
    "b2.csv": [
        _row("C1", "M001", "2024-04-01", "2024-04-03", "J9035", 1, "6000.00"),
        _row("C2", "M001", "2024-04-10", "2024-04-12", "99213", 1, "90.00"),
        _row("C3", "M002", "2024-04-02", "2024-04-04", "J9035", 2, "12000.00"),
        _row("C4", "M002", "2024-04-05", "2024-04-06", "99213", 1, "50.00"),
    ],
    "b3.csv": [
        _row("D1", "M001", "2024-04-01", "2024-04-20", "J9035", 1, "6000.00"),
        _row("D2", "M002", "2024-04-15", "2024-04-20", "J9035", 1, "5500.00"),
    ],
    "b4.csv": [_row("E1", "M001", "2024-04-20", "2024-05-02", "99213", 1, "70.00")],
}


def _write_reference(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "members.csv").write_text(
        "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent\n"
        "M001,2024-01-01,,100.00,20\n"
        "M002,2024-01-01,,0.00,10\n"
    )
    (folder / "providers.csv").write_text("provider_id,status,in_network\nP001,ACTIVE,true\n")
    (folder / "fee_schedule.csv").write_text(
        "procedure_code,allowed_amount,prior_auth_required,max_units\n"
        "99213,100.00,false,4\n"
        "J9035,8000.00,false,\n"
    )
    return folder


@pytest.fixture(scope="module")
def v1() -> RuleSet:
    return load_ruleset(RULES_DIR / "claims-standard-v1.yaml")


@pytest.fixture(scope="module")
def v2() -> RuleSet:
    return load_ruleset(RULES_DIR / "claims-standard-v2.yaml")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_reference(tmp_path_factory.mktemp("ref") / "reference")


@pytest.fixture(scope="module")
def reference(reference_dir: Path) -> Reference:
    return load_reference(reference_dir)


def _record(
    lake: Path, reference: Reference, ruleset: RuleSet, batches: dict[str, list[str]]
) -> None:
    """Record the batches in name order as the nightly run would (no Prefect)."""
    ticks = itertools.count()
    start = dt.datetime(2024, 6, 1, 2, 0, tzinfo=dt.UTC)
    run = RunContext(
        lake, reference, ruleset, "run-1", lambda: start + dt.timedelta(seconds=next(ticks))
    )
    eventlog.ensure_lake(lake)
    inbox = lake.parent / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, rows in sorted(batches.items()):
        path = inbox / name
        path.write_text("\n".join([HEADER, *rows]) + "\n")
        _outcome = process_batch(path, run)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, reference: Reference, v1: RuleSet) -> Path:
    folder = tmp_path_factory.mktemp("whatif") / "lake"
    _record(folder, reference, v1, BATCHES)
    return folder


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_v2_on_april_matches_the_hand_computation(
    lake: Path, reference: Reference, v2: RuleSet
) -> None:
    before = _files(lake)
    result = simulate(lake, reference, v2, *APRIL)

    assert _files(lake) == before  # nothing written to the event log
    assert result.batches_replayed == 2  # b2, b3; b1 is history, b4 after the window
    assert result.cases["case_id"].to_list() == ["C1", "C2", "C3", "C4", "D1", "D2"]
    assert dict(
        zip(
            result.transitions["old_status"] + ">" + result.transitions["new_status"],
            result.transitions["cases"],
            strict=True,
        )
    ) == {
        "APPROVED>APPROVED": 2,  # C2, C4
        "APPROVED>PENDED": 2,  # C1, D2
        "DENIED>DENIED": 1,  # D1
        "PENDED>PENDED": 1,  # C3
    }
    codes = {
        r["reason_code"]: (r["old_cases"], r["new_cases"], r["change"])
        for r in result.reason_codes.iter_rows(named=True)
    }
    assert codes == {"CO-18": (1, 1, 0), "P-HIGH-DOLLAR": (1, 4, 3)}

    paid = dict(zip(result.cases["case_id"], result.cases["paid_delta_cents"], strict=True))
    assert paid == {"C1": -478_400, "C2": -1_600, "C3": 0, "C4": 0, "D1": 0, "D2": -495_000}
    assert result.old_paid_cents == 478_400 + 7_200 + 4_500 + 495_000
    assert result.new_paid_cents == 5_600 + 4_500
    assert result.paid_delta_cents == -975_000

    assert result.changed["case_id"].to_list() == ["C1", "C2", "D1", "D2"]
    d1 = result.cases.row(by_predicate=pl.col("case_id") == "D1", named=True)
    assert d1["new_reason_codes"] == ["CO-18", "P-HIGH-DOLLAR"]
    assert d1["new_rules_fired"] == ["duplicate-claim", "high-dollar"]
    sample = result.sample(2)
    assert sample["case_id"].to_list() == ["C1", "C2"]
    assert sample["explanation"][0] == (
        "APPROVED -> PENDED; reason codes [] -> [P-HIGH-DOLLAR]; rules fired: high-dollar; "
        "paid 4784.00 -> 0.00"
    )
    assert result.summary_lines()[1] == (
        "paid: 9,851.00 recorded, 101.00 under claims-standard v2, delta -9,750.00"
    )


def test_replaying_with_the_recording_rule_set_changes_nothing(
    tmp_path: Path, reference: Reference, v1: RuleSet
) -> None:
    # Mixed batches: b2 also holds a March case that takes deductible before C1
    # (service-date order), so the window must be replayed whole to reproduce C1.
    batches = {
        **BATCHES,
        "b2.csv": [
            *BATCHES["b2.csv"],
            _row("X1", "M001", "2024-03-20", "2024-03-28", "99213", 1, "70.00"),
        ],
    }
    lake = tmp_path / "lake"
    _record(lake, reference, v1, batches)
    result = simulate(lake, reference, v1, *APRIL)
    assert result.cases.height == 6
    assert result.cases_replayed == 7  # X1 replayed as context, not reported
    assert result.changed.height == 0
    assert result.paid_delta_cents == 0


def test_range_before_anything_and_bad_ranges(
    lake: Path, reference: Reference, v2: RuleSet
) -> None:
    empty = simulate(lake, reference, v2, dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    assert empty.cases.height == 0 and empty.batches_replayed == 0
    assert empty.paid_delta_cents == 0 and empty.transitions.height == 0
    with pytest.raises(WhatIfError, match="is after"):
        plan_replay(recorded_cases(lake), dt.date(2024, 5, 1), dt.date(2024, 4, 1))
    with pytest.raises(WhatIfError, match="no event log"):
        recorded_cases(lake.parent / "nowhere")
    assert not (lake.parent / "nowhere").exists()


def test_plan_starts_history_before_the_window(lake: Path) -> None:
    plan = plan_replay(recorded_cases(lake), *APRIL)
    assert plan.start_history.latest()["case_id"].to_list() == ["A1"]
    assert plan.start_history.latest()["deductible_cents"].to_list() == [8_000]
    assert [b["case_id"].to_list() for b in plan.batches] == [
        ["C1", "C2", "C3", "C4"],
        ["D1", "D2"],
    ]


def test_text_batch_round_trips_amounts_and_missing_prior_auth(lake: Path) -> None:
    recorded = recorded_cases(lake).filter(pl.col("case_id").is_in(["C3", "A1"]))
    text = as_text_batch(recorded)
    assert text["billed_amount"].to_list() == ["80.00", "12000.00"]
    assert text["prior_auth_id"].to_list() == ["", ""]
    assert text["service_date"].to_list() == ["2024-03-01", "2024-04-02"]


def test_report_file_holds_every_case_in_range(
    lake: Path, reference: Reference, v2: RuleSet, tmp_path: Path
) -> None:
    result = simulate(lake, reference, v2, *APRIL)
    path = write_report(
        result, tmp_path / "reports", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    )
    assert path.name == "what-if-20260102T030405000000Z.parquet"
    back = pl.read_parquet(path)
    assert back["case_id"].to_list() == result.cases["case_id"].to_list()
    assert back.filter(pl.col("changed")).height == 4
    assert REJECTED not in back["new_status"].to_list()


def test_cli_prints_the_summary_and_writes_the_report(
    lake: Path, reference_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from adjudicate.cli import app

    reports = tmp_path / "reports"
    args = ["what-if", "--from", "2024-04-01", "--to", "2024-04-30", "--ruleset", "2"]
    paths = ["--lake", str(lake), "--reference", str(reference_dir), "--reports", str(reports)]
    result = CliRunner().invoke(app, [*args, *paths])
    assert result.exit_code == 0, result.output
    assert "6 case(s), 4 would change" in result.output
    assert "delta -9,750.00" in result.output
    assert "C1" in result.output and "PENDED" in result.output  # the sample table
    [report] = reports.glob("what-if-*.parquet")
    assert f"report: {report}" in result.output

    backwards = CliRunner().invoke(
        app, [*args[:1], "--from", "2024-05-01", "--to", "2024-04-01", "--ruleset", "2", *paths]
    )
    assert backwards.exit_code == 2
    assert "the range is empty" in backwards.output
