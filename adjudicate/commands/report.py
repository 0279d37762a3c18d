"""`adjudicate report`: a run's HTML report from the event log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.options import location
from claimsflow.settings import (
    DEFAULT_LAKE,
    DEFAULT_REPORTS,
)


@app.command()
def report(
    lake: Annotated[str, typer.Option(help="Lake folder or object-store URL (read only).")] = str(
        DEFAULT_LAKE
    ),
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest run).")
    ] = None,
    reports: Annotated[
        Path, typer.Option(help="Folder for runs/run-<id>.html and gx-data-docs/.")
    ] = DEFAULT_REPORTS,
    checks: Annotated[
        bool,
        typer.Option(
            "--checks/--no-checks", help="Run the Great Expectations data-quality checkpoint."
        ),
    ] = True,
) -> None:
    """Write a run's HTML report from the event log (exit 1 if a quality check failed)."""
    from claimsflow.ops.outputs import regenerate_report
    from claimsflow.ops.quality import DriftBand
    from claimsflow.ops.runlog import RunLogError

    try:
        band = DriftBand.from_env()
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        outputs = regenerate_report(location(lake), run_id, reports, checks=checks, band=band)
    except RunLogError as exc:
        raise fail(str(exc)) from None
    for warning in outputs.warnings:
        typer.echo(f"warning: {warning}")
    typer.echo(f"report: {outputs.report}")
    if outputs.data_docs is not None:
        typer.echo(f"data docs: {outputs.data_docs}")
    raise typer.Exit(1 if outputs.warnings else 0)
