"""Tasks of the what-if flow: plan, one replay per recorded batch, compare, report.

Nothing here writes to the event log: the what-if reads it and writes one report file.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import polars as pl
from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from claimsflow.analysis import whatif
from claimsflow.analysis.whatif import BatchReplay, ReplayPlan, WhatIfResult
from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.lake.storage import Location
from claimsflow.text import shown_name


@task(name="plan-what-if", cache_policy=NONE)
def plan_what_if(lake: Location, date_from: dt.date, date_to: dt.date) -> ReplayPlan:
    started = time.perf_counter()
    plan = whatif.plan_replay(
        whatif.recorded_cases(lake), date_from, date_to, whatif.recorded_decisions(lake)
    )
    get_run_logger().info(
        "%d case(s) received %s .. %s; %d batch(es) to replay; history of %d case(s); %.2fs",
        plan.in_range.height,
        date_from,
        date_to,
        len(plan.batches),
        plan.start_history.latest().height,
        time.perf_counter() - started,
    )
    return plan


@task(name="replay-batch", cache_policy=NONE, task_run_name="replay-{source}")
def replay_batch(
    source: str,
    cases: pl.DataFrame,
    reference: Reference,
    candidate: RuleSet,
    history: MemoryHistory,
    reviews: pl.DataFrame | None = None,
) -> tuple[BatchReplay, MemoryHistory]:
    """Decide one recorded batch under the candidate (`source` names the task run), then
    apply the reviews recorded after it (claimsflow/analysis/whatif.py)."""
    started = time.perf_counter()
    replay, history = whatif.replay_batch(cases, reference, candidate, history, reviews)
    get_run_logger().info(
        "batch %s (%s): %d case(s) replayed, %d rejected, %.2fs",
        shown_name(source),
        replay.batch_id[:12],
        replay.cases,
        replay.rejected_case_ids.len(),
        time.perf_counter() - started,
    )
    return replay, history


@task(name="compare-decisions", cache_policy=NONE)
def compare_decisions(
    plan: ReplayPlan, replays: list[BatchReplay], candidate: RuleSet
) -> WhatIfResult:
    return whatif.compare(plan, replays, candidate)


@task(name="write-what-if-report", cache_policy=NONE)
def write_what_if_report(result: WhatIfResult, reports_dir: Path) -> Path:
    path = whatif.write_report(result, reports_dir)
    get_run_logger().info("report %s: %d case(s)", path, result.cases.height)
    return path
