"""Prefect tasks and hooks that publish a nightly run's outputs (issue #5).

`publish_run_outputs` runs at the end of a completed run: the Great Expectations
gate (Data Docs under reports/gx-data-docs/), the HTML report under reports/runs/
and the Prometheus metrics file (reports/metrics/claims.prom or $CLAIMS_METRICS_FILE,
pushed to $PUSHGATEWAY_URL when set). `record_run_failure` is a flow state hook
(on_failure / on_crashed) that writes the metrics of a failed run, so the
"run failed" alert fires and "last success" keeps its real age.

Like tasks/adjudication.py, these wrap claimsflow functions and hold no logic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging import get_run_logger
from prefect.logging.loggers import flow_run_logger

from claimsflow.lake.storage import Location, StorageError, parse_location
from claimsflow.ops import outputs
from claimsflow.ops.outputs import RunOutputs
from claimsflow.pipeline.summary import RunSummary
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REPORTS


@task(name="publish-run-outputs", cache_policy=NONE)
def publish_run_outputs(
    lake: Location,
    run_id: str,
    summary: RunSummary,
    reports_dir: Path = DEFAULT_REPORTS,
    seconds: float | None = None,
    stage_seconds: Mapping[str, float] | None = None,
    checks: bool = True,
) -> RunOutputs:
    """Data-quality gate, HTML report and metrics of a completed run.

    Never fails the run for a failed expectation or an unreachable Pushgateway:
    those come back in `RunOutputs.warnings` (and are logged as warnings).
    `checks=False` skips the GX checkpoint (GX takes ~15 s to import).
    """
    published = outputs.publish_run_outputs(
        lake,
        run_id,
        summary,
        reports_dir,
        seconds=seconds,
        stage_seconds=stage_seconds,
        checks=checks,
    )
    logger = get_run_logger()
    logger.info("run report: %s", published.report)
    if published.data_docs is not None:
        logger.info("data docs: %s", published.data_docs)
    logger.info("metrics: %s", published.metrics)
    for warning in published.warnings:
        logger.warning(warning)
    return published


@task(name="publish-batch-report", cache_policy=NONE)
def publish_batch_report(
    lake: Location, run_id: str, reports_dir: Path = DEFAULT_REPORTS
) -> RunOutputs:
    """The HTML report of an ad-hoc run (no gate, no metrics: those are the nightly's)."""
    published = outputs.publish_batch_report(lake, run_id, reports_dir)
    get_run_logger().info("run report: %s", published.report)
    return published


def record_run_failure(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """Flow state hook (on_failure, on_crashed): metrics of the failed run.

    Reads the lake and reports folders from the run's parameters (`lake`,
    `reports`), with the flow's defaults when absent.
    """
    parameters = flow_run.parameters or {}
    try:
        lake: Location = parse_location(str(parameters.get("lake") or DEFAULT_LAKE))
    except StorageError:  # the run failed on that very text: there is no event log to size
        lake = Path(str(parameters.get("lake")))
    reports_dir = Path(str(parameters.get("reports") or DEFAULT_REPORTS))
    seconds = None
    if flow_run.start_time is not None:
        seconds = (dt.datetime.now(dt.UTC) - flow_run.start_time).total_seconds()
    logger = flow_run_logger(flow_run, flow)
    path = outputs.record_failed_run(lake, reports_dir, seconds=seconds)
    logger.warning("run %s ended %s: failure recorded in %s", flow_run.id, state.type.value, path)
