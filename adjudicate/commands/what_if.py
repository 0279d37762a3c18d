"""`adjudicate what-if`: a candidate rule set replayed on history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.display import print_rows
from adjudicate.options import location, parse_date
from claimsflow.settings import (
    DEFAULT_LAKE,
    DEFAULT_REFERENCE,
    DEFAULT_REPORTS,
    RULES_DIR,
)


@app.command("what-if")
def what_if(
    date_from: Annotated[
        str, typer.Option("--from", help="First received_date to replay (YYYY-MM-DD).")
    ],
    date_to: Annotated[
        str, typer.Option("--to", help="Last received_date to replay (YYYY-MM-DD).")
    ],
    ruleset: Annotated[str, typer.Option(help="Candidate rule-set version (e.g. 2).")],
    lake: Annotated[str, typer.Option(help="Lake folder or object-store URL (read only).")] = str(
        DEFAULT_LAKE
    ),
    reference: Annotated[Path, typer.Option(help="Reference data folder.")] = DEFAULT_REFERENCE,
    rules_dir: Annotated[Path, typer.Option(help="Folder of rule-set files.")] = RULES_DIR,
    reports: Annotated[
        Path, typer.Option(help="Folder for the what-if-<timestamp>.parquet report.")
    ] = DEFAULT_REPORTS,
    sample: Annotated[int, typer.Option(min=0, help="Changed cases to show.")] = 10,
) -> None:
    """Replay a received-date range through a candidate rule set; record nothing."""
    from claimsflow.analysis.whatif import WhatIfError, simulate, write_report
    from claimsflow.core.reference import ReferenceDataError, load_reference
    from claimsflow.core.rules.ruleset import RuleSetError, load_rulesets, select_ruleset

    first = parse_date(date_from, "--from")
    last = parse_date(date_to, "--to")
    if first is None or last is None:  # pragma: no cover - both options are required
        raise fail("--from and --to are required")
    try:
        candidate = select_ruleset(load_rulesets(rules_dir), last, ruleset)
        result = simulate(location(lake), load_reference(reference), candidate, first, last)
    except (ReferenceDataError, RuleSetError, WhatIfError) as exc:
        raise fail(str(exc)) from None
    path = write_report(result, reports)
    for line in result.summary_lines():
        typer.echo(line)
    for title, frame in (
        ("status changes (old -> new)", result.transitions),
        ("reason codes", result.reason_codes),
        (f"sample of changed cases (first {sample})", result.sample(sample)),
    ):
        if frame.height:
            typer.echo(title + ":")
            print_rows(frame.columns, frame.rows(), "table")
    typer.echo(f"report: {path}")
