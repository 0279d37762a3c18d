"""The Grafana dashboard queries only metrics the pipeline writes (issue 8)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from claimsflow.ops.metrics import EventLogSize, RunMetrics, build_registry

DASHBOARD = Path(__file__).resolve().parents[1] / "monitoring" / "grafana-dashboard.json"


def written_metric_names() -> set[str]:
    """Every metric name of a complete, successful run's registry."""
    metrics = RunMetrics(
        success=True,
        finished_at=dt.datetime(2026, 11, 24, 2, 5, tzinfo=dt.UTC),
        event_log=EventLogSize(bytes=1000, files=6, batches=1),
        duration_seconds=12.5,
        stage_seconds={"adjudicate": 10.0},
        cases_by_status={"APPROVED": 3, "DENIED": 1, "PENDED": 1},
        rows_in=6,
        rows_rejected=1,
        batches_by_status={"PROCESSED": 1},
        quality_failures={"outputs": 0},
        quality_ok=True,
    )
    registry = build_registry(metrics, last_success=None)
    return {sample.name for family in registry.collect() for sample in family.samples}


def queried_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bclaims_[a-z_]+\b", expr)}


def test_every_dashboard_metric_is_written_by_the_pipeline() -> None:
    queried = queried_metric_names()
    assert queried, "the dashboard queries no claims_* metric"
    assert queried <= written_metric_names(), queried - written_metric_names()


def test_dashboard_covers_the_operational_questions() -> None:
    queried = queried_metric_names()
    # throughput, decisions by status, rejection rate, run duration, time since success
    for name in (
        "claims_nightly_cases",
        "claims_nightly_rejection_ratio",
        "claims_nightly_duration_seconds",
        "claims_nightly_last_success_timestamp_seconds",
    ):
        assert name in queried
