"""The run report: one self-contained HTML file per run under reports/runs/.

Everything is inline (CSS in a <style>, charts as SVG): the file opens offline,
from a mail attachment or an artifact store, with nothing to fetch and no script
to run. The headline figures carry `data-key` attributes and the charts
`data-chart`/`data-value` ones, so tests read what the page shows.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Sequence
from html import escape
from pathlib import Path

import polars as pl

from claimsflow.ops.quality import CheckOutcome, DriftCheck, GateState, QualityResult
from claimsflow.ops.reporting.svg import (
    Series,
    bar_chart,
    count_text,
    money_text,
    percent_text,
    stacked_bar,
)
from claimsflow.ops.runlog import QueueProfile, RunFacts
from claimsflow.text import printable, shown_name
from claimsflow.vocabulary import APPROVED, DENIED, PENDED, REJECTED, SKIPPED

RUNS_FOLDER = "runs"
TOP_N = 10

STATUS_COLORS = {APPROVED: "#2e7d32", PENDED: "#f9a825", DENIED: "#c62828"}
OTHER_STATUS_COLOR = "#78909c"
ALLOWED_COLOR, PAID_COLOR = "#90a4ae", "#1565c0"
DEDUCTIBLE_COLOR, COINSURANCE_COLOR = "#8e24aa", "#fb8c00"
REJECTION_COLOR, BUCKET_COLOR, REASON_COLOR = "#6d4c41", "#5e35b1", "#c62828"


def report_path(reports_dir: Path, run_id: str) -> Path:
    """reports/runs/run-<run id>.html (characters unsafe in a file name become `_`)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return reports_dir / RUNS_FOLDER / f"run-{safe}.html"


def write_report(html: str, target: Path) -> Path:
    """Write the page whole or not at all (a reader never sees half a report)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    aside.write_text(html, encoding="utf-8")
    os.replace(aside, target)
    return target


def render_report(
    facts: RunFacts,
    quality: QualityResult | None,
    *,
    generated_at: dt.datetime,
    target: Path,
    warnings: Sequence[str] = (),
    top_n: int = TOP_N,
    gate: GateState | None = None,
    untouched: Sequence[str] | None = None,
) -> str:
    """The HTML page of one run; `target` is where it will be written (for relative links).

    `gate` says whether the data-quality gate ran (default: it ran if `quality` is
    given); `untouched` names the inbox entries that were not batches (hidden files,
    other extensions: spec §1), None when unknown (a report regenerated without them).
    """
    if gate is None:
        gate = GateState.RAN if quality is not None else GateState.NOT_REQUESTED
    statuses = facts.status_counts
    sections = [
        _header(facts, generated_at),
        _quality_banner(facts, quality, warnings, gate),
        _kpis(facts, statuses),
        '<div class="grid">',
        _card("Decisions by status", _status_chart(statuses)),
        _card(f"Top denial reasons (top {top_n})", _reasons_chart(facts, top_n)),
        _card(
            f"Paid vs allowed by provider (top {top_n} by allowed, approved cases)",
            _provider_chart(facts, top_n),
        ),
        _card("Rejected rows by column and error", _rejections_chart(facts)),
        _card("Where the allowed amount went (approved cases)", _split_chart(facts)),
        _card(
            "Deductible consumption: member-years by share of the annual deductible used",
            _deductible_chart(facts),
        ),
        _card("Work queue: PENDED cases by days since received", _queue_chart(facts.queue)),
        "</div>",
        _card("Batches", _batch_table(facts), wide=True),
        _untouched(untouched),
        _quality_details(quality, target, gate),
        _footer(facts),
    ]
    return _page(f"Claims run {facts.run_id}", "\n".join(s for s in sections if s))


# Sections.


def _header(facts: RunFacts, generated_at: dt.datetime) -> str:
    rulesets = ", ".join(facts.rulesets) or "—"
    span = (
        f"{_when(facts.started_at)} → {_when(facts.finished_at)}"
        if facts.started_at
        else "no batch recorded"
    )
    return (
        "<header><h1>Claims adjudication run</h1>"
        f'<p class="meta">run <code data-key="run-id">{escape(facts.run_id)}</code> · '
        f"rule set {escape(rulesets)} · batches recorded {escape(span)} · "
        f"report generated {escape(_when(generated_at))}</p></header>"
    )


def _quality_banner(
    facts: RunFacts, quality: QualityResult | None, extra: Sequence[str], gate: GateState
) -> str:
    """The headline: the gate's verdict, and whatever else of the run needs a look
    (rejected batches and rows), so that a passed gate never reads as a clean run."""
    lines = list(extra)
    attention = _rejections_line(facts)
    if (quality is None and gate is GateState.FAILED_TO_RUN) or (quality is None and lines):
        state, title = "fail", "⚠ Data-quality checks could not run for this run."
    elif quality is None and gate is GateState.NOTHING_TO_CHECK:
        state = "warn" if attention else "unknown"
        title = "No batch was processed: the data-quality gate had no decision to check."
    elif quality is None:
        state, title = "unknown", "Data-quality checks were not run for this report."
    elif quality.success:
        state = "ok" if not lines and not attention else "warn"
        title = f"Data-quality gate passed: {_met_text(quality)}"
    else:
        state = "fail"
        failed = len(quality.failures)
        title = (
            f"⚠ Data-quality gate FAILED: {failed} of {len(quality.outcomes)} "
            "expectation(s) not met."
        )
        lines = quality.warnings() + lines
    if attention:
        title = f"{title} {attention}"
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    body = f"<ul>{items}</ul>" if items else ""
    return (
        f'<section class="banner {state}" data-key="quality-state" data-value="{state}">'
        f'<strong class="headline">{escape(title)}</strong>{body}</section>'
    )


def _met_text(quality: QualityResult) -> str:
    """ "20 of 20 expectations met." or, with drift checks that were not judged,
    "18 of 18 judged expectations met; 2 drift check(s) not judged (...)"."""
    unjudged = [c for c in quality.drift if not c.judged]
    total = len(quality.outcomes)
    if not unjudged:
        return f"{total} of {total} expectations met."
    judged = total - len(unjudged)
    notes = "; ".join(sorted({c.note for c in unjudged}))
    return (
        f"{judged} of {judged} judged expectations met; {len(unjudged)} drift check(s) "
        f"not judged ({notes})."
    )


def _rejections_line(facts: RunFacts) -> str:
    """ "But 2 batch file(s) were REJECTED and 3 row(s) were rejected." or ""."""
    batches = int((facts.batches["status"] == REJECTED).sum()) if facts.batches.height else 0
    rows = facts.processed_sum("rows_rejected")
    parts = []
    if batches:
        parts.append(f"{count_text(batches)} batch file(s) were REJECTED")
    if rows:
        parts.append(f"{count_text(rows)} row(s) were rejected")
    if not parts:
        return ""
    return "⚠ But " + " and ".join(parts) + " (see Batches and Rejected rows below)."


def _kpis(facts: RunFacts, statuses: dict[str, int]) -> str:
    batches = facts.batches
    by_status = dict(batches.group_by("status").len().iter_rows()) if batches.height else {}
    rows_in = facts.processed_sum("rows_in")
    rows_rejected = facts.processed_sum("rows_rejected")
    decided = facts.cases_decided
    totals = facts.totals
    denial = statuses[DENIED] / decided if decided else None
    rejection = rows_rejected / rows_in if rows_in else None
    tiles = [
        (
            "batches",
            "Batches",
            count_text(batches.height),
            f"{by_status.get('PROCESSED', 0)} processed · {by_status.get('SKIPPED', 0)} "
            f"skipped · {by_status.get('REJECTED', 0)} rejected",
        ),
        ("rows-in", "Rows in", count_text(rows_in), "in processed batches"),
        ("cases-decided", "Cases decided", count_text(decided), ""),
        ("cases-approved", "Approved", count_text(statuses[APPROVED]), ""),
        (
            "cases-denied",
            "Denied",
            count_text(statuses[DENIED]),
            f"denial rate {percent_text(denial)}" if denial is not None else "",
        ),
        ("cases-pended", "Pended", count_text(statuses[PENDED]), "for manual review"),
        (
            "rows-rejected",
            "Rows rejected",
            count_text(rows_rejected),
            f"rejection rate {percent_text(rejection)}" if rejection is not None else "",
        ),
        ("allowed", "Allowed", money_text(totals["allowed_cents"]), "approved cases"),
        ("paid", "Paid", money_text(totals["paid_cents"]), "approved cases"),
    ]
    cells = "".join(
        f'<div class="kpi{" money" if value.startswith("$") else ""}">'
        f'<span class="name">{escape(name)}</span>'
        f'<span class="value" data-key="{key}">{escape(value)}</span>'
        f'<span class="note">{escape(note)}</span></div>'
        for key, name, value, note in tiles
    )
    return f'<section class="kpis">{cells}</section>'


def _status_chart(statuses: dict[str, int]) -> str:
    # A status the log gains later (VOIDED) gets a bar of its own when it occurs.
    labels = [
        APPROVED,
        PENDED,
        DENIED,
        *[s for s in statuses if s not in STATUS_COLORS and statuses[s]],
    ]
    values = [float(statuses.get(s, 0)) for s in labels]
    if not any(values):
        labels = []
    return bar_chart(
        "decisions-by-status",
        labels,
        [Series("cases", STATUS_COLORS[APPROVED], values)],
        bar_colors=[STATUS_COLORS.get(s, OTHER_STATUS_COLOR) for s in labels],
        empty="No case was decided in this run.",
    )


def _reasons_chart(facts: RunFacts, top_n: int) -> str:
    reasons = facts.denial_reasons.head(top_n)
    labels = [str(code) for code in reasons["reason_code"]]
    chart = bar_chart(
        "denial-reasons",
        labels,
        [Series("denied cases", REASON_COLOR, [float(v) for v in reasons["cases"]])],
        label_width=110,
        empty="No case was denied in this run.",
    )
    legend = "".join(
        f"<li><code>{escape(code)}</code> {escape(facts.reason_descriptions.get(code, ''))}</li>"
        for code in labels
    )
    note = '<p class="note">A denied case counts once under each code it carries.</p>'
    return chart + (f'<ul class="codes">{legend}</ul>{note}' if legend else "")


def _provider_chart(facts: RunFacts, top_n: int) -> str:
    providers = facts.provider_amounts.head(top_n)
    return bar_chart(
        "provider-amounts",
        [str(p) for p in providers["provider_id"]],
        [
            Series("allowed", ALLOWED_COLOR, [float(v) for v in providers["allowed_cents"]]),
            Series("paid", PAID_COLOR, [float(v) for v in providers["paid_cents"]]),
        ],
        value_text=money_text,
        label_width=120,
        empty="No case was approved in this run.",
    )


def _rejections_chart(facts: RunFacts) -> str:
    errors = facts.rejection_errors
    shown = errors.head(12)
    labels = [f"{c}: {p}" for c, p in shown.select("column", "problem").rows()]
    chart = bar_chart(
        "rejection-errors",
        labels,
        [Series("errors", REJECTION_COLOR, [float(v) for v in shown["errors"]])],
        label_width=300,
        empty="No row was rejected in this run.",
    )
    if errors.height > shown.height:
        chart += f'<p class="note">{errors.height - shown.height} more kind(s) of error.</p>'
    by_column = errors.group_by("column").agg(pl.col("errors").sum()).sort("errors", "column")
    if by_column.height:
        cells = " · ".join(
            f"<code>{escape(str(c))}</code> {n}"
            for c, n in by_column.sort(["errors", "column"], descending=[True, False]).rows()
        )
        chart += (
            f'<p class="note">{facts.rejections_recorded} row(s) rejected; '
            f"errors by column: {cells}. "
            "A row counts once under each error it has.</p>"
        )
    return chart


def _split_chart(facts: RunFacts) -> str:
    totals = facts.approved_totals
    return stacked_bar(
        "allowed-split",
        [
            ("deductible (member)", float(totals["deductible_cents"]), DEDUCTIBLE_COLOR),
            ("coinsurance (member)", float(totals["coinsurance_cents"]), COINSURANCE_COLOR),
            ("paid (plan)", float(totals["paid_cents"]), PAID_COLOR),
        ],
        empty="No case was approved in this run.",
    )


def _deductible_chart(facts: RunFacts) -> str:
    progress = facts.deductible
    labels = [label for label, _ in progress.buckets] if progress.member_years else []
    chart = bar_chart(
        "deductible-buckets",
        labels,
        [Series("member-years", BUCKET_COLOR, [float(n) for _, n in progress.buckets])],
        label_width=130,
        empty="No case was approved in this run.",
    )
    if progress.member_years:
        chart += (
            f'<p class="note">{money_text(progress.applied_cents)} of deductible applied this '
            f"run across {progress.member_years} member-year(s); share used after the run's "
            "last case.</p>"
        )
    return chart


def _queue_chart(queue: QueueProfile | None) -> str:
    """Spec §8: how many cases wait for an examiner when the run finished, and how long
    since they were received."""
    if queue is None:
        return '<p class="empty">The work queue was not read for this report.</p>'
    chart = bar_chart(
        "pended-queue-age",
        [label for label, _ in queue.buckets] if queue.cases else [],
        [Series("cases", STATUS_COLORS[PENDED], [float(n) for _, n in queue.buckets])],
        label_width=110,
        empty="No case was waiting for an examiner.",
    )
    oldest = "" if queue.oldest_days is None else f"; the oldest waits {queue.oldest_days} day(s)"
    return chart + (
        f'<p class="note"><span data-key="queue-size">{count_text(queue.cases)}</span> '
        f"PENDED case(s) as of {escape(_when(queue.as_of))}{oldest} "
        "(<code>adjudicate pended</code> lists them).</p>"
    )


def _batch_table(facts: RunFacts) -> str:
    batches = facts.batches
    if batches.is_empty():
        return '<p class="empty">No batch was recorded by this run (empty inbox?).</p>'
    head = (
        "<tr><th>batch</th><th>batch id</th><th>status</th><th>rows in</th><th>decided</th>"
        "<th>rejected</th><th>approved</th><th>denied</th><th>pended</th>"
        "<th>recorded at</th><th>reason</th></tr>"
    )
    rows = []
    for row in batches.iter_rows(named=True):
        status = str(row["status"])
        rows.append(
            f'<tr data-batch="{escape(str(row["batch_id"]))}">'
            f"<td>{escape(shown_name(str(row['source'])))}</td>"
            f"<td><code>{escape(str(row['batch_id'])[:12])}</code></td>"
            f'<td><span class="pill {status.lower()}">{escape(status)}</span></td>'
            + "".join(
                f'<td class="num">{count_text(row[c] or 0)}</td>'
                for c in (
                    "rows_in",
                    "rows_decided",
                    "rows_rejected",
                    "approved",
                    "denied",
                    "pended",
                )
            )
            + f"<td>{escape(_when(row['processed_at']))}</td>"
            f"<td>{escape(printable(_batch_reason(facts, row)))}</td></tr>"
        )
    return f'<table id="batches"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _batch_reason(facts: RunFacts, row: dict[str, object]) -> str:
    """REJECTED: the recorded reason; SKIPPED: the batch it repeats, and when."""
    if row["status"] == SKIPPED:
        seen = facts.seen_before.get(str(row["batch_id"]))
        return seen.text() if seen is not None else "seen before (same bytes)"
    return str(row["reason"] or "")


def _untouched(names: Sequence[str] | None) -> str:
    if not names:
        return ""
    items = "".join(f"<li><code>{escape(shown_name(name))}</code></li>" for name in names)
    return _card(
        "Left untouched in the inbox",
        f'<p class="note">Not batches (hidden files or other extensions, spec §1): '
        f'neither read nor moved.</p><ul id="untouched">{items}</ul>',
        wide=True,
    )


def _quality_details(quality: QualityResult | None, target: Path, gate: GateState) -> str:
    if quality is None:
        text = (
            "Not run: no batch was processed, so the run recorded no decision to check."
            if gate is GateState.NOTHING_TO_CHECK
            else "Not run (regenerate without --no-checks to run the Great Expectations "
            "checkpoint)."
        )
        return _card("Data quality", f'<p class="empty">{escape(text)}</p>', wide=True)
    judged = {f"drift:{c.metric}": c.judged for c in quality.drift}
    rows = "".join(_outcome_row(o, judged.get(o.check, True)) for o in quality.outcomes)
    table = (
        '<table id="expectations"><thead><tr><th>check</th><th>expectation</th>'
        "<th>result</th><th>rows</th><th>examples</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    drift = "".join(_drift_row(c) for c in quality.drift)
    drift_table = (
        '<table id="drift"><thead><tr><th>rate</th><th>this run</th><th>trailing baseline</th>'
        "<th>allowed band</th><th>verdict</th></tr></thead>"
        f"<tbody>{drift}</tbody></table>"
    )
    docs = ""
    if quality.data_docs is not None:
        link = os.path.relpath(quality.data_docs, target.parent)
        docs = (
            f'<p>Great Expectations Data Docs: <a href="{escape(Path(link).as_posix())}">'
            f"{escape(Path(link).as_posix())}</a> (validation run <code>"
            f"{escape(quality.run_id)}</code>).</p>"
        )
    if quality.rows_checked is not None:
        docs += (
            f'<p data-key="rows-checked">Every decision of the run was checked: '
            f"{count_text(quality.rows_checked)} decision(s), none sampled; the Data Docs list "
            "the first failing rows of each invariant by case_id.</p>"
        )
    return _card(
        "Data quality (Great Expectations)",
        docs
        + "<h3>Drift against the trailing runs</h3>"
        + drift_table
        + "<h3>Expectations</h3>"
        + table,
        wide=True,
    )


def _outcome_row(outcome: CheckOutcome, judged: bool = True) -> str:
    if outcome.problem:
        verdict, css = "error", "fail"
    elif not judged:
        verdict, css = "not judged", "unknown"
    elif outcome.success:
        verdict, css = "met", "ok"
    else:
        verdict, css = ("drift" if outcome.severity == "warning" else "FAILED"), "fail"
    count = "" if outcome.unexpected_count is None else count_text(outcome.unexpected_count)
    examples = ", ".join(outcome.examples[:5]) + (" …" if len(outcome.examples) > 5 else "")
    detail = outcome.problem or examples
    return (
        f'<tr data-check="{escape(outcome.check)}" data-success="{str(outcome.success).lower()}">'
        f"<td><code>{escape(outcome.check)}</code></td><td>{escape(outcome.description)}</td>"
        f'<td><span class="pill {css}">{verdict}</span></td><td class="num">{count}</td>'
        f"<td>{escape(detail)}</td></tr>"
    )


def _drift_row(check: DriftCheck) -> str:
    current = "—" if check.current is None else percent_text(check.current)
    baseline = (
        "—"
        if check.baseline is None
        else f"{percent_text(check.baseline)} ({check.trailing_runs} run(s))"
    )
    band = f"{percent_text(check.low)} to {percent_text(check.high)}" if check.judged else "—"
    if not check.judged:
        verdict = f'<span class="pill unknown">not judged</span> {escape(check.note)}'
    elif check.current is not None and not check.low <= check.current <= check.high:
        verdict = f'<span class="pill fail">drift</span> {escape(check.note)}'
    else:
        verdict = f'<span class="pill ok">within band</span> {escape(check.note)}'
    return (
        f'<tr data-drift="{escape(check.metric)}"><td>{escape(check.label)}</td>'
        f'<td class="num">{current}</td><td class="num">{baseline}</td>'
        f'<td class="num">{band}</td><td>{verdict}</td></tr>'
    )


def _footer(facts: RunFacts) -> str:
    return (
        "<footer>Regenerate from the event log: <code>adjudicate report --lake LAKE --run "
        f"{escape(facts.run_id)}</code>. Amounts are dollars (integer cents in the log).</footer>"
    )


# Page scaffolding.


def _card(title: str, body: str, *, wide: bool = False) -> str:
    css = "card wide" if wide else "card"
    return f'<section class="{css}"><h2>{escape(title)}</h2>{body}</section>'


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #f5f7fa; }
h1 { margin: 0 0 4px; font-size: 22px; }
h2 { margin: 0 0 12px; font-size: 15px; }
h3 { margin: 16px 0 6px; font-size: 13px; color: var(--muted); }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eef1f4;
       padding: 1px 4px; border-radius: 3px; }
.meta, .note, footer { color: var(--muted); }
.note { font-size: 12px; margin: 6px 0 0; }
.banner { margin: 16px 0; padding: 12px 16px; border-radius: 6px; border-left: 6px solid; }
.banner ul { margin: 6px 0 0; padding-left: 20px; }
.banner.ok { background: #e8f5e9; border-color: #2e7d32; }
.banner.warn { background: #fff8e1; border-color: #f9a825; }
.banner.fail { background: #ffebee; border-color: #c62828; }
.banner.unknown { background: #eceff1; border-color: #90a4ae; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(96px, 1fr));
        gap: 10px; margin-bottom: 16px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.kpi .name { display: block; color: var(--muted); font-size: 12px; }
.kpi.money { grid-column: span 2; }
.kpi .value { display: block; font-size: 19px; font-weight: 600; white-space: nowrap; }
.kpi .note { display: block; font-size: 11px; color: var(--muted); min-height: 14px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 16px;
        overflow-x: auto; }
.card.wide { margin-top: 16px; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg .label { font-size: 12px; fill: var(--ink); }
svg .value { font-size: 11px; fill: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
ul.codes { margin: 8px 0 0; padding-left: 18px; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px;
        font-weight: 600; background: #eceff1; }
.pill.processed, .pill.ok { background: #e8f5e9; color: #1b5e20; }
.pill.skipped, .pill.unknown { background: #eceff1; color: #455a64; }
.pill.rejected, .pill.fail { background: #ffebee; color: #b71c1c; }
footer { margin-top: 20px; font-size: 12px; }
"""


def _page(title: str, body: str) -> str:
    # No external reference of any kind: the report must open offline.
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
