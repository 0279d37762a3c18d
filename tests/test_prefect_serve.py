"""The deployments served for real: Prefect server, process worker, UI, PostgreSQL.

The SQLite-backed server is the session's (tests/conftest.py: `prefect server start`
on a free loopback port, its home in a temporary folder, analytics off, started with
the functions `make serve` uses, adjudicate/serving.py); this module adds the work pool,
the deployments of the project's prefect.yaml and a worker. Every process started
here is stopped by the fixtures' `finally`.

The PostgreSQL-backed server is launched when the module starts (in a throwaway
database, dropped afterwards), so its start-up overlaps the deployments' set-up.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from adjudicate.serving import (
    Stack,
    create_work_pool,
    deploy,
    start_worker,
    stop,
    wait_until_healthy,
)
from claimsflow.lake.catalog import run_query
from tests.paths import REPO_ROOT
from tests.prefect_support import (
    QUIET_SERVICES,
    Api,
    free_port,
    start_test_server,
    write_batch,
    write_reference,
)

pytestmark = [pytest.mark.prefect, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_TEST = "test_postgres_backed_server_runs_flows"


@dataclass
class Launched:
    stack: Stack
    server: subprocess.Popen[bytes]


def _launch(home: Path, database_url: str) -> Launched:
    stack = Stack(
        home=home,
        port=free_port(),
        worker_poll_seconds=1,
        extra_env={"PREFECT_API_DATABASE_CONNECTION_URL": database_url, **QUIET_SERVICES},
    )
    return Launched(stack, start_test_server(stack))


def _pg_database() -> str | None:
    """A fresh database on the local PostgreSQL, or None when it does not answer."""
    import psycopg

    name = f"prefect_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    return name


def _drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def launched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Launched | None]]:
    """Start the PostgreSQL-backed server when the module starts, if a selected test
    needs it (its start-up overlaps the other tests of the module)."""
    servers: dict[str, Launched | None] = {"postgres": None}
    pg_name: str | None = None
    wanted_pg = any(item.name == PG_TEST for item in request.session.items)
    try:
        if wanted_pg and (pg_name := _pg_database()) is not None:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
            servers["postgres"] = _launch(tmp_path_factory.mktemp("prefect-home-pg"), url)
        yield servers
    finally:
        for server in servers.values():
            if server is not None:
                stop(server.server)
        if pg_name is not None:
            _drop_pg_database(pg_name)


@pytest.fixture(scope="module")
def stack(launched: dict[str, Launched | None], prefect_server: Stack) -> Iterator[Stack]:
    """The session's SQLite-backed server with the work pool, the deployments and a
    worker (`launched` first: the PostgreSQL-backed server starts up meanwhile)."""
    create_work_pool(prefect_server)
    # The worker starts up while the deployments are being registered.
    worker = start_worker(prefect_server)
    try:
        deploy(prefect_server)
        yield prefect_server
    finally:
        stop(worker)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Api]:
    client = Api(stack.api_url)
    try:
        yield client
    finally:
        client.close()


def _properties(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    schema: dict[str, Any] = deployment["parameter_openapi_schema"]
    properties: dict[str, dict[str, Any]] = schema["properties"]
    return properties


def test_deployments_expose_their_documented_parameters(api: Api, stack: Stack) -> None:
    deployments = api.deployments()
    assert set(deployments) == {
        "nightly",
        "adjudicate-batch",
        "what-if",
        "review-pended",
        "remit",
    }
    executor = {"executor", "partitions", "dask_address", "dask_workers",
                "dask_threads_per_worker"}  # fmt: skip
    expected = {
        "nightly": {"inbox", "reference", "lake", "ruleset", "run_date", "rules_dir",
                    "source_url", "source_table", "source_secret", "lock_wait_seconds",
                    "reports", "quality_checks", "remits", "quiet_seconds", "archive",
                    *executor},
        "adjudicate-batch": {"batch_file", "source_url", "source_table", "up_to_seq",
                             "source_secret", "reference", "lake", "ruleset", "run_date",
                             "rules_dir", "lock_wait_seconds", "reports", *executor},
        "what-if": {"date_from", "date_to", "ruleset", "lake", "reference", "rules_dir",
                    "reports_dir", "sample_size"},
        "review-pended": {"case_id", "decision", "reason_code", "examiner", "note",
                          "review_file", "lake", "reference", "rules_dir",
                          "lock_wait_seconds"},
        "remit": {"batch_id", "lake", "out_dir"},
    }  # fmt: skip
    for name, fields in expected.items():
        deployment = deployments[name]
        properties = _properties(deployment)
        assert set(properties) == fields, name
        # Every field has a description and a title; the form shows them.
        assert all(p.get("description") for p in properties.values()), name
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["work_pool_name"] == "claims-process"
        assert deployment["pull_steps"] == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": str(stack.project_dir)
                }
            }
        ]
    batch = _properties(deployments["adjudicate-batch"])
    assert batch["lake"]["default"] == "data/lake"
    # The executor is a choice in the form, partitions a bounded number; the nightly
    # deployment sets both explicitly (prefect.yaml).
    assert batch["executor"]["enum"] == ["local", "dask"]
    assert (batch["partitions"]["minimum"], batch["partitions"]["maximum"]) == (1, 1024)
    assert deployments["nightly"]["parameters"] == {"executor": "local", "partitions": 1}
    assert batch["lock_wait_seconds"]["minimum"] == 1
    what_if = deployments["what-if"]["parameter_openapi_schema"]
    assert set(what_if["required"]) == {"date_from", "date_to"}
    assert _properties(deployments["what-if"])["date_from"]["format"] == "date"
    assert _properties(deployments["what-if"])["ruleset"]["default"] == "2"

    # The review form: the decision is a choice of two (spec §8), nothing is required.
    review = deployments["review-pended"]["parameter_openapi_schema"]
    assert review.get("required", []) == []
    assert review["definitions"]["ReviewDecision"]["enum"] == ["APPROVE", "DENY"]

    # The remit form: the batch id is required, the folders have their defaults.
    remit = deployments["remit"]["parameter_openapi_schema"]
    assert remit["required"] == ["batch_id"]
    assert remit["properties"]["batch_id"]["minLength"] == 6
    assert remit["properties"]["out_dir"]["default"] == "reports/remits"
    assert _properties(deployments["nightly"])["remits"]["default"] is True

    nightly = deployments["nightly"]
    [schedule] = nightly["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "America/New_York"
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert deployments["adjudicate-batch"]["schedules"] == []

    # enforce_parameter_schema: the server refuses a run whose parameters break it.
    refused = api.create_run(deployments["adjudicate-batch"]["id"], {"lock_wait_seconds": 0})
    assert refused.status_code >= 400


def test_adjudicate_batch_runs_through_the_worker(api: Api, stack: Stack, tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "reference")
    batch = write_batch(tmp_path / "drop" / "claims-0001.csv")
    lake = tmp_path / "lake"
    bad_reference = write_reference(tmp_path / "bad-reference")
    (bad_reference / "members.csv").write_text(
        "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent\n"
        "M001,2024-13-01,,100.00,20\n"
    )
    bad_lake = tmp_path / "bad-lake"
    deployment = api.deployments()["adjudicate-batch"]["id"]
    good = api.run(
        deployment, {"batch_file": str(batch), "reference": str(reference), "lake": str(lake)}
    )
    bad = api.run(
        deployment,
        {"batch_file": str(batch), "reference": str(bad_reference), "lake": str(bad_lake)},
    )

    done = api.wait(good["id"])
    # One row of four rejected: the run completes, with a warning summary.
    assert done["state_type"] == "COMPLETED", _failure(done, stack)
    assert done["state"]["message"].startswith("Completed with warnings: 1 batch(es): 1 processed")
    decided = run_query(lake, "SELECT case_id, status FROM case_decisions ORDER BY case_id")
    assert decided.rows == [("W1", "APPROVED"), ("W3", "APPROVED"), ("W4", "APPROVED")]
    rejected = run_query(lake, "SELECT case_id, errors FROM rejections")
    assert rejected.rows == [("W2", ["units: must be between 1 and 999"])]
    artifacts = api.artifacts(good["id"])
    assert artifacts["adjudicate-batch-batches"]["type"] == "table"
    assert "claims-0001.csv" in artifacts["adjudicate-batch-batches"]["data"]
    summary = artifacts["adjudicate-batch-summary"]
    assert summary["type"] == "markdown"
    assert "### Reports" in summary["data"] and "completed with warnings" in summary["data"]

    failed = api.wait(bad["id"])
    # Reference data that cannot be read: Failed, with the file, row and column named.
    assert failed["state_type"] == "FAILED"
    assert "members.csv" in failed["state"]["message"]
    assert "coverage_start" in failed["state"]["message"]
    assert not bad_lake.exists()  # stopped before anything was written
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in api.task_runs(bad["id"])}
    assert tasks["load-reference-data"]["run_count"] == 1  # a validation error: no retry


def test_review_pended_decides_one_case_from_its_form(
    api: Api, stack: Stack, tmp_path: Path
) -> None:
    from tests.batch_helpers import write_csv
    from tests.batch_helpers import write_reference as write_fixture_reference
    from tests.lake_runner import run_lake
    from tests.review_helpers import first_batch

    reference = write_fixture_reference(tmp_path / "reference")
    write_csv(tmp_path / "inbox" / "a.csv", first_batch())
    lake = tmp_path / "lake"
    run_lake(tmp_path / "inbox", reference, lake)  # H1, H2 and H3 PENDED
    deployment = api.deployments()["review-pended"]["id"]
    form = {"case_id": "H1", "decision": "APPROVE", "examiner": "ann.lee", "note": "ok"}
    run = api.run(deployment, {**form, "lake": str(lake), "reference": str(reference)})
    done = api.wait(run["id"])
    assert done["state_type"] == "COMPLETED", _failure(done, stack)
    assert done["state"]["message"].startswith("Completed: review file form-")
    # H1: 300.00 allowed; M001 has used 80.00 (A1): all of it deductible, paid 0.
    decided = run_query(
        lake,
        "SELECT case_id, status, deductible_cents, paid_cents, decision_source, decided_by, "
        "note FROM case_decisions WHERE case_id = 'H1'",
    )
    assert decided.rows == [("H1", "APPROVED", 30_000, 0, "REVIEW", "ann.lee", "ok")]
    artifacts = api.artifacts(run["id"])
    assert artifacts["review-pended-rows"]["type"] == "table"
    assert artifacts["review-pended-summary"]["type"] == "markdown"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_custom_run_from_the_ui(api: Api, stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import Response, expect, sync_playwright

    reference = write_reference(tmp_path / "reference")
    batch = write_batch(tmp_path / "drop" / "claims-ui.csv")
    lake = tmp_path / "lake"
    run_name = f"ui-custom-{uuid.uuid4().hex[:8]}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(60_000)
            # What the server refused, for the failure message.
            refused: list[str] = []

            def note_refusal(response: Response) -> None:
                if response.status >= 500:
                    refused.append(f"{response.status} {response.request.url}")

            page.on("response", note_refusal)
            page.goto(f"{stack.url}/deployments")
            page.get_by_role("link", name="adjudicate-batch").first.click()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run").click()
            for name, value in (("batch_file", batch), ("reference", reference), ("lake", lake)):
                field = page.locator(".schema-form-property", has_text=f"{name} (Optional)")
                field.locator("textarea, input").first.fill(str(value))
            # Last: the form fills in a generated run name once it has loaded.
            page.locator(".flow-run-name-input input").fill(run_name)
            expect(page.locator(".flow-run-name-input input")).to_have_value(run_name)

            # The run the form created, by its lake: the session's server holds more runs
            # than one unfiltered page of /flow_runs/filter returns.
            deployment = api.deployments()["adjudicate-batch"]["id"]

            def created_by_the_form() -> list[dict[str, Any]]:
                runs = api.flow_runs_of_deployment(deployment)
                return [r for r in runs if r["parameters"].get("lake") == str(lake)]

            # A two-core machine running the suite on both cores can make the SQLite-backed
            # server answer the form's request with an error ("Oops. Something went
            # wrong."); the examiner then submits again, and so does the test (3 tries).
            # Only a new error toast counts: an earlier one may still be showing. Toasts are
            # left to expire; their own countdown ring covers their Close button.
            oops = page.get_by_text("Oops. Something went wrong.")
            found: list[dict[str, Any]] = []
            for _attempt in range(3):
                errors_before = oops.count()
                page.get_by_role("button", name="Submit").click()
                deadline = time.monotonic() + 100
                while not found and oops.count() <= errors_before and time.monotonic() < deadline:
                    time.sleep(0.5)
                    found = created_by_the_form()
                if not found:  # the error may have come after the run was created
                    time.sleep(2)
                    found = created_by_the_form()
                if found:
                    break
            if not found:
                shown = page.locator("body").inner_text()[-600:].replace("\n", " | ")
                log = stack.log_file("server")
                said = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
                raise AssertionError(
                    f"no run from the form; the server refused {refused}; {page.url} shows: "
                    f"{shown}; the server's log ends: {said}"
                )
            created = found[0]  # a second submit of the same batch is a SKIPPED run
            assert created["parameters"]["lake"] == str(lake)
            assert created["parameters"]["batch_file"] == str(batch)
            assert created["parameters"]["ruleset"] == ""  # the form's defaults went along
            done = api.wait(created["id"])
            assert done["state_type"] == "COMPLETED", _failure(done, stack)

            page.goto(f"{stack.url}/runs/flow-run/{created['id']}")
            page.locator(".state-badge", has_text="Completed").first.wait_for()
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("adjudicate-batch-batches").first.wait_for()
            page.get_by_text("adjudicate-batch-summary").first.wait_for()
        finally:
            browser.close()
    assert run_query(lake, "SELECT count(*) FROM case_decisions").rows == [(3,)]


@pytest.mark.postgres
def test_postgres_backed_server_runs_flows(
    launched: dict[str, Launched | None], tmp_path: Path
) -> None:
    served = launched["postgres"]
    if served is None:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432 (user postgres)")
    wait_until_healthy(served.stack, served.server)
    reference = write_reference(tmp_path / "reference")
    inbox = tmp_path / "inbox"
    write_batch(inbox / "claims-0001.csv")
    lake, reports = tmp_path / "lake", tmp_path / "reports"
    # The nightly flow, then a what-if of v2 over it, run against the PG-backed API.
    script = textwrap.dedent(
        f"""
        import datetime as dt
        from flows.nightly import nightly_adjudication
        from flows.what_if import what_if
        nightly_adjudication(inbox={str(inbox)!r}, reference={str(reference)!r},
                             lake={str(lake)!r}, run_date=dt.date(2024, 6, 1),
                             quiet_seconds=0)
        what_if(date_from=dt.date(2024, 4, 1), date_to=dt.date(2024, 4, 30), ruleset="2",
                reference={str(reference)!r}, lake={str(lake)!r}, reports_dir={str(reports)!r})
        """
    )
    env = {**served.stack.env(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = Api(served.stack.api_url)
    try:
        runs = api.flow_runs()
        states = sorted((r["state_type"], r["state"]["message"].split(":")[0]) for r in runs)
        assert states == [("COMPLETED", "Completed"), ("COMPLETED", "Completed with warnings")]
        keys: set[str] = set()
        for run in runs:
            keys |= set(api.artifacts(run["id"]))
        assert keys == {"nightly-batches", "nightly-summary", "what-if-changes", "what-if-summary"}
    finally:
        api.close()
    [report] = reports.glob("what-if-*.parquet")
    changes = pl.read_parquet(report).filter(pl.col("changed"))
    assert changes.select("case_id", "old_status", "new_status").rows() == [
        ("W3", "APPROVED", "PENDED")
    ]


def _failure(run: dict[str, Any], stack: Stack) -> str:
    """The run's state message and the end of the worker's log, for a failed assertion."""
    log = stack.log_file("worker").read_text(errors="replace").splitlines()
    return "\n".join([str(run["state"]["message"]), *log[-60:]])


def _eventually(probe: Any, timeout: float = 120.0) -> Any:
    # Generous: on a loaded 2-core machine the UI and the worker lag by tens of seconds.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError("nothing found in time")
