"""The artifacts of the `adjudicate-batch` and `review-pended` flows, read back from the
session's Prefect server over its REST API, and the artifact's link to the run report
followed in headless Chromium to the reports server of `make serve`
(adjudicate/serving.py), with the network off.

The flows run in one subprocess pointed at the session's server (the test process
keeps no Prefect settings of its own), with CLAIMS_REPORTS_URL set as `make serve`
sets it for its worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adjudicate.serving import Stack, start_reports, stop, wait_until_serving_reports
from tests.browser_support import needs_chromium, offline_page
from tests.paths import REPO_ROOT
from tests.prefect_support import (
    Api,
    cli_environment,
    free_port,
    write_batch,
    write_reference,
)
from tests.review_helpers import review_row, write_review

pytestmark = [pytest.mark.prefect, pytest.mark.e2e]

REPORT_LINK = re.compile(r"- \[Run report \(HTML\)\]\((http://[^)]+)\)")


@dataclass(frozen=True)
class Served:
    api: Api
    reports: Stack
    #: flow run name -> flow run (as the API returns it)
    runs: dict[str, dict[str, Any]]

    def artifacts(self, name: str) -> dict[str, dict[str, Any]]:
        return self.api.artifacts(self.runs[name]["id"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server: Stack) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("artifacts")
    project = root / "project"  # the reports server serves project/reports
    reports = Stack(home=root / "home", project_dir=project, reports_port=free_port())
    reference = write_reference(root / "reference")
    batch = write_batch(root / "drop" / "claims-0001.csv")
    # W3 is PENDED by v2 (billed 6,000.00 > 5,000.00); W1 was APPROVED: not reviewable.
    review = write_review(root / "review.csv", [review_row("W3"), review_row("W1")])
    token = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{token}" for k in ("batch", "again", "review")}
    common = (
        f"reference={str(reference)!r}, lake={str(root / 'lake')!r}, "
        f"reports={str(project / 'reports')!r}"
    )
    script = textwrap.dedent(
        f"""
        import datetime as dt
        from flows.adjudicate_batch import adjudicate_batch
        from flows.review_pended import review_pended
        for name in ({names["batch"]!r}, {names["again"]!r}):
            adjudicate_batch.with_options(flow_run_name=name)(
                batch_file={str(batch)!r}, ruleset="2", run_date=dt.date(2024, 6, 1), {common})
        review_pended.with_options(flow_run_name={names["review"]!r})(
            review_file={str(review)!r}, reference={str(reference)!r},
            lake={str(root / "lake")!r})
        """
    )
    env = cli_environment(
        prefect_server,
        root / "prefect-home",
        {"CLAIMS_REPORTS_URL": reports.reports_url, "PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    api = Api(prefect_server.api_url)
    server = start_reports(reports)
    try:
        wait_until_serving_reports(reports, server)
        runs = {k: api.flow_runs_named(name)[0] for k, name in names.items()}
        yield Served(api, reports, runs)
    finally:
        stop(server)
        api.close()


def test_adjudicate_batch_artifacts_hold_the_reports_batch_table(served: Served) -> None:
    artifacts = served.artifacts("batch")
    table = artifacts["adjudicate-batch-batches"]
    assert table["type"] == "table"
    [row] = _table(table)
    # W1: 80.00, all deductible (M001, 100.00), paid 0; W2 rejected (units 0); W3 PENDED;
    # W4: 50.00, M002 has no deductible, 10% coinsurance 5.00: paid 45.00.
    assert {k: v for k, v in row.items() if k != "batch_id"} == {
        "source": "claims-0001.csv",
        "status": "PROCESSED",
        "rows_in": 4,
        "decided": 3,
        "rejected": 1,
        "approved": 2,
        "denied": 0,
        "pended": 1,
        "paid": "$45.00",
        "reason": "",
    }
    summary = artifacts["adjudicate-batch-summary"]["data"]
    assert summary.startswith("## adjudicate-batch: completed with warnings")
    assert "- paid by the plan: $45.00" in summary
    assert "| units | must be between 1 and 999 | 1 |" in summary
    [link] = REPORT_LINK.findall(summary)
    run_id = served.runs["batch"]["id"]
    assert link == f"{served.reports.reports_url}runs/run-{run_id}.html"


def test_a_skipped_batch_names_the_run_it_repeats(served: Served) -> None:
    [row] = _table(served.artifacts("again")["adjudicate-batch-batches"])
    assert (row["status"], row["rows_in"], row["paid"]) == ("SKIPPED", 0, "$0.00")
    first = served.runs["batch"]["id"]
    assert row["reason"].startswith("seen before as claims-0001.csv (PROCESSED ")
    assert row["reason"].endswith(f", run {first})")


def test_review_pended_artifacts_list_cases_decided_and_rows_rejected(served: Served) -> None:
    artifacts = served.artifacts("review")
    rows = _table(artifacts["review-pended-rows"])
    assert [(r["case_id"], r["outcome"], r["paid_cents"]) for r in rows] == [
        ("W3", "APPROVED", 540_000),  # 6,000.00 allowed, M002: 10% coinsurance 600.00
        ("W1", "REJECTED", None),
    ]
    summary = artifacts["review-pended-summary"]["data"]
    assert "### Cases decided (1)" in summary
    assert "| 1 | W3 | APPROVED | ann.lee | $5,400.00 |" in summary
    assert "### Rows rejected (1)" in summary
    assert "| 2 | W1 | case_id: the case's latest decision is APPROVED, not PENDED |" in summary


def test_the_report_link_is_served_over_http(served: Served) -> None:
    summary = served.artifacts("batch")["adjudicate-batch-summary"]["data"]
    [link] = REPORT_LINK.findall(summary)
    with urllib.request.urlopen(link, timeout=30) as answer:  # noqa: S310 - our loopback server
        assert answer.status == 200
        assert "<h1>Claims adjudication run</h1>" in answer.read().decode("utf-8")


@pytest.mark.browser
@needs_chromium
def test_the_artifacts_link_opens_the_report_in_a_browser_offline(served: Served) -> None:
    summary = served.artifacts("batch")["adjudicate-batch-summary"]["data"]
    [link] = REPORT_LINK.findall(summary)
    assert link.startswith(f"http://127.0.0.1:{served.reports.reports_port}/")
    with offline_page() as opened:
        page = opened.page
        answer = page.goto(link)
        assert answer is not None and answer.status == 200
        headline = page.locator(".banner .headline").inner_text()
        run_id = page.locator('[data-key="run-id"]').inner_text()
        paid = page.locator('[data-key="paid"]').inner_text()
    assert opened.outside == []
    assert run_id == served.runs["batch"]["id"]
    assert headline == (
        "Data-quality checks were not run for this report. ⚠ But 1 row(s) were rejected "
        "(see Batches and Rejected rows below)."
    )
    assert paid == "$45.00"


def _table(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    data = artifact["data"]
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows
