"""What the Prefect artifacts of a run and of a review show: the key tables of the
run report, and markdown around them, built from the frames the report is built from.

Pure: frames in, JSON-ready rows and markdown text out. The flows publish them
(flows/common.py, flows/review_pended.py); the tests check them on small frames.
Rows are per batch or per review-file row (a handful, not the run's cases), and
money stays integer cents until it is shown as text here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from claimsflow.text import money, printable, shown_name
from claimsflow.vocabulary import REJECTED, ROW_NUMBER, SKIPPED

#: The review rows' error column (claimsflow.core.review.ERRORS).
REVIEW_ERRORS = "errors"

#: Where the markdown lists the report files of a run (report, Data Docs).
REPORTS_HEADING = "### Reports"
NO_REPORTS = "_No report files for this run._"


def batch_outcomes(
    batches: pl.DataFrame, seen_before: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The run's batch records (runlog.RunFacts.batches) as the artifact's table: source,
    batch_id (12 characters), status, rows in / decided / rejected, the decisions by
    status, what the plan pays (dollars) and the reason of a REJECTED or SKIPPED batch
    (for a SKIPPED one, `seen_before[batch_id]`, the record it repeats)."""
    seen = seen_before or {}
    rows = batches.select(
        "source",
        "batch_id",
        "status",
        "rows_in",
        "rows_decided",
        "rows_rejected",
        "approved",
        "denied",
        "pended",
        "paid_cents",
        "reason",
    ).to_dicts()
    return [
        {
            "source": shown_name(str(r["source"])),
            "batch_id": str(r["batch_id"])[:12],
            "status": r["status"],
            "rows_in": r["rows_in"],
            "decided": r["rows_decided"],
            "rejected": r["rows_rejected"],
            "approved": r["approved"],
            "denied": r["denied"],
            "pended": r["pended"],
            "paid": money(r["paid_cents"], symbol="$"),
            "reason": printable(_batch_reason(r, seen)),
        }
        for r in rows
    ]


def _batch_reason(record: Mapping[str, Any], seen: Mapping[str, str]) -> str:
    if record["status"] == SKIPPED:
        return seen.get(str(record["batch_id"]), "seen before (same bytes)")
    return str(record["reason"] or "")


def rejection_reasons(errors: pl.DataFrame) -> list[dict[str, Any]]:
    """The run's rejected rows by reason (runlog.RunFacts.rejection_errors: column,
    problem, errors), most frequent first, as the report lists them."""
    return [
        {"column": printable(str(c)), "problem": printable(str(p)), "rows": n}
        for c, p, n in errors.select("column", "problem", "errors").rows()
    ]


def batch_run_markdown(
    *,
    title: str,
    attention: bool,
    facts: Sequence[str],
    lines: Sequence[str],
    outcomes: Sequence[Mapping[str, Any]],
    paid_cents: int | None = None,
    reasons: Sequence[Mapping[str, Any]] = (),
    reports: Sequence[tuple[str, str]] = (),
) -> str:
    """A batch run's summary: its headline, `facts` (run id, rule set, duration) and
    `lines` (the run summary's) as a list, the batch table, the rejected rows by reason
    and the links to its reports (title, URL)."""
    status = "completed with warnings" if attention else "completed"
    paid = [] if paid_cents is None else [f"paid by the plan: {money(paid_cents, symbol='$')}"]
    body = [
        f"## {title}: {status}",
        "",
        *[f"- {line}" for line in (*facts, *lines, *paid)],
        "",
        "### Batches",
        "",
        markdown_table(outcomes) if outcomes else "_No batch to process._",
        "",
    ]
    if reasons:
        body += ["### Rows rejected, by reason", "", markdown_table(reasons), ""]
    body += reports_section(reports)
    return "\n".join(body) + "\n"


def reports_section(reports: Sequence[tuple[str, str]]) -> list[str]:
    if not reports:
        return [REPORTS_HEADING, "", NO_REPORTS]
    return [REPORTS_HEADING, "", *[f"- [{title}]({url})" for title, url in reports]]


def review_decided(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """The cases a review file decided (claimsflow.pipeline.review's rows): case, its
    new status, who decided, what the plan pays (dollars)."""
    decided = rows.filter(pl.col("outcome") != REJECTED).select(
        ROW_NUMBER, "case_id", "outcome", "examiner", "paid_cents"
    )
    return [
        {
            "row": n,
            "case_id": printable(str(case)),
            "decision": outcome,
            "examiner": printable(str(examiner)),
            "paid": money(paid, symbol="$"),
        }
        for n, case, outcome, examiner, paid in decided.rows()
    ]


def review_rejected(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """The review file's rejected rows, each with its reasons (joined by "; ")."""
    rejected = rows.filter(pl.col("outcome") == REJECTED).select(
        ROW_NUMBER,
        "case_id",
        pl.col(REVIEW_ERRORS).list.join("; ").alias("reasons"),
    )
    return [
        {"row": n, "case_id": printable(str(case or "")), "reasons": printable(str(why or ""))}
        for n, case, why in rejected.rows()
    ]


def review_markdown(
    *,
    lines: Sequence[str],
    batch_id: str,
    attention: bool,
    seconds: float,
    rows: pl.DataFrame,
) -> str:
    """A review's summary: the file's lines, the cases it decided and the rows it
    rejected with their reasons (both empty for a SKIPPED or REJECTED file)."""
    status = "completed with warnings" if attention else "completed"
    decided, rejected = review_decided(rows), review_rejected(rows)
    body = [
        f"## review-pended: {status}",
        "",
        *[f"- {line}" for line in lines],
        f"- batch id: `{batch_id}`",
        f"- duration: {seconds:.1f} s",
    ]
    if rows.height:
        body += [
            "",
            f"### Cases decided ({len(decided)})",
            "",
            markdown_table(decided),
            "",
            f"### Rows rejected ({len(rejected)})",
            "",
            markdown_table(rejected),
        ]
    return "\n".join(body) + "\n"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_None._"
    columns = list(rows[0])
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def json_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with dates as ISO text and lists as comma-joined text (table artifacts are JSON)."""
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return value


def _cell(value: Any) -> str:
    text = "" if value is None else str(_plain(value))
    return text.replace("|", "\\|").replace("\n", " ")
