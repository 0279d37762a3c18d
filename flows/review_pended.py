"""The `review-pended` flow: an examiner's decisions on PENDED cases (spec §8).

Two ways in: the typed form (case_id, decision, reason_code, examiner, note) decides
one case from the Prefect UI without writing a file, or `review_file` names a review
file. The form's row is first written as a one-row review file in the lake's
`reviews/` area (`claimsflow.pipeline.review.write_review_form`), so that it has bytes
and an identity like any review file: the same form submitted twice is the same file,
recorded once and SKIPPED after. Then, under the lake's writer lock (reviews and runs
never interleave), the file is recorded as `adjudicate review` records it, and the
catalog is refreshed.

Artifacts: a table of the file's rows (applied or rejected, with amounts and errors)
and a markdown summary (the cases decided, the rows rejected with their reasons); a
run with a rejected row or file ends "Completed with warnings".
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from pydantic import Field

from claimsflow.core.rules.ruleset import load_rulesets
from claimsflow.lake.storage import Location, parse_location
from claimsflow.ops import artifacts
from claimsflow.pipeline.review import ReviewContext, ReviewOutcome, review_lines, run_review
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REFERENCE
from claimsflow.vocabulary import PROCESSED
from flows.common import completed, json_rows, rules_folder
from flows.nightly import LOCK_WAIT_SECONDS, flow_run_id
from tasks.adjudication import load_reference_data, open_lake, refresh_catalog, take_writer_lock
from tasks.review import record_review, write_review_form


class ReviewDecision(StrEnum):
    """The examiner's decision (spec §8): the form's drop-down."""

    APPROVE = "APPROVE"
    DENY = "DENY"


class ReviewChoiceError(ValueError):
    """The parameters give neither a form nor a file, or both (not retried)."""


@flow(name="review-pended", log_prints=True)
def review_pended(
    case_id: str = "",
    decision: ReviewDecision | None = None,
    reason_code: str = "",
    examiner: str = "",
    note: str = "",
    review_file: str = "",
    lake: str = str(DEFAULT_LAKE),
    reference: str = str(DEFAULT_REFERENCE),
    rules_dir: str | None = None,
    lock_wait_seconds: Annotated[int, Field(ge=1)] = LOCK_WAIT_SECONDS,
) -> ReviewOutcome:
    """Decide PENDED cases: one case by the form, or every row of a review file.

    Args:
        case_id: The PENDED case to decide (the form; leave empty with review_file).
        decision: APPROVE (priced with today's reference data) or DENY.
        reason_code: Required to DENY, e.g. CO-50 (CO, PR, OA or PI, a dash and 1 to 5
            characters of A-Z 0-9); leave empty to APPROVE.
        examiner: Who decides (1 to 64 characters): recorded as decided_by.
        note: Optional free text, kept in the event log with the decision.
        review_file: Path of a review file (CSV: case_id, decision, reason_code,
            examiner[, note]) instead of the form; relative paths are from the
            project folder.
        reference: Folder with members.csv, providers.csv and fee_schedule.csv
            (APPROVE rows are priced with it).
        lake: Lake folder: event log and catalog.duckdb; or an object-store URL.
        rules_dir: Folder of rule-set files (relative paths are from the project folder);
            empty = the rule sets shipped with the package.
        lock_wait_seconds: How long one attempt waits for a run on the same lake
            before retrying with back-off.
    """
    started = time.perf_counter()
    form = form_row(case_id, decision, reason_code, examiner, note)
    chosen = _chosen_file(review_file, form)
    lake_at = parse_location(lake)
    reference_data = load_reference_data(Path(reference))
    load_rulesets(rules_folder(rules_dir))  # the same configuration check as a run
    source = chosen if chosen is not None else write_review_form(lake_at, form)
    with take_writer_lock(lake_at, lock_wait_seconds):
        context = ReviewContext(lake_at, reference_data, flow_run_id())
        outcome = run_review(
            context,
            source,
            prepare=open_lake,
            refresh=refresh_catalog,
            process=record_review,
        )
    return finish_review(outcome, seconds=time.perf_counter() - started)


def form_row(
    case_id: str,
    decision: ReviewDecision | None,
    reason_code: str,
    examiner: str,
    note: str,
) -> dict[str, str]:
    """The form's fields as a review file's row (empty dict: the form was left empty)."""
    row = {
        "case_id": case_id,
        "decision": decision.value if decision is not None else "",
        "reason_code": reason_code,
        "examiner": examiner,
        "note": note,
    }
    return row if any(row.values()) else {}


def _chosen_file(review_file: str, form: dict[str, str]) -> Location | None:
    """The review file to record (None: the form's row); refuses both or neither."""
    if bool(review_file) == bool(form):
        raise ReviewChoiceError(
            "give either the form (case_id, decision, examiner, ...) or review_file, not "
            + ("both" if form else "neither")
        )
    if not review_file:
        return None
    source = parse_location(review_file)
    if isinstance(source, Path) and not source.is_file():
        raise ReviewChoiceError(f"{review_file}: no such review file")
    return source


def finish_review(outcome: ReviewOutcome, *, seconds: float) -> ReviewOutcome:
    """Publish the rows and the summary as artifacts; end Completed (with warnings when
    a row or the file was rejected)."""
    logger = get_run_logger()
    rows = review_table(outcome)
    if rows:
        create_table_artifact(
            table=json_rows(rows),
            key="review-pended-rows",
            description=f"Rows of review file {outcome.batch.source}",
        )
    create_markdown_artifact(
        markdown=review_markdown(outcome, seconds=seconds),
        key="review-pended-summary",
        description=f"Review file {outcome.batch.source}",
    )
    message = review_state_message(outcome)
    (logger.warning if outcome.exit_code else logger.info)("%s (%.1fs)", message, seconds)
    return completed(outcome, message)


def review_table(outcome: ReviewOutcome) -> list[dict[str, Any]]:
    """The rows as the artifact shows them: amounts in cents, errors joined."""
    return [
        {
            "row": r["row_number"],
            "case_id": r["case_id"],
            "outcome": r["outcome"],
            "examiner": r["examiner"],
            "allowed_cents": r["allowed_cents"],
            "deductible_cents": r["deductible_cents"],
            "coinsurance_cents": r["coinsurance_cents"],
            "paid_cents": r["paid_cents"],
            "errors": "; ".join(r["errors"]),
        }
        for r in outcome.table()
    ]


def review_state_message(outcome: ReviewOutcome) -> str:
    line = review_lines(outcome)[0]
    return f"Completed with warnings: {line}" if outcome.exit_code else f"Completed: {line}"


def review_markdown(outcome: ReviewOutcome, *, seconds: float) -> str:
    """The summary artifact: the cases decided and the rows rejected with their reasons
    (claimsflow.ops.artifacts builds it)."""
    rows = outcome.rows if outcome.batch.status == PROCESSED else outcome.rows.clear()
    return artifacts.review_markdown(
        lines=review_lines(outcome),
        batch_id=outcome.batch.batch_id,
        attention=bool(outcome.exit_code),
        seconds=seconds,
        rows=rows,
    )
