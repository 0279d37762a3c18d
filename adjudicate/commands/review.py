"""`adjudicate review`: record an examiner's decisions on PENDED cases (spec §8)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adjudicate.app import RUN_FAILED, app, fail
from adjudicate.display import print_rows
from adjudicate.interrupts import Interrupted, stop_on_signals
from adjudicate.options import check_remote, location
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REFERENCE, RULES_DIR
from claimsflow.text import money

if TYPE_CHECKING:
    from claimsflow.pipeline.review import ReviewOutcome

#: How long the command waits for a run holding the lake (seconds).
LOCK_WAIT_SECONDS = 3600.0


@app.command()
def review(
    file: Annotated[
        str,
        typer.Argument(
            help="Review file: CSV with case_id, decision, reason_code, examiner[, note]."
        ),
    ],
    lake: Annotated[
        str, typer.Option(help="Lake folder (event log, catalog), or an object-store URL.")
    ] = str(DEFAULT_LAKE),
    reference: Annotated[
        Path, typer.Option(help="Reference data folder (prices APPROVE rows).")
    ] = DEFAULT_REFERENCE,
    rules_dir: Annotated[Path, typer.Option(help="Folder of rule-set files.")] = RULES_DIR,
) -> None:
    """Record an examiner's review file: APPROVE or DENY PENDED cases, one row each."""
    from claimsflow.core.reference import ReferenceDataError, load_reference
    from claimsflow.core.rules.ruleset import RuleSetError, load_rulesets
    from claimsflow.lake.lock import LakeBusy, writer_lock
    from claimsflow.pipeline.review import ReviewContext, run_review

    source = location(file)
    if isinstance(source, Path) and not source.is_file():
        raise fail(f"{file}: no such review file")
    lake_at = location(lake)
    check_remote(lake_at)
    try:
        reference_data = load_reference(reference)
        # The same configuration check as `run`: the rule sets of the folder must load.
        # A review records the rule set of each case's adjudication, from the log.
        load_rulesets(rules_dir)
    except (ReferenceDataError, RuleSetError) as exc:
        raise fail(str(exc)) from None
    context = ReviewContext(lake_at, reference_data, f"review-{uuid.uuid4().hex}")
    try:
        with (
            stop_on_signals(),
            writer_lock(lake_at, timeout=LOCK_WAIT_SECONDS, on_wait=_say),
        ):
            outcome = run_review(context, source)
    except LakeBusy as exc:
        typer.echo(f"adjudicate: review not recorded: {exc}", err=True)
        raise typer.Exit(RUN_FAILED) from None
    except (Interrupted, KeyboardInterrupt) as exc:
        # The review is published in one step or not at all: nothing is half-recorded.
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        typer.echo(
            f"adjudicate: review stopped by {name}: nothing was half-recorded; "
            "record the file again",
            err=True,
        )
        raise typer.Exit(RUN_FAILED) from None
    show(outcome)
    from claimsflow.lake.catalog import catalog_path

    typer.echo(f"catalog: {catalog_path(lake_at)}")
    raise typer.Exit(outcome.exit_code)


def _say(message: str) -> None:
    typer.echo(f"adjudicate: {message}", err=True)


def show(outcome: ReviewOutcome) -> None:
    """The rows and how each ended, then one line for the file."""
    from claimsflow.pipeline.review import review_lines

    if outcome.rows.height:
        columns = ["row", "case_id", "outcome", "examiner", "allowed", "deductible"]
        columns += ["coinsurance", "paid", "errors"]
        rows = [
            (
                r["row_number"],
                r["case_id"],
                r["outcome"],
                r["examiner"],
                *(
                    None if r[c] is None else money(r[c])
                    for c in ("allowed_cents", "deductible_cents", "coinsurance_cents")
                ),
                None if r["paid_cents"] is None else money(r["paid_cents"]),
                "; ".join(r["errors"]),
            )
            for r in outcome.table()
        ]
        print_rows(columns, rows, "table")
    for line in review_lines(outcome):
        typer.echo(line)
