"""Tasks of the review-pended flow: write the form's review file, record a review file.

Recording is never retried: a retry after the review was published would see its
bytes as recorded and skip it (the first attempt's decisions stand).
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from claimsflow.lake.storage import Location
from claimsflow.pipeline import review as pipeline
from claimsflow.pipeline.review import ReviewContext, ReviewOutcome


@task(name="write-review-form", cache_policy=NONE)
def write_review_form(lake: Location, row: dict[str, str]) -> Location:
    """The form's one row as a review file in the lake's reviews/ area."""
    path = pipeline.write_review_form(lake, [row])
    get_run_logger().info("review form written to %s", path)
    return path


@task(name="record-review", cache_policy=NONE, task_run_name="review-{source.name}")
def record_review(source: Location, run: ReviewContext) -> ReviewOutcome:
    started = time.perf_counter()
    outcome = pipeline.process_review(source, run)
    logger = get_run_logger()
    log = logger.warning if outcome.exit_code else logger.info
    for line in pipeline.review_lines(outcome):
        log("%s (%.2fs)", line, time.perf_counter() - started)
    return outcome
