"""Wiring shared by the adjudication flows: the run's end state, artifacts and last log lines.

A run whose batches or rows were partly rejected still ends Completed (the
rejections are recorded and queryable; nothing is lost) but its state message
and its summary artifact say so, and its last log lines are warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar, cast

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from prefect.states import Completed

from claimsflow.ops import artifacts
from claimsflow.ops.artifacts import (
    NO_REPORTS,
    REPORTS_HEADING,
    json_rows,
    markdown_table,
    reports_section,
)
from claimsflow.ops.runlog import RunFacts
from claimsflow.pipeline.summary import RunSummary
from claimsflow.settings import RULES_DIR
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED

T = TypeVar("T")

# Shared with the what-if and review flows (and their tests) under these names.
__all__ = [
    "NO_REPORTS",
    "REPORTS_HEADING",
    "ReportLink",
    "batch_run_markdown",
    "completed",
    "finish_batch_run",
    "json_rows",
    "markdown_table",
    "reports_section",
    "rules_folder",
    "state_message",
]


def rules_folder(rules_dir: str | None) -> Path:
    """A flow's rule-set folder: the one given, else the rule sets shipped with the
    package. The parameter's default is empty, not a path: an absolute default would
    pin every deployment's parameter schema to the machine that deployed it."""
    return Path(rules_dir) if rules_dir else RULES_DIR


class ReportLink(NamedTuple):
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
    facts: RunFacts | None = None,
) -> RunSummary:
    """Publish the run's artifacts and log lines; return its final (Completed) state.

    With the run's `facts` (read back from the event log, as for its report), the batch
    table is the report's: decisions by status, what the plan pays, the rejected rows
    by reason; without them, the run summary's own table.
    """
    logger = get_run_logger()
    table = (
        summary.batch_table()
        if facts is None
        else artifacts.batch_outcomes(facts.batches, summary.seen_before)
    )
    create_table_artifact(
        table=json_rows(table),
        key=f"{artifact_prefix}-batches",
        description=f"Batches of {title} run {summary.run_id} ({summary.ruleset})",
    )
    create_markdown_artifact(
        markdown=batch_run_markdown(
            summary, title=title, seconds=seconds, reports=reports, facts=facts
        ),
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
    summary: RunSummary,
    *,
    title: str,
    seconds: float,
    reports: Sequence[ReportLink] = (),
    facts: RunFacts | None = None,
) -> str:
    """The summary artifact's text (claimsflow.ops.artifacts builds it)."""
    return artifacts.batch_run_markdown(
        title=title,
        attention=summary.needs_attention,
        facts=[
            f"run: `{summary.run_id}`",
            f"rule set: {summary.ruleset}",
            f"duration: {seconds:.1f} s",
        ],
        lines=summary.lines(),
        outcomes=(
            summary.batch_table()
            if facts is None
            else artifacts.batch_outcomes(facts.batches, summary.seen_before)
        ),
        paid_cents=None if facts is None else facts.processed_sum("paid_cents"),
        reasons=() if facts is None else artifacts.rejection_reasons(facts.rejection_errors),
        reports=reports,
    )
