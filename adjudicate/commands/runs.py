"""`adjudicate runs`: recent runs from the lake's log, with their report files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.commands.query import OutputFormat
from adjudicate.display import print_rows
from adjudicate.options import existing_folder_or_url
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REPORTS


@app.command()
def runs(
    lake: Annotated[
        str, typer.Option(metavar="DIR|URL", help="Lake folder, or an object-store URL.")
    ] = str(DEFAULT_LAKE),
    reports: Annotated[
        Path, typer.Option(help="Folder the runs wrote their reports into.")
    ] = DEFAULT_REPORTS,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="Runs to list.")] = 20,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table, csv or json.")
    ] = OutputFormat.table,
) -> None:
    """List recent runs: id, time, counts, exit status, report."""
    from claimsflow.analysis.runs import recent_runs
    from claimsflow.lake.catalog import CatalogError
    from claimsflow.ops.reporting.html import report_path

    lake_at = existing_folder_or_url(lake, "--lake")
    try:
        result = recent_runs(lake_at, limit)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    at = result.columns.index("run_id")
    rows = []
    for row in result.rows:
        report = report_path(reports, str(row[at]))
        rows.append((*row, str(report) if report.is_file() else None))
    print_rows([*result.columns, "report"], rows, output.value)
    if output is OutputFormat.table:
        typer.echo(f"{len(rows)} run(s), newest first")
