"""The `what-if` flow: replay a received-date range through a candidate rule set.

Reads the event log, decides the recorded cases again batch by batch (see
claimsflow/analysis/whatif.py for the replay's rules), writes NOTHING to the event log,
and reports what would change: reports/what-if-<timestamp>.parquet plus a table
artifact (a sample of changed cases) and a markdown summary.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from pydantic import Field

from claimsflow.analysis.whatif import BatchReplay, WhatIfResult
from claimsflow.lake.storage import parse_location
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REFERENCE
from claimsflow.text import money
from flows.common import (
    ReportLink,
    completed,
    json_rows,
    markdown_table,
    reports_section,
    rules_folder,
)
from tasks.adjudication import load_reference_data, load_rule_set
from tasks.whatif import compare_decisions, plan_what_if, replay_batch, write_what_if_report

DEFAULT_REPORTS = "reports"


@flow(name="what-if", log_prints=True)
def what_if(
    date_from: dt.date,
    date_to: dt.date,
    ruleset: Annotated[str, Field(min_length=1)] = "2",
    lake: str = str(DEFAULT_LAKE),
    reference: str = str(DEFAULT_REFERENCE),
    rules_dir: str | None = None,
    reports_dir: str = DEFAULT_REPORTS,
    sample_size: Annotated[int, Field(ge=0, le=1000)] = 20,
) -> WhatIfResult:
    """Replay the cases received in a date range through a candidate rule set; record nothing.

    Args:
        date_from: First received_date of the range (inclusive).
        date_to: Last received_date of the range (inclusive).
        ruleset: Version of the candidate rule set (drafts included), e.g. 2.
        lake: Lake folder (or object-store URL) whose event log is replayed (read only).
        reference: Folder with members.csv, providers.csv and fee_schedule.csv
            (today's reference data are used for the replay).
        rules_dir: Folder of rule-set files (relative paths are from the project folder);
            empty = the rule sets shipped with the package.
        reports_dir: Folder for the what-if-<timestamp>.parquet report.
        sample_size: How many changed cases the summary lists.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    reference_data = load_reference_data(Path(reference))
    candidate = load_rule_set(rules_folder(rules_dir), ruleset, date_to)
    plan = plan_what_if(parse_location(lake), date_from, date_to)
    history = plan.start_history
    replays: list[BatchReplay] = []
    for batch in plan.batches:  # one task per recorded batch, in processing order
        replay, history = replay_batch(
            str(batch["source"][0]),
            batch,
            reference_data,
            candidate,
            history,
            plan.reviews_after(batch),
        )
        replays.append(replay)
    result = compare_decisions(plan, replays, candidate)
    report = write_what_if_report(result, Path(reports_dir))
    create_table_artifact(
        table=json_rows(result.sample(sample_size).to_dicts()),
        key="what-if-changes",
        description=f"Changed cases under {result.ruleset}, {date_from} .. {date_to} "
        f"(first {sample_size})",
    )
    create_markdown_artifact(
        markdown=what_if_markdown(result, ReportLink("per-case comparison", str(report.resolve()))),
        key="what-if-summary",
        description=f"What-if {result.ruleset} on {date_from} .. {date_to}",
    )
    for line in result.summary_lines():
        logger.info(line)
    message = (
        f"Completed: {result.changed.height} of {result.cases.height} case(s) would change; "
        f"paid delta {money(result.paid_delta_cents)}"
    )
    logger.info("%s (%.1fs)", message, time.perf_counter() - started)
    return completed(result, message)


def what_if_markdown(result: WhatIfResult, report: ReportLink) -> str:
    lines = [
        f"## what-if: {result.ruleset} on cases received {result.date_from} .. {result.date_to}",
        "",
        *[f"- {line}" for line in result.summary_lines()],
        "- nothing was written to the event log",
        "",
        "### Status changes (recorded -> candidate)",
        "",
        markdown_table(result.transitions.to_dicts()),
        "",
        "### Reason codes",
        "",
        markdown_table(result.reason_codes.to_dicts()),
        "",
        *reports_section([report]),
    ]
    return "\n".join(lines) + "\n"
