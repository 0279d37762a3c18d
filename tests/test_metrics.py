"""Prometheus metrics of a run (claimsflow.ops.metrics): the .prom file and the Pushgateway."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from claimsflow.lake import eventlog
from claimsflow.ops import metrics
from claimsflow.ops.metrics import EventLogSize, RunMetrics
from claimsflow.ops.outputs import record_failed_run

FINISHED = dt.datetime(2025, 1, 15, 3, 0, tzinfo=dt.UTC)  # 1736910000
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def a_run(**overrides: object) -> RunMetrics:
    values: dict[str, object] = {
        "success": True,
        "finished_at": FINISHED,
        "event_log": EventLogSize(bytes=4096, files=12, batches=2),
        "duration_seconds": 42.5,
        "stage_seconds": {"batches": 30.0, "quality": 9.5},
        "cases_by_status": {"APPROVED": 6, "DENIED": 3, "PENDED": 1},
        "rows_in": 12,
        "rows_rejected": 2,
        "batches_by_status": {"PROCESSED": 2, "SKIPPED": 1},
        "quality_failures": {"claims_run_decisions": 0, "claims_run_drift": 1},
        "quality_ok": False,
    }
    values.update(overrides)
    return RunMetrics(**values)  # type: ignore[arg-type]


def test_a_completed_run_writes_every_gauge(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "claims.prom"
    metrics.write_metrics(a_run(), path)
    assert samples(path.read_text(encoding="utf-8")) == {
        ("claims_nightly_last_run_timestamp_seconds", ()): 1736910000.0,
        ("claims_nightly_last_run_success", ()): 1.0,
        ("claims_nightly_last_success_timestamp_seconds", ()): 1736910000.0,
        ("claims_nightly_duration_seconds", ()): 42.5,
        ("claims_nightly_stage_duration_seconds", (("stage", "batches"),)): 30.0,
        ("claims_nightly_stage_duration_seconds", (("stage", "quality"),)): 9.5,
        ("claims_nightly_cases", (("status", "APPROVED"),)): 6.0,
        ("claims_nightly_cases", (("status", "DENIED"),)): 3.0,
        ("claims_nightly_cases", (("status", "PENDED"),)): 1.0,
        ("claims_nightly_denial_ratio", ()): 0.3,  # 3 of 10 decided
        ("claims_nightly_rows_in", ()): 12.0,
        ("claims_nightly_rows_rejected", ()): 2.0,
        ("claims_nightly_rejection_ratio", ()): 2 / 12,
        ("claims_nightly_batches", (("status", "PROCESSED"),)): 2.0,
        ("claims_nightly_batches", (("status", "SKIPPED"),)): 1.0,
        ("claims_nightly_batches", (("status", "REJECTED"),)): 0.0,
        ("claims_nightly_quality_gate_ok", ()): 0.0,
        ("claims_nightly_quality_failed_expectations", (("suite", "claims_run_decisions"),)): 0.0,
        ("claims_nightly_quality_failed_expectations", (("suite", "claims_run_drift"),)): 1.0,
        ("claims_event_log_size_bytes", ()): 4096.0,
        ("claims_event_log_files", ()): 12.0,
        ("claims_event_log_batches", ()): 2.0,
    }
    # Written aside and renamed: nothing but the .prom file is left in the folder.
    assert [p.name for p in path.parent.iterdir()] == ["claims.prom"]


def test_a_run_with_nothing_new_has_no_ratios(tmp_path: Path) -> None:
    path = tmp_path / "claims.prom"
    metrics.write_metrics(a_run(cases_by_status={}, rows_in=0, rows_rejected=0), path)
    written = samples(path.read_text(encoding="utf-8"))
    assert ("claims_nightly_cases", (("status", "DENIED"),)) in written
    assert ("claims_nightly_denial_ratio", ()) not in written
    assert ("claims_nightly_rejection_ratio", ()) not in written


def test_a_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    reports = tmp_path / "reports"
    path = reports / "metrics" / "claims.prom"
    metrics.write_metrics(a_run(), path)
    later = FINISHED + dt.timedelta(days=1)
    assert record_failed_run(lake, reports, seconds=3.0, now=later, pushgateway_url="") == path
    written = samples(path.read_text(encoding="utf-8"))
    assert written[("claims_nightly_last_run_success", ())] == 0.0
    assert written[("claims_nightly_last_run_timestamp_seconds", ())] == later.timestamp()
    assert written[("claims_nightly_last_success_timestamp_seconds", ())] == 1736910000.0
    assert written[("claims_nightly_duration_seconds", ())] == 3.0
    # The failed run's figures are unknown: no case, row or quality gauge at all.
    assert not [name for name, _ in written if "cases" in name or "rows" in name]
    assert ("claims_nightly_quality_gate_ok", ()) not in written
    # The fresh lake: its _empty pseudo-batch is 6 Parquet files and no batch.
    assert written[("claims_event_log_batches", ())] == 0.0
    assert written[("claims_event_log_files", ())] == 6.0


def test_a_first_run_that_fails_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "claims.prom"
    metrics.write_metrics(a_run(success=False, cases_by_status=None), path)
    assert "claims_nightly_last_success_timestamp_seconds" not in path.read_text("utf-8")
    path.write_text("garbage {{{\n", encoding="utf-8")
    assert metrics.read_last_success(path) is None


def test_metrics_path_default_option_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(metrics.METRICS_FILE_ENV, raising=False)
    assert metrics.metrics_path(tmp_path) == tmp_path / "metrics" / "claims.prom"
    monkeypatch.setenv(metrics.METRICS_FILE_ENV, "/var/lib/node_exporter/claims.prom")
    assert metrics.metrics_path(tmp_path) == Path("/var/lib/node_exporter/claims.prom")
    assert metrics.metrics_path(tmp_path, tmp_path / "x.prom") == tmp_path / "x.prom"


class Gateway(http.server.BaseHTTPRequestHandler):
    """A Pushgateway stand-in: records each request's method, path and body."""

    received: ClassVar[list[tuple[str, str, str]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length).decode("utf-8")
        Gateway.received.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@pytest.fixture
def gateway() -> Iterator[str]:
    Gateway.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_are_pushed_when_a_gateway_is_set(tmp_path: Path, gateway: str) -> None:
    lake = tmp_path / "lake"
    warnings = metrics.publish_metrics(a_run(), tmp_path / "claims.prom", lake, gateway)
    assert warnings == []
    [(method, path, body)] = Gateway.received
    assert method == "PUT"
    # Grouping key: job, then the lake's absolute path (base64, as it holds slashes).
    assert path.startswith("/metrics/job/claims_nightly/lake@base64/")
    assert samples(body) == samples((tmp_path / "claims.prom").read_text(encoding="utf-8"))


def test_an_unreachable_gateway_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "claims.prom"
    # Port 9 (discard) on localhost: nothing listens there in the test environment.
    warnings = metrics.publish_metrics(a_run(), path, tmp_path, "http://127.0.0.1:9")
    assert len(warnings) == 1
    assert warnings[0].startswith("metrics not pushed to http://127.0.0.1:9: ")
    assert path.is_file()


def test_event_log_size_counts_the_log(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    files = [p for p in (lake / "events").rglob("*") if p.is_file()]
    size = metrics.event_log_size(lake)
    assert size == EventLogSize(sum(p.stat().st_size for p in files), len(files), 0)
    assert size.files == 6  # five tables of _empty + the empty skips file
