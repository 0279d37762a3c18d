"""Everything a finished nightly run publishes, in one call: the data-quality gate
(GX checkpoint and Data Docs), the HTML report, the Prometheus metrics.

Order matters: the gate runs first so the report shows its verdict, and the
metrics come last so they carry the gate's result and every stage's duration.
A gate that cannot run (a broken gx/ folder, say) is a warning on the report and
in the metrics, not a lost report: the run's decisions are already recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import duckdb

from claimsflow.lake.storage import Location
from claimsflow.ops import metrics, runlog, timeline
from claimsflow.ops.quality import (
    GX_DIR,
    DriftBand,
    GateState,
    QualityResult,
    run_quality_checks,
)
from claimsflow.ops.reporting.html import render_report, report_path, write_report
from claimsflow.progress import step
from claimsflow.text import first_line

if TYPE_CHECKING:
    # Only a type here: importing it loads the whole pipeline (Pandera), which
    # `adjudicate report` does not need.
    from claimsflow.pipeline.summary import RunSummary


#: The URL the reports folder is served at (set by `make serve`), for artifact links.
REPORTS_URL_ENV = "CLAIMS_REPORTS_URL"


@dataclass(frozen=True)
class RunOutputs:
    """Where a run's outputs went, and what needs a human's eye."""

    run_id: str
    report: Path
    data_docs: Path | None
    metrics: Path | None
    quality: QualityResult | None
    warnings: list[str] = field(default_factory=list)
    gate: GateState = GateState.NOT_REQUESTED
    #: batch_id -> "seen before as ... (when)" for each SKIPPED batch of the run.
    seen_before: dict[str, str] = field(default_factory=dict)
    #: The reports folder the files are in (for their URLs under REPORTS_URL_ENV).
    reports_dir: Path | None = None
    #: The run's facts the report was made from (for the flow's artifacts).
    facts: runlog.RunFacts | None = None

    @property
    def quality_ok(self) -> bool:
        return self.quality is not None and self.quality.success

    def links(self) -> list[tuple[str, str]]:
        """(title, URL) of the report and the Data Docs, for the flow's artifact: under
        $CLAIMS_REPORTS_URL when set (`make serve` serves reports/ over HTTP, which
        the Prefect UI can open), else file:// URIs (this machine only)."""
        links = [("Run report (HTML)", self.url_of(self.report))]
        if self.data_docs is not None:
            links.append(("Great Expectations Data Docs", self.url_of(self.data_docs)))
        return links

    def url_of(self, path: Path) -> str:
        base = os.environ.get(REPORTS_URL_ENV)
        if base and self.reports_dir is not None:
            try:
                relative = path.resolve().relative_to(self.reports_dir.resolve())
            except ValueError:
                return path.resolve().as_uri()
            return base.rstrip("/") + "/" + quote(relative.as_posix())
        return path.resolve().as_uri()


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

    `summary` is the run's own summary (batch durations, files left untouched,
    skipped batches); the figures come from the event log, as `adjudicate report`
    would read them. `seconds` is the run's duration so far and `stage_seconds` the
    durations the flow measured (reference, catalog, ...); this call adds its own
    stages (facts, quality, report, metrics).

    The gate runs only when the run processed a batch: a run that skipped or
    rejected every file (or found none) recorded no decision to check, and GX takes
    seconds to import.
    """
    finished = now or dt.datetime.now(dt.UTC)
    stages = dict(stage_seconds or {})
    if summary is not None:
        stages["batches"] = sum(b.seconds for b in summary.batches)
    started = time.perf_counter()
    warnings: list[str] = []
    quality: QualityResult | None = None
    gate = GateState.NOT_REQUESTED
    with _run_log(lake) as con:
        facts = runlog.facts_on(con, lake, run_id) if con is not None else None
        facts = facts or runlog.empty_facts(run_id)
        stages["facts"] = time.perf_counter() - started
        timeline.mark("facts")
        gate_started = time.perf_counter()
        if checks and facts.processed_batch_ids:
            step("data-quality gate")
        if checks and not facts.processed_batch_ids:
            gate = GateState.NOTHING_TO_CHECK
        elif checks and con is not None:
            try:
                quality = run_quality_checks(
                    con, facts, reports_dir, band, gx_dir=gx_dir, now=finished
                )
            except Exception as exc:  # reported, not raised: see the module docstring
                gate = GateState.FAILED_TO_RUN
                warnings.append(
                    f"data-quality checks could not run: {first_line(exc, with_type=True)}"
                )
            else:
                gate = GateState.RAN
                warnings += quality.warnings()
            stages["quality"] = time.perf_counter() - gate_started
    timeline.mark("gate")
    step("report")
    report_started = time.perf_counter()
    target = report_path(reports_dir, run_id)
    untouched = None if summary is None else list(summary.ignored)
    if untouched is not None:
        write_untouched(target, untouched)
    extra = [w for w in warnings if quality is None or w not in quality.warnings()]
    html = render_report(
        facts,
        quality,
        generated_at=finished,
        target=target,
        warnings=extra,
        gate=gate,
        untouched=untouched,
    )
    write_report(html, target)
    stages["report"] = time.perf_counter() - report_started
    timeline.mark("report")
    metrics_target = metrics.metrics_path(reports_dir, metrics_file)
    run_metrics = metrics.RunMetrics(
        success=True,
        finished_at=finished,
        event_log=metrics.event_log_size(lake),
        duration_seconds=None if seconds is None else seconds + time.perf_counter() - started,
        stage_seconds=stages,
        cases_by_status=dict(facts.status_counts),
        rows_in=facts.processed_sum("rows_in"),
        rows_rejected=facts.processed_sum("rows_rejected"),
        batches_by_status=Counter(str(s) for s in facts.batches["status"]),
        quality_failures=None if quality is None else _failures_by_suite(quality),
        quality_ok=gate_ok(gate, quality),
    )
    warnings += metrics.publish_metrics(run_metrics, metrics_target, lake, pushgateway_url)
    timeline.mark("metrics")
    return RunOutputs(
        run_id=run_id,
        report=target,
        data_docs=quality.data_docs if quality is not None else None,
        metrics=metrics_target,
        quality=quality,
        warnings=warnings,
        gate=gate,
        seen_before={b: seen.text() for b, seen in facts.seen_before.items()},
        reports_dir=reports_dir,
        facts=facts,
    )


def publish_batch_report(
    lake: Location,
    run_id: str,
    reports_dir: Path,
    *,
    now: dt.datetime | None = None,
) -> RunOutputs:
    """The HTML report of an ad-hoc run (`adjudicate-batch`): the nightly's page from
    the event log, without the data-quality gate or the metrics, which describe the
    nightly run (an ad-hoc batch must not stand in for its "last success")."""
    generated = now or dt.datetime.now(dt.UTC)
    with _run_log(lake) as con:
        facts = runlog.facts_on(con, lake, run_id) if con is not None else None
    facts = facts or runlog.empty_facts(run_id)
    target = report_path(reports_dir, run_id)
    html = render_report(
        facts, None, generated_at=generated, target=target, gate=GateState.NOT_REQUESTED
    )
    write_report(html, target)
    return RunOutputs(
        run_id=run_id,
        report=target,
        data_docs=None,
        metrics=None,
        quality=None,
        seen_before={b: seen.text() for b, seen in facts.seen_before.items()},
        reports_dir=reports_dir,
        facts=facts,
    )


def untouched_path(report: Path) -> Path:
    """Beside the report: the inbox entries the run left untouched. They are not in the
    event log (they are not batches), so a regenerated report reads them from here."""
    return report.with_name(f"{report.stem}.untouched.json")


def write_untouched(report: Path, names: list[str]) -> None:
    target = untouched_path(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.tmp")
    aside.write_text(json.dumps({"untouched": names}), encoding="utf-8")
    os.replace(aside, target)


def read_untouched(report: Path) -> list[str] | None:
    try:
        names = json.loads(untouched_path(report).read_text(encoding="utf-8"))["untouched"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def gate_ok(gate: GateState, quality: QualityResult | None) -> bool | None:
    """The metric's value: None (no gauge) when the gate was not asked for or had
    nothing to check, 0 when it failed or could not run."""
    if gate in (GateState.NOT_REQUESTED, GateState.NOTHING_TO_CHECK):
        return None
    return quality is not None and quality.success


@contextmanager
def _run_log(lake: Location) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The event log's connection for the run's facts and gate; None when the lake has
    no event log yet (nothing was ever recorded)."""
    try:
        con = runlog.open_event_log(lake)
    except runlog.RunLogError:
        yield None
        return
    try:
        yield con
    finally:
        con.close()


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
    con = runlog.open_event_log(lake)
    try:
        chosen = runlog.resolve_run(con, run_id)
        facts = runlog.facts_of(con, lake, chosen)
        quality = None
        gate = GateState.NOT_REQUESTED
        if checks and facts.processed_batch_ids:
            step("data-quality gate")
        if checks and not facts.processed_batch_ids:
            gate = GateState.NOTHING_TO_CHECK
        elif checks:
            quality = run_quality_checks(
                con, facts, reports_dir, band, gx_dir=gx_dir, now=generated
            )
            gate = GateState.RAN
    finally:
        con.close()
    target = report_path(reports_dir, facts.run_id)
    html = render_report(
        facts,
        quality,
        generated_at=generated,
        target=target,
        gate=gate,
        untouched=read_untouched(target),
    )
    write_report(html, target)
    return RunOutputs(
        run_id=facts.run_id,
        report=target,
        data_docs=quality.data_docs if quality is not None else None,
        metrics=None,
        quality=quality,
        warnings=quality.warnings() if quality is not None else [],
        gate=gate,
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
