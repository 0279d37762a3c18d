"""Prometheus metrics of the nightly run, for the node-exporter textfile collector.

Each run rewrites one `.prom` file (text exposition format) in one step: the
file is written aside and renamed over the old one, so the collector never reads
half a file. When PUSHGATEWAY_URL is set the same metrics are also pushed there
(a failed push is a warning, never a failed run). monitoring/alerts.yml holds
the alert rules built on these names; docs/operations.md says what to do.

A failed run writes `claims_nightly_last_run_success 0` and carries the
timestamp of the last successful run over from the previous file, so "no
successful run for 26 h" keeps counting from the right moment.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from claimsflow.lake import eventlog
from claimsflow.lake.storage import Location, describe
from claimsflow.vocabulary import BATCH_STATUSES

METRICS_FILE_ENV = "CLAIMS_METRICS_FILE"
PUSHGATEWAY_ENV = "PUSHGATEWAY_URL"
JOB = "claims_nightly"
PUSH_TIMEOUT_SECONDS = 10.0

LAST_SUCCESS = "claims_nightly_last_success_timestamp_seconds"
CASE_STATUSES = ("APPROVED", "DENIED", "PENDED")


def metrics_path(reports_dir: Path, configured: Path | None = None) -> Path:
    """`configured`, else $CLAIMS_METRICS_FILE, else reports/metrics/claims.prom."""
    if configured is not None:
        return configured
    from_env = os.environ.get(METRICS_FILE_ENV, "").strip()
    return Path(from_env) if from_env else reports_dir / "metrics" / "claims.prom"


@dataclass(frozen=True)
class EventLogSize:
    bytes: int
    files: int
    batches: int


def event_log_size(lake: Location) -> EventLogSize:
    """Bytes and files under lake/events/, and recorded batch folders (not `_empty`)."""
    return EventLogSize(*eventlog.log_size(lake))


@dataclass(frozen=True)
class RunMetrics:
    """What one nightly run reports. A failed run has no counts (None)."""

    success: bool
    finished_at: dt.datetime
    event_log: EventLogSize
    duration_seconds: float | None = None
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    cases_by_status: Mapping[str, int] | None = None
    rows_in: int | None = None
    rows_rejected: int | None = None
    batches_by_status: Mapping[str, int] | None = None
    #: Failed expectations per GX suite; None when the gate did not run.
    quality_failures: Mapping[str, int] | None = None
    quality_ok: bool | None = None


def build_registry(metrics: RunMetrics, last_success: float | None) -> CollectorRegistry:
    """The run's gauges. Ratios are left out when their denominator is 0: a run with
    nothing new to decide says nothing about denial or rejection rates."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labelnames=labels, registry=registry)

    finished = metrics.finished_at.timestamp()
    gauge("claims_nightly_last_run_timestamp_seconds", "End of the last nightly run.").set(finished)
    gauge(
        "claims_nightly_last_run_success", "1 if the last nightly run completed, 0 if it failed."
    ).set(1 if metrics.success else 0)
    success_at = finished if metrics.success else last_success
    if success_at is not None:
        gauge(LAST_SUCCESS, "End of the last nightly run that completed.").set(success_at)
    if metrics.duration_seconds is not None:
        gauge("claims_nightly_duration_seconds", "Duration of the last nightly run.").set(
            metrics.duration_seconds
        )
    if metrics.stage_seconds:
        stages = gauge(
            "claims_nightly_stage_duration_seconds",
            "Duration of each stage of the last nightly run.",
            ("stage",),
        )
        for stage, seconds in sorted(metrics.stage_seconds.items()):
            stages.labels(stage=stage).set(seconds)
    if metrics.cases_by_status is not None:
        cases = gauge("claims_nightly_cases", "Cases decided by the last nightly run.", ("status",))
        for status in CASE_STATUSES:
            cases.labels(status=status).set(metrics.cases_by_status.get(status, 0))
        decided = sum(metrics.cases_by_status.values())
        if decided:
            gauge(
                "claims_nightly_denial_ratio", "Denied cases / decided cases of the last run."
            ).set(metrics.cases_by_status.get("DENIED", 0) / decided)
    if metrics.rows_in is not None and metrics.rows_rejected is not None:
        gauge("claims_nightly_rows_in", "Rows read from processed batches by the last run.").set(
            metrics.rows_in
        )
        gauge("claims_nightly_rows_rejected", "Rows rejected by the last nightly run.").set(
            metrics.rows_rejected
        )
        if metrics.rows_in:
            gauge("claims_nightly_rejection_ratio", "Rows rejected / rows in of the last run.").set(
                metrics.rows_rejected / metrics.rows_in
            )
    if metrics.batches_by_status is not None:
        batches = gauge(
            "claims_nightly_batches", "Batches of the last nightly run by status.", ("status",)
        )
        for status in BATCH_STATUSES:
            batches.labels(status=status).set(metrics.batches_by_status.get(status, 0))
    if metrics.quality_ok is not None:
        gauge(
            "claims_nightly_quality_gate_ok",
            "1 if every data-quality expectation of the last run was met, 0 if not "
            "(or the checks could not run).",
        ).set(1 if metrics.quality_ok else 0)
    if metrics.quality_failures is not None:
        failed = gauge(
            "claims_nightly_quality_failed_expectations",
            "Data-quality expectations the last run did not meet, per GX suite.",
            ("suite",),
        )
        for suite, count in sorted(metrics.quality_failures.items()):
            failed.labels(suite=suite).set(count)
    gauge("claims_event_log_size_bytes", "Bytes of the event log (lake/events).").set(
        metrics.event_log.bytes
    )
    gauge("claims_event_log_files", "Files of the event log (lake/events).").set(
        metrics.event_log.files
    )
    gauge("claims_event_log_batches", "Batches recorded in the event log.").set(
        metrics.event_log.batches
    )
    return registry


def read_last_success(path: Path) -> float | None:
    """The last-success timestamp of an earlier metrics file (None if none or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:  # a damaged file: start afresh rather than fail the run
        return None
    return None


def write_metrics(metrics: RunMetrics, path: Path) -> CollectorRegistry:
    """Rewrite the .prom file atomically; returns the registry (for a push)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    registry = build_registry(metrics, read_last_success(path))
    # write_to_textfile writes `<path>.<pid>.<thread>` and renames it over `path`;
    # the collector only reads *.prom, so it never sees the partial file.
    write_to_textfile(str(path), registry)
    return registry


def push_metrics(registry: CollectorRegistry, url: str, lake: Location) -> None:
    """Replace this lake's group on the Pushgateway with the registry's metrics."""
    push_to_gateway(
        url,
        job=JOB,
        registry=registry,
        grouping_key={"lake": describe(lake)},
        timeout=PUSH_TIMEOUT_SECONDS,
    )


def publish_metrics(
    metrics: RunMetrics, path: Path, lake: Location, pushgateway_url: str | None = None
) -> list[str]:
    """Write the file, push when a gateway is configured; returns warnings (push failures)."""
    registry = write_metrics(metrics, path)
    url = pushgateway_url if pushgateway_url is not None else os.environ.get(PUSHGATEWAY_ENV)
    if not url:
        return []
    try:
        push_metrics(registry, url, lake)
    except Exception as exc:  # the run's results stand; monitoring says the rest
        return [f"metrics not pushed to {url}: {str(exc).splitlines()[0] if str(exc) else exc!r}"]
    return []
