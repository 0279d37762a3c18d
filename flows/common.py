"""Wiring shared by the adjudication flows: the run's end state, artifacts and last log lines.

A run whose batches or rows were partly rejected still ends Completed (the
rejections are recorded and queryable; nothing is lost) but its state message
and its summary artifact say so, and its last log lines are warnings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from prefect.states import Completed

from claimsflow.pipeline import PROCESSED, REJECTED, SKIPPED
from claimsflow.run_summary import RunSummary

T = TypeVar("T")

#: Default rule-set folder of the flows. Relative on purpose: deployments run from
#: the project folder (prefect.yaml's pull step), and an absolute default would
#: pin every deployment's parameter schema to the checkout that deployed it.
RULES_FOLDER = "rules"

#: Where the summary lists report files. Nightly and ad-hoc runs pass none yet;
#: when a run writes report files, pass them as `reports=` and they are linked here.
REPORTS_HEADING = "### Reports"
NO_REPORTS = "_No report files for this run._"


@dataclass(frozen=True)
class ReportLink:
    """A report file a run wrote: its title and where to find it (path or URL)."""

    title: str
    location: str


def completed(data: T, message: str) -> T:
    """A Completed state carrying `data`, typed as `data` for the flow's callers.

    A flow that returns a State ends in that state (here: Completed with our
    message); a caller that runs the flow as a function receives the data.
    """
    return cast(T, Completed(message=message, data=data))


def finish_batch_run(
    summary: RunSummary,
    *,
    artifact_prefix: str,
    title: str,
    seconds: float,
    reports: Sequence[ReportLink] = (),
) -> RunSummary:
    """Publish the run's artifacts and log lines; return its final (Completed) state."""
    logger = get_run_logger()
    create_table_artifact(
        table=summary.batch_table(),
        key=f"{artifact_prefix}-batches",
        description=f"Batches of {title} run {summary.run_id} ({summary.ruleset})",
    )
    create_markdown_artifact(
        markdown=batch_run_markdown(summary, title=title, seconds=seconds, reports=reports),
        key=f"{artifact_prefix}-summary",
        description=f"Summary of {title} run {summary.run_id}",
    )
    log = logger.warning if summary.needs_attention else logger.info
    for line in summary.lines():
        log(line)
    message = state_message(summary)
    log("%s (%.1fs)", message, seconds)
    return completed(summary, message)


def state_message(summary: RunSummary) -> str:
    batches = summary.batches_by_status
    decided = sum(b.rows_decided for b in summary.batches)
    counts = (
        f"{len(summary.batches)} batch(es): {batches[PROCESSED]} processed, "
        f"{batches[SKIPPED]} skipped, {batches[REJECTED]} rejected; "
        f"{decided} case(s) decided, {summary.rows_rejected} row(s) rejected"
    )
    if summary.needs_attention:
        return f"Completed with warnings: {counts}"
    return f"Completed: {counts}"


def batch_run_markdown(
    summary: RunSummary, *, title: str, seconds: float, reports: Sequence[ReportLink] = ()
) -> str:
    status = "completed with warnings" if summary.needs_attention else "completed"
    lines = [
        f"## {title}: {status}",
        "",
        f"- run: `{summary.run_id}`",
        f"- rule set: {summary.ruleset}",
        f"- duration: {seconds:.1f} s",
        *[f"- {line}" for line in summary.lines()],
        "",
        "### Batches",
        "",
        markdown_table(summary.batch_table()) if summary.batches else "_No batch to process._",
        "",
        *reports_section(reports),
    ]
    return "\n".join(lines) + "\n"


def reports_section(reports: Sequence[ReportLink]) -> list[str]:
    if not reports:
        return [REPORTS_HEADING, "", NO_REPORTS]
    return [REPORTS_HEADING, "", *[f"- [{r.title}]({r.location})" for r in reports]]


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
