"""The HTML run report (claimsflow.ops.reporting) against hand-computed figures and the catalog.

One batch `b1.csv`, run `report-run`, against the fixture reference plus P004
(active, in network). Amounts by spec §5 (M001: deductible 500.00, 20 %;
M002 from 2024-03-01: deductible 250.00, 0 %; 99213 100.00/unit, J1100 12.50/unit):

  R1 M001 P001 99213 x1  80.00    APPROVED allowed 80.00 = deductible 80.00, paid 0
  R2 M001 P001 J1100 x50 700.00   APPROVED allowed min(700, 625) = 625.00; deductible
                                  500 - 80 = 420.00; coinsurance (625 - 420) x 20 % = 41.00;
                                  paid 164.00
  R3 M002 P004 J1100 x30 400.00   APPROVED allowed min(400, 375) = 375.00; deductible
                                  250.00; coinsurance 0 %; paid 125.00
  R4 M001 P003                    DENIED [CO-242] (out of network)
  R5 M001 P002 99214, no PA       DENIED [CO-B7, CO-197] (suspended, prior auth missing)
  R6 M001 P001 12,000.00          PENDED [P-HIGH-DOLLAR]
  R7 M009 P003                    DENIED [CO-31, CO-242] (unknown member, out of network)
  X1 units "abc"                  rejected: units
  X2 billed "-5", diagnosis "bad" rejected: diagnosis_code, billed_amount
  R1 again                        rejected: case_id (repeat within the batch)

So: 10 rows in, 7 decided (3 approved, 3 denied, 1 pended), 3 rejected (4 errors);
denial reasons CO-242 x2, CO-197, CO-31, CO-B7 x1; providers P001 allowed 705.00 /
paid 164.00, P004 375.00 / 125.00; allowed 1,080.00 = deductible 750.00 +
coinsurance 41.00 + paid 289.00; both member-years met their deductible.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import shutil
import struct
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudicate import cli
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.catalog import run_query
from claimsflow.ops import runlog
from claimsflow.ops.outputs import regenerate_report
from claimsflow.ops.quality import CheckOutcome, DriftCheck, QualityResult
from claimsflow.ops.reporting.html import render_report, report_path, write_report
from claimsflow.pipeline.batch import BatchOutcome, RunContext
from claimsflow.pipeline.summary import RunSummary
from tests.batch_helpers import PROVIDERS_CSV, case_row, run_inbox, write_csv, write_reference
from tests.browser_support import needs_chromium, offline_page
from tests.paths import REPO_ROOT

RUN_ID = "report-run"
CHROMIUM = Path("/usr/bin/chromium")
ADJUDICATE = Path(sys.executable).with_name("adjudicate")
#: Where the screenshot is kept for people to look at (reports/ is ignored by git).
SCREENSHOT = REPO_ROOT / "reports" / "screenshots" / "run-report.png"

ROWS = [
    case_row("R1", service_date="2024-05-01", received_date="2024-05-10"),
    case_row(
        "R2",
        service_date="2024-05-02",
        received_date="2024-05-10",
        procedure_code="J1100",
        units="50",
        billed_amount="700.00",
    ),
    case_row(
        "R3",
        member_id="M002",
        provider_id="P004",
        service_date="2024-05-03",
        received_date="2024-05-10",
        procedure_code="J1100",
        units="30",
        billed_amount="400.00",
    ),
    case_row("R4", provider_id="P003", service_date="2024-05-04", received_date="2024-05-10"),
    case_row(
        "R5",
        provider_id="P002",
        service_date="2024-05-05",
        received_date="2024-05-10",
        procedure_code="99214",
    ),
    case_row("R6", service_date="2024-05-06", received_date="2024-05-10", billed_amount="12000.00"),
    case_row(
        "R7",
        member_id="M009",
        provider_id="P003",
        service_date="2024-05-07",
        received_date="2024-05-10",
    ),
    case_row("X1", units="abc"),
    case_row("X2", billed_amount="-5", diagnosis_code="bad"),
    case_row("R1", service_date="2024-05-09"),
]


class Page(HTMLParser):
    """What the report shows: data-key figures, chart bars, batch rows, text."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, str] = {}
        self.bars: dict[str, dict[tuple[str, str], float]] = {}
        self.batch_rows: list[list[str]] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self._key: str | None = None
        self._in_batches = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in ("src", "href"):
            value = a.get(name) or ""
            if tag in ("script", "link", "img", "iframe") or "://" in value:
                self.external.append(f"<{tag} {name}={value}>")
        if "data-key" in a and "data-value" not in a:
            self._key = a["data-key"]
        if "data-chart" in a:
            chart = self.bars.setdefault(str(a["data-chart"]), {})
            chart[(str(a["data-label"]), str(a.get("data-series") or ""))] = float(
                str(a["data-value"])
            )
        if tag == "table" and a.get("id") == "batches":
            self._in_batches = True
        if self._in_batches and tag == "tr":
            self._row = []
        if self._row is not None and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_batches = False
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.batch_rows.append(self._row)
            self._row = None
        if self._key is not None and tag in ("span", "code"):
            self._key = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._key is not None:
            self.keys[self._key] = self.keys.get(self._key, "") + data
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def record_run(root: Path, ruleset: RuleSet) -> Path:
    reference = load_reference(
        write_reference(root / "ref", providers=PROVIDERS_CSV + "P004,ACTIVE,true\n")
    )
    write_csv(root / "inbox" / "b1.csv", ROWS)
    lake = root / "lake"
    eventlog.ensure_lake(lake)
    ticks = itertools.count()
    start = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC)

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=next(ticks))

    run_inbox(root / "inbox", RunContext(lake, reference, ruleset, RUN_ID, clock))
    catalog.refresh_catalog(lake)
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, ruleset_v1: RuleSet) -> Path:
    return record_run(tmp_path_factory.mktemp("report"), ruleset_v1)


@pytest.fixture(scope="module")
def rendered(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    reports = tmp_path_factory.mktemp("reports")
    facts = runlog.load_run_facts(lake)  # the latest run, which is the only one
    target = report_path(reports, facts.run_id)
    html = render_report(
        facts, None, generated_at=dt.datetime(2025, 1, 15, 3, 0, tzinfo=dt.UTC), target=target
    )
    return write_report(html, target), html


def one(lake: Path, sql: str) -> object:
    return run_query(lake, sql).rows[0][0]


def test_headline_figures_match_hand_computation_and_catalog(
    lake: Path, rendered: tuple[Path, str]
) -> None:
    page = parse(rendered[1])
    assert page.keys == {
        "run-id": RUN_ID,
        "batches": "1",
        "rows-in": "10",
        "cases-decided": "7",
        "cases-approved": "3",
        "cases-denied": "3",
        "cases-pended": "1",
        "rows-rejected": "3",
        "allowed": "$1,080.00",
        "paid": "$289.00",
        "queue-size": "1",
    }
    # The same figures, asked of the analyst catalog.
    assert one(lake, "SELECT count(*) FROM case_decisions") == 7
    assert one(lake, "SELECT count(*) FROM case_decisions WHERE status = 'APPROVED'") == 3
    assert one(lake, "SELECT count(*) FROM case_decisions WHERE status = 'DENIED'") == 3
    assert one(lake, "SELECT count(*) FROM rejections") == 3
    assert one(lake, "SELECT sum(rows_in) FROM batches") == 10
    assert one(lake, "SELECT sum(allowed_cents) FROM case_decisions") == 108000
    assert one(lake, "SELECT sum(paid_cents) FROM case_decisions") == 28900
    assert "denial rate 42.9%" in page.text  # 3 / 7
    assert "rejection rate 30.0%" in page.text  # 3 / 10


def test_charts_match_hand_computation_and_catalog(lake: Path, rendered: tuple[Path, str]) -> None:
    bars = parse(rendered[1]).bars
    assert bars["decisions-by-status"] == {
        ("APPROVED", "cases"): 3,
        ("PENDED", "cases"): 1,
        ("DENIED", "cases"): 3,
    }
    assert bars["denial-reasons"] == {
        ("CO-242", "denied cases"): 2,
        ("CO-197", "denied cases"): 1,
        ("CO-31", "denied cases"): 1,
        ("CO-B7", "denied cases"): 1,
    }
    reasons = run_query(
        lake,
        "SELECT code, count(*) FROM case_decisions, unnest(reason_codes) AS t(code) "
        "WHERE status = 'DENIED' GROUP BY code",
    ).rows
    assert {(str(code), "denied cases"): n for code, n in reasons} == bars["denial-reasons"]
    assert bars["provider-amounts"] == {
        ("P001", "allowed"): 70500,
        ("P001", "paid"): 16400,
        ("P004", "allowed"): 37500,
        ("P004", "paid"): 12500,
    }
    providers = run_query(
        lake,
        "SELECT c.provider_id, sum(d.allowed_cents), sum(d.paid_cents) "
        "FROM case_decisions d JOIN cases c USING (batch_id, case_id) "
        "WHERE d.status = 'APPROVED' GROUP BY ALL",
    ).rows
    assert {
        key: value
        for provider, allowed, paid in providers
        for key, value in (((provider, "allowed"), allowed), ((provider, "paid"), paid))
    } == bars["provider-amounts"]
    assert bars["rejection-errors"] == {
        ("billed_amount: must be a decimal amount with at most 2 decimal places", "errors"): 1,
        ("case_id: repeats the case_id of an earlier row of this batch", "errors"): 1,
        ("diagnosis_code: must have the ICD-10 shape (e.g. J45.909)", "errors"): 1,
        ("units: must be a whole number", "errors"): 1,
    }
    errors = run_query(lake, "SELECT e FROM rejections, unnest(errors) AS t(e)").rows
    assert {(str(e), "errors"): 1 for (e,) in errors} == bars["rejection-errors"]
    assert bars["allowed-split"] == {
        ("deductible (member)", ""): 75000,
        ("coinsurance (member)", ""): 4100,
        ("paid (plan)", ""): 28900,
    }
    assert run_query(
        lake,
        "SELECT sum(deductible_cents), sum(coinsurance_cents), sum(paid_cents) "
        "FROM case_decisions WHERE status = 'APPROVED'",
    ).rows == [(75000, 4100, 28900)]
    # M001 used 80.00 + 420.00 = 500.00 of 500.00; M002 250.00 of 250.00: both met.
    assert bars["deductible-buckets"] == {
        ("no deductible", "member-years"): 0,
        ("under 25 %", "member-years"): 0,
        ("25-50 %", "member-years"): 0,
        ("50-75 %", "member-years"): 0,
        ("75-99 %", "member-years"): 0,
        ("met (100 %)", "member-years"): 2,
    }
    # R6 (received 2024-05-10) waits when the run finishes on 2025-01-15: 250 days
    # (21 left in May, 214 in June-December, 15 in January).
    assert bars["pended-queue-age"] == {
        ("0-7 days", "cases"): 0,
        ("8-30 days", "cases"): 0,
        ("31-90 days", "cases"): 0,
        ("over 90 days", "cases"): 1,
    }
    assert "the oldest waits 250 day(s)" in "".join(parse(rendered[1]).text)


def test_batch_table_matches_the_batches_view(lake: Path, rendered: tuple[Path, str]) -> None:
    rows = parse(rendered[1]).batch_rows
    batch_id, source, status, rows_in, decided, rejected = run_query(
        lake, "SELECT batch_id, source, status, rows_in, rows_decided, rows_rejected FROM batches"
    ).rows[0]
    assert rows == [
        [
            "b1.csv",
            str(batch_id)[:12],
            "PROCESSED",
            "10",
            "7",
            "3",
            "3",  # approved
            "3",  # denied
            "1",  # pended
            "2025-01-15 02:00:00 UTC",
            "",
        ]
    ]
    assert (source, status, rows_in, decided, rejected) == ("b1.csv", "PROCESSED", 10, 7, 3)


def test_report_is_self_contained(rendered: tuple[Path, str]) -> None:
    page = parse(rendered[1])
    assert page.external == []
    assert "<script" not in rendered[1]
    assert rendered[1].count("<svg") == 7  # one inline SVG per chart


def test_unknown_run_and_missing_log_are_clear_errors(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(runlog.RunLogError, match="run 'nope' is not in the event log"):
        runlog.load_run_facts(lake, "nope")
    with pytest.raises(runlog.RunLogError, match="no event log here"):
        runlog.load_run_facts(tmp_path / "no-lake")


def test_a_run_that_recorded_nothing_still_gets_a_report(lake: Path, tmp_path: Path) -> None:
    facts = runlog.load_or_empty(lake, "empty-inbox-run")
    target = report_path(tmp_path, "empty-inbox-run")
    page = parse(
        render_report(
            facts, None, generated_at=dt.datetime(2025, 1, 16, tzinfo=dt.UTC), target=target
        )
    )
    assert page.keys["cases-decided"] == "0"
    assert "No batch was recorded by this run (empty inbox?)." in page.text


@pytest.mark.browser
def test_screenshot_in_headless_chromium(rendered: tuple[Path, str], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    shot = tmp_path / "run-report.png"
    completed = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1700",
            f"--screenshot={shot}",
            rendered[0].as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1700)
    # A blank page compresses to a few kB; charts, tables and text take far more.
    assert len(data) > 50_000
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    print(f"screenshot of the run report: {SCREENSHOT}")


@pytest.mark.browser
@needs_chromium
def test_report_opens_offline_and_shows_its_headline(rendered: tuple[Path, str]) -> None:
    # Everything is inline (CSS, SVG charts): with the network off the page is whole.
    with offline_page() as opened:
        page = opened.page
        page.goto(rendered[0].as_uri())
        page.wait_for_load_state("load")
        headline = page.locator(".banner .headline").inner_text()
        figures = {
            key: page.locator(f'[data-key="{key}"]').first.inner_text()
            for key in ("cases-decided", "rows-rejected", "paid")
        }
        charts = page.locator("svg").count()
        banner = page.evaluate(
            "() => getComputedStyle(document.querySelector('.banner')).backgroundColor"
        )
    assert opened.outside == []
    assert headline == (
        "Data-quality checks were not run for this report. ⚠ But 3 row(s) were rejected "
        "(see Batches and Rejected rows below)."
    )
    assert figures == {"cases-decided": "7", "rows-rejected": "3", "paid": "$289.00"}
    assert charts >= 4
    assert banner not in ("rgba(0, 0, 0, 0)", "transparent")  # the inline CSS applied


def test_cli_report_writes_the_page_and_refuses_unknown_runs(lake: Path, tmp_path: Path) -> None:
    if not ADJUDICATE.exists():
        pytest.skip("the adjudicate entry point is not installed (make install)")
    reports = tmp_path / "reports"
    ok = subprocess.run(
        [str(ADJUDICATE), "report", "--lake", str(lake), "--reports", str(reports), "--no-checks"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"report: {reports / 'runs' / 'run-report-run.html'}"
    html = (reports / "runs" / "run-report-run.html").read_text(encoding="utf-8")
    assert parse(html).keys["cases-decided"] == "7"
    # The error path in-process (a second interpreter costs seconds): one line, exit 2.
    unknown = CliRunner().invoke(
        cli.app, ["report", "--lake", str(lake), "--run", "nope", "--no-checks"]
    )
    assert (unknown.exit_code, unknown.stdout) == (2, "")
    assert unknown.stderr == "adjudicate: error: run 'nope' is not in the event log\n"
    missing = CliRunner().invoke(cli.app, ["report", "--lake", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.stderr == (
        f"adjudicate: error: {tmp_path / 'nowhere'}: no event log here "
        "(run `adjudicate run` first)\n"
    )


def test_regenerating_gives_the_same_page(lake: Path, tmp_path: Path) -> None:
    moment = dt.datetime(2025, 1, 15, 3, 0, tzinfo=dt.UTC)
    first = regenerate_report(lake, RUN_ID, tmp_path, checks=False, now=moment)
    text = first.report.read_text(encoding="utf-8")
    again = regenerate_report(lake, None, tmp_path, checks=False, now=moment)
    assert again.report == first.report == tmp_path / "runs" / "run-report-run.html"
    assert again.report.read_text(encoding="utf-8") == text


# An honest report (issue 19): rejections in the headline, unjudged drift, files left
# untouched, skipped batches with the batch they repeat.
#
# Night 1 (run-1): ok.csv (H1 approved) PROCESSED; bad.csv has no case_id column, so the
# whole file is REJECTED; notes.txt and .hidden.csv are not batches. Night 2 (run-2):
# the same two files again: both SKIPPED (same bytes), each seen before in run-1.


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory, ruleset_v1: RuleSet) -> Path:
    root = tmp_path_factory.mktemp("nights")
    reference = load_reference(write_reference(root / "reference"))
    inbox = root / "inbox"
    write_csv(inbox / "ok.csv", [case_row("H1", service_date="2024-05-01")])
    (inbox / "bad.csv").write_text("member_id,units\nM001,1\n", encoding="utf-8")
    (inbox / "notes.txt").write_text("not a batch\n", encoding="utf-8")
    (inbox / ".hidden.csv").write_text("case_id\nX\n", encoding="utf-8")
    lake = root / "lake"
    for night, run_id in enumerate(("run-1", "run-2")):
        ticks = itertools.count()
        start = dt.datetime(2025, 1, 15 + night, 2, 0, tzinfo=dt.UTC)

        def clock(start: dt.datetime = start, ticks: itertools.count[int] = ticks) -> dt.datetime:
            return start + dt.timedelta(seconds=next(ticks))

        eventlog.ensure_lake(lake)
        run_inbox(inbox, RunContext(lake, reference, ruleset_v1, run_id, clock))
    catalog.refresh_catalog(lake)
    return lake


def passed_gate(run_id: str, drift: list[DriftCheck]) -> QualityResult:
    outcomes = [
        CheckOutcome("claims_run_decisions", "status-allowed", "Status is allowed.", "critical",
                     True, 0, []),
        *[
            CheckOutcome("claims_run_drift", f"drift:{c.metric}", "drift", "warning", True, 0, [])
            for c in drift
        ],
    ]  # fmt: skip
    return QualityResult(run_id, outcomes, drift, None, rows_checked=1)


FEW_RUNS = "baseline needs 3 earlier run(s), found 0"
UNJUDGED = [
    DriftCheck("denial_rate", 0.0, None, 0, 0.0, 1.0, False, FEW_RUNS),
    DriftCheck("rejection_rate", 0.0, None, 0, 0.0, 1.0, False, FEW_RUNS),
]


def test_a_passed_gate_with_a_rejected_batch_says_so_in_the_headline(
    two_nights: Path, tmp_path: Path
) -> None:
    facts = runlog.load_run_facts(two_nights, "run-1")
    target = report_path(tmp_path, "run-1")
    html = render_report(
        facts,
        passed_gate("run-1", UNJUDGED),
        generated_at=dt.datetime(2025, 1, 15, 3, 0, tzinfo=dt.UTC),
        target=target,
        untouched=[".hidden.csv", "notes.txt"],
    )
    banner = re.search(
        r'<section class="banner (\w+)".*?<strong class="headline">(.*?)</strong>', html
    )
    assert banner is not None
    assert banner.group(1) == "warn"  # not "ok": a file was rejected
    assert unescape(banner.group(2)) == (
        "Data-quality gate passed: 1 of 1 judged expectations met; 2 drift check(s) not "
        "judged (baseline needs 3 earlier run(s), found 0). ⚠ But 1 batch file(s) were "
        "REJECTED (see Batches and Rejected rows below)."
    )
    # Unjudged drift expectations read "not judged", not "met".
    for metric in ("denial_rate", "rejection_rate"):
        row = re.search(rf'<tr data-check="drift:{metric}".*?</tr>', html)
        assert row is not None and "not judged" in row.group(0) and ">met<" not in row.group(0)
    # The files left untouched are named (spec §1).
    assert re.findall(r'<ul id="untouched">(.*?)</ul>', html) == [
        "<li><code>.hidden.csv</code></li><li><code>notes.txt</code></li>"
    ]


def test_skipped_batches_name_the_batch_they_repeat(two_nights: Path, tmp_path: Path) -> None:
    facts = runlog.load_run_facts(two_nights, "run-2")
    assert {facts.seen_before[b].source for b in facts.seen_before} == {"ok.csv", "bad.csv"}
    html = render_report(
        facts,
        None,
        generated_at=dt.datetime(2025, 1, 16, 3, 0, tzinfo=dt.UTC),
        target=report_path(tmp_path, "run-2"),
    )
    reasons = {row[0]: row[-1] for row in parse(html).batch_rows}
    assert reasons == {
        "ok.csv": "seen before as ok.csv (PROCESSED 2025-01-15 02:00 UTC, run run-1)",
        "bad.csv": "seen before as bad.csv (REJECTED 2025-01-15 02:00 UTC, run run-1)",
    }
    # The catalog keeps batches.reason null for SKIPPED batches (spec §7).
    skipped = run_query(
        two_nights, "SELECT count(*) FROM batches WHERE status = 'SKIPPED' AND reason IS NULL"
    ).rows
    assert skipped == [(2,)]
    summary = RunSummary(
        "run-2",
        "claims-standard v1",
        batches=[
            BatchOutcome(b, str(s), "SKIPPED")
            for b, s in facts.batches.select("batch_id", "source").rows()
        ],
        seen_before={b: seen.text() for b, seen in facts.seen_before.items()},
    )
    assert [line for line in summary.lines() if line.startswith("skipped")] == [
        f"skipped batch {source}: {reasons[source]}" for source in facts.batches["source"]
    ]
    assert {row["batch"]: row["reason"] for row in summary.batch_table()} == reasons
