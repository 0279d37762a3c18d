"""The data-quality gate (claimsflow.ops.quality): GX expectations and drift checks.

GX takes seconds to import; the module imports it once (the first checkpoint
run) and runs the checkpoint four times: a frame breaking every invariant, a
clean frame, a clean run and a drifted run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from adjudicate import cli
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.lake import eventlog
from claimsflow.ops import quality
from claimsflow.ops.outputs import RunOutputs, publish_run_outputs
from claimsflow.ops.quality import (
    BATCHES_TABLE,
    GX_DIR,
    RATES_TABLE,
    SUITES,
    TABLE_COLUMNS,
    DecisionFailures,
    DriftBand,
    GateState,
    RunTables,
    decision_failures,
    drift_checks,
)
from claimsflow.pipeline.batch import RunContext
from claimsflow.pipeline.summary import RunSummary
from tests.batch_helpers import RunFactory, case_row, run_inbox, write_csv, write_reference
from tests.conftest import RULESET_V1
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.gx

AMOUNTS = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")
DECISION_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "case_id": pl.String,
    "batch_id": pl.String,
    "status": pl.String,
    "reason_codes": pl.List(pl.String),
    **dict.fromkeys(AMOUNTS, pl.Int64()),
    "billed_cents": pl.Int64,
}


def decision(
    case_id: str,
    status: str | None,
    codes: list[str] | None,
    amounts: tuple[int | None, int | None, int | None, int | None],
    billed: int | None,
) -> dict[str, object]:
    return {
        "case_id": case_id,
        "batch_id": "b",
        "status": status,
        "reason_codes": codes,
        **dict(zip(AMOUNTS, amounts, strict=True)),
        "billed_cents": billed,
    }


# allowed = deductible + coinsurance + paid <= billed, amounts in cents.
CLEAN_DECISIONS = [
    decision("OK1", "APPROVED", [], (10000, 2000, 1600, 6400), 12000),
    decision("OK2", "DENIED", ["CO-242"], (0, 0, 0, 0), 8000),
    decision("OK3", "PENDED", ["P-HIGH-DOLLAR"], (0, 0, 0, 0), 1500000),
]
# Each row breaks one invariant (NEG-ALLOWED two: allowed < 0 cannot add up from parts >= 0).
BROKEN_DECISIONS = [
    decision("STATUS-NULL", None, ["CO-31"], (0, 0, 0, 0), 100),
    decision("STATUS-BAD", "MAYBE", ["CO-31"], (0, 0, 0, 0), 100),
    decision("DUP", "DENIED", ["CO-18"], (0, 0, 0, 0), 100),
    decision("DUP", "DENIED", ["CO-18"], (0, 0, 0, 0), 100),
    decision("AMOUNT-NULL", "DENIED", ["CO-27"], (0, 0, None, 0), 100),
    decision("NEG-ALLOWED", "APPROVED", [], (-100, 0, 0, 0), 100),
    decision("NEG-DED", "APPROVED", [], (1000, -100, 220, 880), 1000),
    decision("NEG-COINS", "APPROVED", [], (1000, 0, -50, 1050), 1000),
    decision("NEG-PAID", "APPROVED", [], (1000, 900, 200, -100), 1000),
    decision("BAD-SUM", "APPROVED", [], (1000, 0, 200, 700), 1000),
    decision("OVER-BILLED", "APPROVED", [], (1200, 0, 240, 960), 1000),
    decision("PAID-DENIED", "DENIED", ["CO-29"], (0, 0, 0, 500), 1000),
    decision("DENIED-NO-CODE", "DENIED", [], (0, 0, 0, 0), 100),
    decision("PENDED-NO-CODE", "PENDED", [], (0, 0, 0, 0), 100),
    decision("APPROVED-WITH-CODE", "APPROVED", ["CO-18"], (100, 0, 20, 80), 100),
    decision("CODES-NULL", "DENIED", None, (0, 0, 0, 0), 100),
    decision("NO-PAYLOAD", "DENIED", ["CO-96"], (0, 0, 0, 0), None),
]
#: check -> the rows that break it (by record id), worked out from the rows above.
EXPECTED_FAILURES = {
    "status-present": ["STATUS-NULL"],
    "status-allowed": ["STATUS-BAD"],
    "case-decided-once": ["DUP", "DUP"],
    "amounts-present": ["AMOUNT-NULL"],
    "amount-not-negative:allowed_cents": ["NEG-ALLOWED"],
    "amount-not-negative:deductible_cents": ["NEG-DED"],
    "amount-not-negative:coinsurance_cents": ["NEG-COINS"],
    "amount-not-negative:paid_cents": ["NEG-PAID"],
    "pricing-adds-up": ["NEG-ALLOWED", "BAD-SUM"],
    "allowed-within-billed": ["OVER-BILLED"],
    "zero-amounts-unless-approved": ["PAID-DENIED"],
    "reason-codes-listed": ["CODES-NULL"],
    "reasons-when-denied-or-pended": ["DENIED-NO-CODE", "PENDED-NO-CODE"],
    "no-reasons-when-approved": ["APPROVED-WITH-CODE"],
    "case-payload-recorded": ["NO-PAYLOAD"],
    "batch-status-allowed": ["b-bad-status"],
    "rows-add-up": ["b-lost"],
    "counts-match-log": ["b-miscount"],
    "drift:denial_rate": ["run"],
}
# (record id, status, rows in, decided, rejected, decisions recorded, rejections recorded)
CLEAN_BATCHES = [
    ("b-ok", "PROCESSED", 5, 4, 1, 4, 1),
    ("b-skip", "SKIPPED", 0, 0, 0, 0, 0),
    ("b-rejected", "REJECTED", 0, 0, 0, 0, 0),
]
BROKEN_BATCHES = [
    ("b-bad-status", "DONE", 0, 0, 0, 0, 0),
    ("b-lost", "PROCESSED", 5, 3, 1, 3, 1),  # one row neither decided nor rejected
    ("b-miscount", "PROCESSED", 5, 4, 1, 3, 1),  # says 4 decided, the log holds 3
]
BAND = {"denial_rate_min": 0.1, "denial_rate_max": 0.4}
BAND |= {"rejection_rate_min": 0.0, "rejection_rate_max": 0.15}


def checked(decisions: list[dict[str, object]], listed: int = 100) -> DecisionFailures:
    """The gate's one pass over these decisions, registered as the run's decisions."""
    con = duckdb.connect(":memory:")
    try:
        frame = pl.DataFrame(decisions, schema=DECISION_SCHEMA)
        for view in ("run_decisions", "run_decision_events", "run_joined"):
            con.register(view, frame)
        return decision_failures(con, listed)
    finally:
        con.close()


def tables(
    decisions: list[dict[str, object]],
    batches: list[tuple[str, str, int, int, int, int, int]],
    denial_rate: float,
) -> RunTables:
    columns = list(TABLE_COLUMNS[BATCHES_TABLE])
    batch_rows = [(b[0], b[0], f"{b[0]}.csv", *b[1:]) for b in batches]
    return RunTables(
        decisions=checked(decisions).table,
        batches=pl.DataFrame(batch_rows, schema=columns, orient="row"),
        rates=pl.DataFrame(
            [("run", "run", 100, denial_rate, 100, 0.05)],
            schema=list(TABLE_COLUMNS[RATES_TABLE]),
            orient="row",
        ),
    )


@pytest.fixture(scope="module")
def gx_snapshot() -> Iterator[dict[str, bytes]]:
    """gx/ before the module's checkpoint runs; checked unchanged by a test below."""
    before = {str(p.relative_to(GX_DIR)): p.read_bytes() for p in GX_DIR.rglob("*") if p.is_file()}
    yield before


def test_each_invariant_expectation_fails_on_the_rows_that_break_it(
    tmp_path: Path, gx_snapshot: dict[str, bytes]
) -> None:
    broken = tables(
        CLEAN_DECISIONS + BROKEN_DECISIONS, CLEAN_BATCHES + BROKEN_BATCHES, denial_rate=0.9
    )
    outcomes, docs = quality.run_checkpoint(broken, BAND, tmp_path, run_name="broken")
    failed = {o.check: o.examples for o in outcomes if not o.success}
    assert failed == EXPECTED_FAILURES
    assert {o.check: o.unexpected_count for o in outcomes if not o.success} == {
        check: len(rows) for check, rows in EXPECTED_FAILURES.items()
    }
    # Every check of the suites ran; only the rejection-rate drift (0.05 in 0..0.15) held.
    assert [o.check for o in outcomes] == [s.check for specs in SUITES.values() for s in specs]
    assert [o.check for o in outcomes if o.success] == ["drift:rejection_rate"]
    assert docs == tmp_path / "gx-data-docs" / "index.html"
    assert docs.is_file()


def test_the_pass_counts_every_failing_row_and_lists_the_first_ones() -> None:
    # 250 rows: 120 APPROVED whose parts do not add up, 130 clean; 2 listed per check.
    broken = [
        decision(f"SUM{n:03d}", "APPROVED", [], (1000, 0, 200, 700), 1000) for n in range(120)
    ]
    clean = [decision(f"OK{n:03d}", "DENIED", ["CO-29"], (0, 0, 0, 0), 100) for n in range(130)]
    failures = checked(broken + clean, listed=2)
    assert failures.rows_checked == 250
    assert {c: n for c, n in failures.counts.items() if n} == {"pricing-adds-up": 120}
    assert failures.table.select("record_id", "check", "failing_rows").rows() == [
        ("SUM000", "pricing-adds-up", 120),
        ("SUM001", "pricing-adds-up", 120),
    ]


def test_a_voided_original_may_have_a_second_decision() -> None:
    # Spec §9: a correction gives its original a VOIDED decision (no payload in the
    # correcting batch, amounts 0, no codes): one more decision, not a repeat.
    rows = [
        decision("ORIG", "APPROVED", [], (100, 0, 20, 80), 100),
        decision("ORIG", "VOIDED", [], (0, 0, 0, 0), None),
        decision("VOID-ROW", "VOIDED", [], (0, 0, 0, 0), 100),
    ]
    assert {c: n for c, n in checked(rows).counts.items() if n} == {}
    coded = [decision("V", "VOIDED", ["CO-18"], (0, 0, 0, 5), 100)]
    assert {c: n for c, n in checked(coded).counts.items() if n} == {
        "zero-amounts-unless-approved": 1,
        "no-reasons-when-approved": 1,
    }


def test_clean_tables_meet_every_expectation(tmp_path: Path) -> None:
    clean = tables(CLEAN_DECISIONS, CLEAN_BATCHES, denial_rate=0.25)
    outcomes, _docs = quality.run_checkpoint(clean, BAND, tmp_path, run_name="clean")
    assert [o.check for o in outcomes if not o.success] == []
    assert len(outcomes) == sum(len(specs) for specs in SUITES.values()) == 20


def test_gx_folder_holds_the_suites_defined_in_code() -> None:
    for suite, specs in SUITES.items():
        stored = json.loads((GX_DIR / "expectations" / f"{suite}.json").read_text("utf-8"))
        assert stored["name"] == suite
        keep = ("type", "kwargs", "meta", "severity", "description")
        in_code = [
            {k: v for k, v in quality.expectation_of(spec).configuration.to_json_dict().items()}
            for spec in specs
        ]
        assert [{k: e.get(k) for k in keep} for e in stored["expectations"]] == [
            {k: e.get(k) for k in keep} for e in in_code
        ]
        definition = json.loads((GX_DIR / "validation_definitions" / f"{suite}.json").read_text())
        assert definition["suite"]["name"] == suite
    checkpoint = json.loads((GX_DIR / "checkpoints" / "claims_run_outputs.json").read_text())
    assert [v["name"] for v in checkpoint["validation_definitions"]] == list(SUITES)
    assert [a["type"] for a in checkpoint["actions"]] == ["update_data_docs"]
    assert checkpoint["result_format"] == quality.RESULT_FORMAT
    config = (GX_DIR / "great_expectations.yml").read_text(encoding="utf-8")
    assert "analytics_enabled: false" in config


# Drift: four runs of ten cases on the fixture lake.
#   run-1, run-2: 8 approved (P001) + 2 denied (P003, out of network): 20 % each
#   run-3 (clean): 7 + 3 = 30 %; baseline runs 1-2 pooled 4/20 = 20 %, band 5 %-35 %
#   run-4 (drift): 1 + 9 = 90 %; baseline runs 1-3 pooled 7/30 = 23.3 %, band 8.3 %-38.3 %
# No row is rejected: rejection rate 0 % against a 0 % baseline, band 0 %-10 %.
DRIFT_BAND = DriftBand(window=7, min_runs=2, min_cases=10, denial=0.15, rejection=0.10)
RUN_SHAPES = {"run-1": (8, 2), "run-2": (8, 2), "run-3": (7, 3), "run-4": (1, 9)}


def batch_rows(run: str, in_network: int, out_of_network: int) -> list[dict[str, str]]:
    first = dt.date(2024, 1, 2) + dt.timedelta(days=20 * int(run[-1]))
    rows = []
    for n in range(in_network + out_of_network):
        service = first + dt.timedelta(days=n)
        rows.append(
            case_row(
                f"{run}-{n:02d}",
                provider_id="P001" if n < in_network else "P003",
                service_date=service.isoformat(),
                received_date=(service + dt.timedelta(days=5)).isoformat(),
            )
        )
    return rows


@pytest.fixture(scope="module")
def drift_runs(
    tmp_path_factory: pytest.TempPathFactory, module_make_run: RunFactory
) -> dict[str, RunOutputs]:
    root = tmp_path_factory.mktemp("drift")
    published = {}
    for run, (good, bad) in RUN_SHAPES.items():
        inbox = root / "inboxes" / run
        write_csv(inbox / f"{run}.csv", batch_rows(run, good, bad))
        context = module_make_run(run)
        outcomes = run_inbox(inbox, context)
        if run in ("run-3", "run-4"):
            summary = RunSummary(run, "claims-standard v1", batches=outcomes)
            published[run] = publish_run_outputs(
                context.lake,
                run,
                summary,
                root / "reports",
                seconds=1.5,
                band=DRIFT_BAND,
                # One file per run here, so each test reads its own run's metrics.
                metrics_file=root / "metrics" / f"{run}.prom",
                pushgateway_url="",
                now=dt.datetime(2025, 2, 1, 3, 0, tzinfo=dt.UTC),
            )
    # A night with an empty inbox records nothing: the run is not in the log.
    published["empty"] = publish_run_outputs(
        context.lake, "empty-inbox", None, root / "reports", band=DRIFT_BAND, pushgateway_url=""
    )
    return published


@pytest.fixture(scope="module")
def drift_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake") / "lake"


@pytest.fixture(scope="module")
def module_make_run(drift_lake: Path) -> RunFactory:
    """make_run of conftest.py, for a module-scoped lake."""
    reference = load_reference(write_reference(drift_lake.parent / "reference"))
    ruleset = load_ruleset(RULESET_V1)
    lake = drift_lake
    days = itertools.count()

    def make(run_id: str) -> RunContext:
        ticks = itertools.count()
        start = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC) + dt.timedelta(days=next(days))

        def clock() -> dt.datetime:
            return start + dt.timedelta(seconds=next(ticks))

        eventlog.ensure_lake(lake)
        return RunContext(lake, reference, ruleset, run_id, clock)

    return make


def test_a_clean_run_passes_the_gate(drift_runs: dict[str, RunOutputs]) -> None:
    clean = drift_runs["run-3"]
    assert clean.warnings == []
    assert clean.quality is not None and clean.quality.success
    denial = clean.quality.drift[0]
    assert (denial.metric, denial.judged, denial.trailing_runs) == ("denial_rate", True, 2)
    assert denial.current == pytest.approx(0.30)
    assert denial.baseline == pytest.approx(0.20)
    assert [denial.low, denial.high] == pytest.approx([0.05, 0.35])
    html = clean.report.read_text(encoding="utf-8")
    assert 'data-key="quality-state" data-value="ok"' in html
    assert "Data-quality gate passed: 20 of 20 expectations met." in html


def test_a_drifted_run_trips_the_drift_check_in_summary_report_and_metrics(
    drift_runs: dict[str, RunOutputs],
) -> None:
    drifted = drift_runs["run-4"]
    assert drifted.quality is not None and not drifted.quality.success
    assert [o.check for o in drifted.quality.failures] == ["drift:denial_rate"]
    assert drifted.warnings == [
        "data-quality drift: denial rate 90.0% is outside 8.3%-38.3% (trailing 3 run(s): 23.3%)"
    ]
    html = drifted.report.read_text(encoding="utf-8")
    assert 'data-key="quality-state" data-value="fail"' in html
    assert "⚠ Data-quality gate FAILED: 1 of 20 expectation(s) not met." in html
    assert drifted.warnings[0] in html
    assert re.search(r'<tr data-drift="denial_rate">.*?pill fail">drift<', html)
    assert 'data-check="drift:denial_rate" data-success="false"' in html
    # The report links the Data Docs the checkpoint built, relative to reports/runs/.
    assert '<a href="../gx-data-docs/index.html">' in html
    assert drifted.data_docs is not None and drifted.data_docs.is_file()
    # GX's pages carry no beacon with the data context id (telemetry stays off).
    pages = list(drifted.data_docs.parent.rglob("*.html"))
    assert len(pages) > 3
    assert not [p for p in pages if "dataContextId" in p.read_text(encoding="utf-8")]
    assert drifted.metrics is not None
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(drifted.metrics.read_text("utf-8"))
        for s in family.samples
    }
    assert samples[("claims_nightly_quality_gate_ok", ())] == 0
    suite = (("suite", "claims_run_drift"),)
    assert samples[("claims_nightly_quality_failed_expectations", suite)] == 1
    assert samples[("claims_nightly_denial_ratio", ())] == pytest.approx(0.9)
    assert samples[("claims_nightly_cases", (("status", "DENIED"),))] == 9
    assert samples[("claims_nightly_cases", (("status", "APPROVED"),))] == 1


def test_the_checkpoint_leaves_the_gx_folder_untouched(
    drift_runs: dict[str, RunOutputs], gx_snapshot: dict[str, bytes]
) -> None:
    after = {str(p.relative_to(GX_DIR)): p.read_bytes() for p in GX_DIR.rglob("*") if p.is_file()}
    assert after == gx_snapshot
    reports = drift_runs["run-4"].report.parents[1]
    assert any((reports / "gx-validations").rglob("*.json"))


def test_a_run_that_recorded_nothing_skips_the_gate(
    drift_runs: dict[str, RunOutputs],
) -> None:
    empty = drift_runs["empty"]
    # Nothing was processed: the gate has no decision to check and does not run.
    assert (empty.quality, empty.gate, empty.warnings) == (None, GateState.NOTHING_TO_CHECK, [])
    html = empty.report.read_text(encoding="utf-8")
    assert "No batch was recorded by this run (empty inbox?)." in html
    assert "No batch was processed: the data-quality gate had no decision to check." in html
    assert 'data-key="quality-state" data-value="unknown"' in html
    assert empty.metrics is not None
    text = empty.metrics.read_text(encoding="utf-8")
    assert 'claims_nightly_cases{status="APPROVED"} 0.0' in text
    assert "claims_nightly_denial_ratio" not in text  # nothing decided: no rate at all
    assert "claims_nightly_rejection_ratio" not in text
    assert "claims_nightly_quality_gate_ok" not in text  # no gate, no verdict


def test_cli_report_reruns_the_gate_with_the_band_from_the_environment(
    drift_runs: dict[str, RunOutputs],
    drift_lake: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defaults need 3 earlier runs and 20 cases; these runs have 10 cases each.
    monkeypatch.setenv("CLAIMS_DRIFT_MIN_RUNS", "2")
    monkeypatch.setenv("CLAIMS_DRIFT_MIN_CASES", "10")
    args = ["report", "--lake", str(drift_lake), "--run", "run-4", "--reports", str(tmp_path)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"warning: {drift_runs['run-4'].warnings[0]}",
        f"report: {tmp_path / 'runs' / 'run-run-4.html'}",
        f"data docs: {(tmp_path / 'gx-data-docs' / 'index.html').resolve()}",
    ]
    monkeypatch.setenv("CLAIMS_DRIFT_WINDOW", "seven")
    bad = CliRunner().invoke(cli.app, args)
    assert (bad.exit_code, bad.stderr) == (
        2,
        "adjudicate: error: CLAIMS_DRIFT_WINDOW must be a number, not 'seven'\n",
    )


def test_a_gate_that_cannot_run_is_a_warning_and_a_failed_gate(
    drift_runs: dict[str, RunOutputs], drift_lake: Path, tmp_path: Path
) -> None:
    broken_gx = tmp_path / "gx"
    shutil.copytree(GX_DIR, broken_gx)
    (broken_gx / "checkpoints" / "claims_run_outputs.json").unlink()
    published = publish_run_outputs(
        drift_lake, "run-3", None, tmp_path / "reports", gx_dir=broken_gx, pushgateway_url=""
    )
    assert published.quality is None
    [warning] = published.warnings
    assert warning.startswith("data-quality checks could not run: ")
    html = published.report.read_text(encoding="utf-8")
    assert 'data-key="quality-state" data-value="fail"' in html
    assert "Data-quality checks could not run for this run." in html
    assert published.metrics is not None
    assert "claims_nightly_quality_gate_ok 0.0" in published.metrics.read_text("utf-8")


def test_problems_gx_reports_are_read_in_both_shapes() -> None:
    from great_expectations.validator.exception_info import ExceptionInfo

    assert quality._problem({"raised_exception": False}) is None
    assert quality._problem(ExceptionInfo("trace", "no such column: x\nmore")) == (
        "no such column: x"
    )
    assert quality._problem({("metric", "id"): ExceptionInfo("trace", "boom")}) == "boom"


# Drift arithmetic without GX.


def runs_frame(rows: list[tuple[str, int, int, int, int, int]]) -> pl.DataFrame:
    """(run_id, day, rows_in, rows_rejected, decided, denied) -> the shape of runlog.runs."""
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return pl.DataFrame(
        [
            (
                run,
                start + dt.timedelta(days=day),
                start + dt.timedelta(days=day, minutes=5),
                1,
                rows_in,
                rejected,
                decided,
                denied,
            )
            for run, day, rows_in, rejected, decided, denied in rows
        ],
        schema=[
            "run_id",
            "started_at",
            "finished_at",
            "batches",
            "rows_in",
            "rows_rejected",
            "cases_decided",
            "cases_denied",
        ],
        orient="row",
    )


def test_baseline_is_pooled_over_the_last_window_runs() -> None:
    runs = runs_frame(
        [
            ("old", 0, 100, 50, 50, 50),  # outside the window of 2
            ("a", 1, 100, 0, 100, 10),
            ("empty", 2, 0, 0, 0, 0),  # nothing decided: not a baseline run
            ("b", 3, 300, 30, 300, 90),
            ("now", 4, 100, 40, 100, 20),
            ("later", 5, 100, 0, 100, 100),  # after the run: never its baseline
        ]
    )
    band = DriftBand(window=2, min_runs=2, min_cases=10, denial=0.05, rejection=0.10)
    denial, rejection = drift_checks(runs, "now", band)
    # denial: (10 + 90) / (100 + 300) = 25 %; this run 20 %: inside 20 %-30 %.
    assert (denial.baseline, denial.current, denial.trailing_runs) == (0.25, 0.20, 2)
    assert [denial.low, denial.high] == pytest.approx([0.20, 0.30])
    # rejection: (0 + 30) / (100 + 300) = 7.5 %, band 0 %-17.5 %; this run 40 %.
    assert (rejection.baseline, rejection.current) == (0.075, 0.40)
    assert [rejection.low, rejection.high] == pytest.approx([0.0, 0.175])
    assert quality.drift_parameters([denial, rejection]) == {
        "denial_rate_min": denial.low,
        "denial_rate_max": denial.high,
        "rejection_rate_min": 0.0,
        "rejection_rate_max": rejection.high,
    }


def test_drift_is_not_judged_without_enough_history_or_cases() -> None:
    runs = runs_frame([("a", 0, 100, 0, 100, 10), ("small", 1, 5, 1, 4, 4)])
    few_runs = drift_checks(runs, "small", DriftBand(min_runs=2, min_cases=1))
    assert [(c.judged, c.low, c.high) for c in few_runs] == [(False, 0.0, 1.0)] * 2
    assert few_runs[0].note == "baseline needs 2 earlier run(s), found 1"
    few_cases = drift_checks(runs, "small", DriftBand(min_runs=1, min_cases=20))
    assert [c.note for c in few_cases] == [
        "only 4 decided case(s); judged from 20",
        "only 5 row(s) in; judged from 20",
    ]
    nothing = drift_checks(runs, "not-in-the-log", DriftBand())
    assert [(c.current, c.judged) for c in nothing] == [(None, False)] * 2


def test_drift_band_from_environment() -> None:
    env = {"CLAIMS_DRIFT_DENIAL_BAND": "0.2", "CLAIMS_DRIFT_WINDOW": "14"}
    assert DriftBand.from_env(env) == DriftBand(window=14, denial=0.2)
    with pytest.raises(ValueError, match="CLAIMS_DRIFT_MIN_RUNS must be a number, not 'x'"):
        DriftBand.from_env({"CLAIMS_DRIFT_MIN_RUNS": "x"})


def test_outcome_lines_name_the_rows() -> None:
    outcome = quality.CheckOutcome(
        "claims_run_decisions", "pricing-adds-up", "adds up", "critical", False, 2, ["A", "B"]
    )
    result = quality.QualityResult("r", [outcome], [], None)
    assert result.warnings() == [
        "data-quality check failed: pricing-adds-up: adds up (2 row(s), e.g. A, B)"
    ]


def test_summary_outcomes_feed_the_batch_duration(drift_runs: dict[str, RunOutputs]) -> None:
    # publish_run_outputs records the batches' time as a stage (from the summary).
    assert drift_runs["run-3"].metrics is not None
    text = drift_runs["run-3"].metrics.read_text(encoding="utf-8")
    assert 'claims_nightly_stage_duration_seconds{stage="batches"}' in text
    assert 'claims_nightly_stage_duration_seconds{stage="quality"}' in text


# The Data Docs offline (issue 19): GX's pages load their CSS and JavaScript from CDNs.

CHROMIUM = Path("/usr/bin/chromium")
#: Kept for people to look at (reports/ is ignored by git).
SCREENSHOT = REPO_ROOT / "reports" / "screenshots" / "gx-data-docs-index.png"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]


def test_data_docs_pages_name_no_outside_address(drift_runs: dict[str, RunOutputs]) -> None:
    docs = drift_runs["run-4"].data_docs
    assert docs is not None
    site = docs.parent
    loaded = re.compile(r'<(?:script|link|img)\b[^>]*?(?:src|href)="(https?:[^"]*)"')
    pages = list(site.rglob("*.html"))
    assert len(pages) > 3
    assert {p.name: loaded.findall(p.read_text("utf-8")) for p in pages} == {
        p.name: [] for p in pages
    }
    # The vendored files are in the site, with their licences.
    vendor = site / "static" / "vendor"
    assert (vendor / "jquery@3.7.1" / "jquery.min.js").is_file()
    assert (vendor / "bootstrap@4.3.1" / "LICENSE").is_file()
    assert (vendor / "NOTICES.md").is_file()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_data_docs_index_is_styled_and_lists_the_validations_offline(
    drift_runs: dict[str, RunOutputs],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    docs = drift_runs["run-4"].data_docs
    assert docs is not None
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            context = browser.new_context(offline=True)  # the network is off

            def refuse(route: Any) -> None:
                outside.append(route.request.url)
                route.abort()

            context.route("http*://**/*", refuse)
            page = context.new_page()
            page.set_default_timeout(90_000)  # a loaded two-core machine is slow to paint
            page.goto(docs.as_uri())
            page.wait_for_load_state("load")
            # bootstrap-table (JavaScript) drew the list: one row per validation run
            # of the checkpoint (three suites, two runs: run-3 and run-4). Wait for all
            # six: the index has other tables (the suites' list) that may paint first,
            # and a loaded machine shows the validations' placeholder row for seconds.
            listed = page.locator(
                ".bootstrap-table table tbody tr", has_text="claims_run_outputs-run_"
            )
            expect(listed).to_have_count(6, timeout=90_000)
            # Cell by cell (textContent): a row's innerText depends on its layout at
            # that instant (no tabs between cells while bootstrap-table redraws it).
            rows = [
                [cell.strip() for cell in row.locator("td").all_text_contents()]
                for row in listed.all()
            ]
            styles = page.evaluate(
                """() => ({
                    font: getComputedStyle(document.body).fontFamily,
                    navbarDisplay: getComputedStyle(document.querySelector('nav.navbar')).display,
                    tableBox: getComputedStyle(
                        document.querySelector('.bootstrap-table .fixed-table-container')
                    ).position,
                })"""
            )
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert outside == []
    suites = ("claims_run_decisions", "claims_run_batches", "claims_run_drift")
    # Columns: status, run time, run name, asset name, batch id, expectation suite.
    validations = {(cells[2], cells[5]) for cells in rows}
    assert validations == {(run, suite) for run in ("run-3", "run-4") for suite in suites}
    # Bootstrap's stylesheet applied (its navbar is a flex box; an unstyled <nav> is a
    # block), and bootstrap-table's (its table container is positioned).
    assert styles["navbarDisplay"] == "flex"
    assert styles["tableBox"] == "relative"
