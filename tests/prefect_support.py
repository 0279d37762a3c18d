"""Helpers of the orchestration tests: a small project data set and the Prefect REST API.

The tests talk to the real server over HTTP (httpx, installed with Prefect)
rather than through Prefect's client, so the test process needs no Prefect
settings of its own and cannot pick up a developer's profile by accident.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from adjudicate.serving import Stack, start_server, stop, wait_until_healthy

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

#: Server services the tests do not exercise, off so that fewer writers contend for
#: the SQLite database (the scheduler alone would insert the nightly's future runs).
#: The event persister and task-run recorder stay on (task runs and the UI need
#: them), flushing every second rather than every five, so that what a run sent
#: is in the database soon after it ends.
QUIET_SERVICES = {
    **{
        f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
        for name in (
            "SCHEDULER",
            "LATE_RUNS",
            "FOREMAN",
            "CANCELLATION_CLEANUP",
            "PAUSE_EXPIRATIONS",
            "REPOSSESSOR",
            "DB_VACUUM",
            "CLEANUP_RECONCILER",
            "TRIGGERS",
        )
    },
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    # A 503 under load says why in the server's log (a failing test quotes it).
    "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
}
#: A server runs none of the project's code: it is not measured by coverage (under
#: `pytest --cov` every Python subprocess otherwise is, which slows a server down).
UNMEASURED = {"COVERAGE_PROCESS_CONFIG": "", "COVERAGE_PROCESS_START": ""}

HEADER = (
    "case_id,member_id,provider_id,service_date,received_date,procedure_code,"
    "diagnosis_code,units,billed_amount,prior_auth_id"
)
#: Three valid cases and one invalid row (units 0): a partly rejected batch.
#: W3 is billed 6,000.00: approved by v1, pended by v2 (high dollar above 5,000.00).
BATCH_ROWS = (
    "W1,M001,P001,2024-04-01,2024-04-03,99213,J45.909,1,80.00,",
    "W2,M001,P001,2024-04-02,2024-04-04,99213,J45.909,0,80.00,",
    "W3,M002,P001,2024-04-05,2024-04-06,J9035,J45.909,1,6000.00,",
    "W4,M002,P001,2024-04-07,2024-04-08,99213,J45.909,1,50.00,",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_test_server(stack: Stack) -> subprocess.Popen[bytes]:
    """`prefect server start` for `stack`, outside coverage; returns the process."""
    return start_server(replace(stack, extra_env={**stack.extra_env, **UNMEASURED}))


@contextmanager
def running_server(home: Path, database_url: str | None = None) -> Iterator[Stack]:
    """A quiet Prefect server on a free loopback port (SQLite in `home` unless
    `database_url` names another database), healthy on entry, stopped on exit."""
    extra = dict(QUIET_SERVICES)
    if database_url is not None:
        extra["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    stack = Stack(home=home, port=free_port(), worker_poll_seconds=1, extra_env=extra)
    server = start_test_server(stack)
    try:
        wait_until_healthy(stack, server)
        yield stack
    finally:
        stop(server)


def write_reference(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
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


def write_batch(path: Path, rows: tuple[str, ...] = BATCH_ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


class _PatientClient(httpx.Client):
    """Retries a 503: a SQLite-backed test server on a loaded 2-core machine answers
    'Service Unavailable' while its database is busy; the request is fine a moment later."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = super().send(request, **kwargs)
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0):
            if response.status_code != 503:
                break
            response.close()
            time.sleep(delay)
            response = super().send(request, **kwargs)
        return response


class Api:
    """The few Prefect REST endpoints the tests use."""

    def __init__(self, api_url: str) -> None:
        self.client = _PatientClient(base_url=api_url, timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise AssertionError(f"{response.request.url}: {response.status_code} {response.text}")
        return response.json()

    def deployments(self) -> dict[str, dict[str, Any]]:
        found = self._json(self.client.post("/deployments/filter", json={}))
        return {d["name"]: d for d in found}

    def create_run(
        self, deployment_id: str, parameters: dict[str, Any], name: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"parameters": parameters}
        if name:
            body["name"] = name
        return self.client.post(f"/deployments/{deployment_id}/create_flow_run", json=body)

    def run(self, deployment_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Create a flow run of a deployment (refused parameters raise)."""
        created: dict[str, Any] = self._json(self.create_run(deployment_id, parameters))
        return created

    def flow_run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self._json(self.client.get(f"/flow_runs/{run_id}"))
        return run

    def flow_runs_named(self, name: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"name": {"any_": [name]}}}
        found: list[dict[str, Any]] = self._json(self.client.post("/flow_runs/filter", json=body))
        return found

    def flow_runs_of_deployment(self, deployment_id: str) -> list[dict[str, Any]]:
        """The deployment's 200 newest flow runs."""
        body = {
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
            "sort": "ID_DESC",
            "limit": 200,
        }
        found: list[dict[str, Any]] = self._json(self.client.post("/flow_runs/filter", json=body))
        return found

    def flow_runs(self) -> list[dict[str, Any]]:
        """Every flow run of the server, page by page: the session's server holds more
        than one page (the API returns 200 at most per call)."""
        found: list[dict[str, Any]] = []
        while True:
            body = {"sort": "ID_DESC", "limit": 200, "offset": len(found)}
            response = self.client.post("/flow_runs/filter", json=body)
            page: list[dict[str, Any]] = self._json(response)
            found += page
            if len(page) < 200:
                return found

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": [run_id]}}}
        found: list[dict[str, Any]] = self._json(self.client.post("/task_runs/filter", json=body))
        return found

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        found = self._json(self.client.post("/artifacts/filter", json=body))
        return {a["key"]: a for a in found}

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}}
        found: list[dict[str, Any]] = self._json(self.client.post("/logs/filter", json=body))
        return found

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event whose resource or related resource is the flow run."""
        body = {"filter": {"any_resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50}
        page: dict[str, Any] = self._json(self.client.post("/events/filter", json=body))
        found: list[dict[str, Any]] = list(page["events"])
        while page.get("next_page"):
            page = self._json(self.client.get(page["next_page"]))
            found.extend(page["events"])
        return found

    def wait(self, run_id: str, timeout: float = 150.0) -> dict[str, Any]:
        """Poll a flow run until it reaches a final state; returns the run."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(run_id)
            if run["state_type"] in FINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {run_id} still {run['state_type']} after {timeout}s")
            time.sleep(0.5)


def settled(probe: Callable[[], object], quiet: float = 3.0, timeout: float = 90.0) -> None:
    """Wait until `probe()` has answered the same for `quiet` seconds: the server's
    services record a run's events and task runs a moment after the client sent them."""
    deadline = time.monotonic() + timeout
    last, since = probe(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server was still recording after {timeout}s: {last!r}")
        time.sleep(0.5)
        now = probe()
        if now != last:
            last, since = now, time.monotonic()


def adjudicate_run_command(
    inbox: Path, reference: Path, lake: Path, reports: Path, *options: str, gate: bool = False
) -> list[str]:
    """`adjudicate run` of this interpreter's install on one world, rule set v1; without
    the data-quality gate unless `gate` (most process-level tests are not about it)."""
    return [
        str(Path(sys.executable).with_name("adjudicate")),
        "run",
        *([] if gate else ["--no-checks"]),
        "--inbox",
        str(inbox),
        "--reference",
        str(reference),
        "--lake",
        str(lake),
        "--reports",
        str(reports),
        "--ruleset",
        "1",
        # The tests write their inbox files just before the run: take them all.
        "--quiet-seconds",
        "0",
        *options,
    ]


def cli_environment(
    server: Stack, prefect_home: Path, extra: Mapping[str, str] = {}
) -> dict[str, str]:
    """The environment of an `adjudicate` subprocess on the session's Prefect server:
    this one's, without any CLAIMS_ or PREFECT_API setting, with its own Prefect home."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("CLAIMS_", "PREFECT_API"))
    }
    environment.update(
        extra,
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=server.api_url,
        COLUMNS="200",
    )
    return environment
