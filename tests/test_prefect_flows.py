"""How the flows are wired, without a server: retry policy, end states, artifacts' text.

The behaviour against a real Prefect server (worker, UI, PostgreSQL) is in
test_prefect_serve.py; these checks are the fast half.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.schemas.objects import State
from prefect.states import Failed

from adjudicate.serving import (
    REPORTS,
    SERVER,
    Stack,
    start_reports,
    stop_served,
    wait_until_serving_reports,
)
from claimsflow.core.reference import ReferenceDataError
from claimsflow.core.rules.ruleset import RuleSetError
from claimsflow.ingest.sql_source import SqlSourceError
from claimsflow.lake.lock import LakeBusy, writer_lock
from claimsflow.pipeline.batch import BatchOutcome
from claimsflow.pipeline.summary import RunSummary
from flows.adjudicate_batch import BatchChoiceError, _chosen_batch
from flows.common import (
    NO_REPORTS,
    REPORTS_HEADING,
    ReportLink,
    batch_run_markdown,
    completed,
    markdown_table,
    state_message,
)
from tasks.adjudication import (
    adjudicate_file,
    adjudicate_sql_increment,
    load_reference_data,
    pull_sql_increment,
    take_writer_lock,
)
from tasks.retry import retry_on_transient


def _failed(error: BaseException) -> bool:
    return retry_on_transient(None, None, Failed(data=error))  # type: ignore[arg-type]


def test_only_transient_source_errors_are_retried() -> None:
    assert _failed(LakeBusy("lake: held by pid 1"))
    assert _failed(sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert _failed(ConnectionResetError())
    assert not _failed(ReferenceDataError("members.csv: row 2, column member_id: missing"))
    assert not _failed(RuleSetError("no rule set has version '9'"))
    assert not _failed(SqlSourceError("sql:t@db: table has no ingest_seq column"))
    assert not _failed(BatchChoiceError("name exactly one batch"))
    assert not _failed(ValueError("anything else"))


def test_retries_are_set_on_reads_only() -> None:
    for task in (take_writer_lock, pull_sql_increment):
        assert task.retries == 3
        assert task.retry_condition_fn is retry_on_transient
        delays = task.retry_delay_seconds
        assert isinstance(delays, list) and delays == sorted(delays)  # back-off grows
    # Recording a batch twice would skip it: never retried. Nor is a validation step.
    for plain in (adjudicate_file, adjudicate_sql_increment, load_reference_data):
        assert plain.retries == 0


def test_the_lock_task_holds_the_writer_lock_until_closed(tmp_path: Path) -> None:
    held = take_writer_lock.fn(tmp_path, 1.0)
    with pytest.raises(LakeBusy), writer_lock(tmp_path, timeout=0.3):
        pass
    held.close()
    with writer_lock(tmp_path, timeout=0.3):
        pass


def _summary(*outcomes: BatchOutcome) -> RunSummary:
    return RunSummary(run_id="run-1", ruleset="claims-standard v1", batches=list(outcomes))


def test_a_partly_rejected_run_completes_with_a_warning() -> None:
    summary = _summary(
        BatchOutcome("a" * 64, "b1.csv", "PROCESSED", 4, 3, 1, seconds=0.2),
        BatchOutcome("b" * 64, "b2.csv", "REJECTED", reason="the file is empty"),
    )
    assert state_message(summary) == (
        "Completed with warnings: 2 batch(es): 1 processed, 0 skipped, 1 rejected; "
        "3 case(s) decided, 1 row(s) rejected"
    )
    clean = _summary(BatchOutcome("a" * 64, "b1.csv", "PROCESSED", 3, 3, 0))
    assert state_message(clean).startswith("Completed: 1 batch(es): 1 processed")
    state = completed(summary, "done")
    assert isinstance(state, State)
    assert state.is_completed() and state.message == "done" and state.data is summary


def test_summary_markdown_keeps_a_place_for_report_links() -> None:
    summary = _summary(BatchOutcome("a" * 64, "b|1.csv", "PROCESSED", 3, 3, 0, seconds=0.25))
    text = batch_run_markdown(summary, title="nightly-adjudication", seconds=1.5)
    assert "## nightly-adjudication: completed" in text
    assert "| b\\|1.csv | aaaaaaaaaaaa | PROCESSED | 3 | 3 | 0 | 0.25 |  |" in text
    assert text.rstrip().endswith(f"{REPORTS_HEADING}\n\n{NO_REPORTS}")
    linked = batch_run_markdown(
        summary,
        title="nightly-adjudication",
        seconds=1.5,
        reports=[ReportLink("daily report", "reports/daily.html")],
    )
    assert linked.rstrip().endswith("- [daily report](reports/daily.html)")
    assert markdown_table([]) == "_None._"


def test_adjudicate_batch_needs_exactly_one_batch(tmp_path: Path) -> None:
    batch = tmp_path / "b1.csv"
    batch.write_text("case_id\n")
    assert _chosen_batch(str(batch), "", "") == batch
    claims_837 = tmp_path / "b3.837"
    claims_837.write_text("ISA")
    assert _chosen_batch(str(claims_837), "", "") == claims_837
    assert _chosen_batch("", "sqlite:///x.db", "staged") == ("sqlite:///x.db", "staged")
    for args, problem in [
        (("", "", ""), "exactly one"),
        ((str(batch), "sqlite:///x.db", "staged"), "exactly one"),
        (("", "sqlite:///x.db", ""), "both source_url and source_table"),
        ((str(tmp_path / "missing.csv"), "", ""), "no such batch file"),
        ((str(tmp_path), "", ""), "no such batch file"),
        (("", "postgresql://u:s3cret@db/claims", "staged"), "must not carry a password"),
    ]:
        with pytest.raises(BatchChoiceError, match=problem):
            _chosen_batch(*args)
    hidden = tmp_path / ".b2.csv"
    hidden.write_text("case_id\n")
    with pytest.raises(BatchChoiceError, match="not a batch file"):
        _chosen_batch(str(hidden), "", "")


def test_serving_environment_is_local_and_quiet(tmp_path: Path) -> None:
    env = Stack(home=tmp_path, port=4999).env()
    assert env["PREFECT_HOME"] == str(tmp_path)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4999/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert Path(env["CLAIMS_PROJECT_DIR"]) == Path(__file__).resolve().parents[1]


def test_stop_ignores_a_pid_file_that_names_another_process(tmp_path: Path) -> None:
    stack = Stack(home=tmp_path)
    stack.pid_file(SERVER).write_text(str(os.getpid()))  # this test process: not a server
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        stop_served(stack)  # would end this process if it signalled it
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not stack.pid_file(SERVER).exists()


def test_the_reports_server_serves_reports_on_loopback_and_make_stop_ends_it(
    tmp_path: Path,
) -> None:
    from tests.prefect_support import free_port

    stack = Stack(home=tmp_path / "home", project_dir=tmp_path, reports_port=free_port())
    (tmp_path / "reports" / "runs").mkdir(parents=True)
    (tmp_path / "reports" / "runs" / "run-r1.html").write_text("<h1>r1</h1>")
    assert stack.env()["CLAIMS_REPORTS_URL"] == f"http://127.0.0.1:{stack.reports_port}/"
    reports = start_reports(stack)
    try:
        stack.pid_file(REPORTS).write_text(str(reports.pid))  # as `make serve` does
        wait_until_serving_reports(stack, reports)
        link = f"{stack.reports_url}runs/run-r1.html"
        with urllib.request.urlopen(link, timeout=10) as answer:  # noqa: S310 - loopback
            assert answer.read() == b"<h1>r1</h1>"
        stop_served(stack)  # `make stop`
        assert reports.wait(10) is not None
        assert not stack.pid_file(REPORTS).exists()
    finally:
        if reports.poll() is None:
            reports.kill()
            reports.wait()
