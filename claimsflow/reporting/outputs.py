"""Everything a finished nightly run publishes, in one call: the data-quality gate
(GX checkpoint and Data Docs), the HTML report, the Prometheus metrics.

Order matters: the gate runs first so the report shows its verdict, and the
metrics come last so they carry the gate's result and every stage's duration.
A gate that cannot run (a broken gx/ folder, say) is a warning on the report and
in the metrics, not a lost report: the run's decisions are already recorded.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claimsflow import metrics
from claimsflow.quality import GX_DIR, DriftBand, QualityResult, run_quality_checks
from claimsflow.reporting import runlog
from claimsflow.reporting.html import render_report, report_path, write_report
from claimsflow.storage import Location

if TYPE_CHECKING:
    # Only a type here: importing it loads the whole pipeline (Pandera), which
    # `adjudicate report` does not need.
    from claimsflow.run_summary import RunSummary


@dataclass(frozen=True)
class RunOutputs:
    """Where a run's outputs went, and what needs a human's eye."""

    run_id: str
    report: Path
    data_docs: Path | None
    metrics: Path | None
    quality: QualityResult | None
    warnings: list[str] = field(default_factory=list)

    @property
    def quality_ok(self) -> bool:
        return self.quality is not None and self.quality.success

    def links(self) -> list[tuple[str, str]]:
        """(title, file:// URI) of the report and the Data Docs, for the flow's artifact."""
        links = [("Run report (HTML)", self.report.resolve().as_uri())]
        if self.data_docs is not None:
            links.append(("Great Expectations Data Docs", self.data_docs.resolve().as_uri()))
        return links


def publish_run_outputs(
    lake: Location,
    run_id: str,
    summary: RunSummary | None,
    reports_dir: Path,
    *,
    seconds: float | None = None,
    stage_seconds: Mapping[str, float] | None = None,
    band: DriftBand | None = None,
    metrics_file: Path | None = None,
    pushgateway_url: str | None = None,
    checks: bool = True,
    gx_dir: Path = GX_DIR,
    now: dt.datetime | None = None,
) -> RunOutputs:
    """Gate, report and metrics of run `run_id` (which has completed).

    `summary` is the run's own summary (batch durations); the figures come from
    the event log, as `adjudicate report` would read them. `seconds` is the run's
    duration so far and `stage_seconds` the durations the flow measured (reference,
    catalog, ...); this call adds its own stages.
    """
    finished = now or dt.datetime.now(dt.UTC)
    stages = dict(stage_seconds or {})
    if summary is not None:
        stages["batches"] = sum(b.seconds for b in summary.batches)
    started = time.perf_counter()
    facts = runlog.load_or_empty(lake, run_id)
    warnings: list[str] = []
    quality: QualityResult | None = None
    if checks:
        try:
            quality = run_quality_checks(facts, reports_dir, band, gx_dir=gx_dir, now=finished)
        except Exception as exc:  # reported, not raised: see the module docstring
            warnings.append(f"data-quality checks could not run: {_first_line(exc)}")
        else:
            warnings += quality.warnings()
        stages["quality"] = time.perf_counter() - started
    report_started = time.perf_counter()
    target = report_path(reports_dir, run_id)
    extra = [w for w in warnings if quality is None or w not in quality.warnings()]
    html = render_report(facts, quality, generated_at=finished, target=target, warnings=extra)
    write_report(html, target)
    stages["report"] = time.perf_counter() - report_started
    metrics_target = metrics.metrics_path(reports_dir, metrics_file)
    run_metrics = metrics.RunMetrics(
        success=True,
        finished_at=finished,
        event_log=metrics.event_log_size(lake),
        duration_seconds=None if seconds is None else seconds + time.perf_counter() - started,
        stage_seconds=stages,
        cases_by_status=runlog.status_counts(facts.decisions),
        rows_in=_processed_sum(facts, "rows_in"),
        rows_rejected=_processed_sum(facts, "rows_rejected"),
        batches_by_status=Counter(str(s) for s in facts.batches["status"]),
        quality_failures=None if quality is None else _failures_by_suite(quality),
        quality_ok=None if not checks else quality is not None and quality.success,
    )
    warnings += metrics.publish_metrics(run_metrics, metrics_target, lake, pushgateway_url)
    return RunOutputs(
        run_id=run_id,
        report=target,
        data_docs=quality.data_docs if quality is not None else None,
        metrics=metrics_target,
        quality=quality,
        warnings=warnings,
    )


def regenerate_report(
    lake: Location,
    run_id: str | None,
    reports_dir: Path,
    *,
    checks: bool = True,
    band: DriftBand | None = None,
    gx_dir: Path = GX_DIR,
    now: dt.datetime | None = None,
) -> RunOutputs:
    """`adjudicate report`: the report of a recorded run (default: the latest), from the
    event log alone. Raises runlog.RunLogError for a missing log or an unknown run."""
    generated = now or dt.datetime.now(dt.UTC)
    facts = runlog.load_run_facts(lake, run_id)
    quality = None
    if checks:
        quality = run_quality_checks(facts, reports_dir, band, gx_dir=gx_dir, now=generated)
    target = report_path(reports_dir, facts.run_id)
    write_report(render_report(facts, quality, generated_at=generated, target=target), target)
    return RunOutputs(
        run_id=facts.run_id,
        report=target,
        data_docs=quality.data_docs if quality is not None else None,
        metrics=None,
        quality=quality,
        warnings=quality.warnings() if quality is not None else [],
    )


def record_failed_run(
    lake: Location,
    reports_dir: Path,
    *,
    seconds: float | None = None,
    metrics_file: Path | None = None,
    pushgateway_url: str | None = None,
    now: dt.datetime | None = None,
) -> Path:
    """Metrics of a run that failed: success 0, the last success carried over.

    Returns the metrics file. A failed push is not raised: the run already failed.
    """
    failed = metrics.RunMetrics(
        success=False,
        finished_at=now or dt.datetime.now(dt.UTC),
        event_log=metrics.event_log_size(lake),
        duration_seconds=seconds,
    )
    target = metrics.metrics_path(reports_dir, metrics_file)
    metrics.publish_metrics(failed, target, lake, pushgateway_url)
    return target


def _failures_by_suite(quality: QualityResult) -> dict[str, int]:
    counts = dict.fromkeys((o.suite for o in quality.outcomes), 0)
    for outcome in quality.failures:
        counts[outcome.suite] += 1
    return counts


def _processed_sum(facts: runlog.RunFacts, column: str) -> int:
    processed = facts.batches.filter(facts.batches["status"] == "PROCESSED")
    return int(processed[column].sum())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
