"""`adjudicate pended`: the work queue of PENDED cases (spec §8)."""

from __future__ import annotations

from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.display import print_rows
from adjudicate.options import location
from claimsflow.settings import DEFAULT_LAKE


@app.command()
def pended(
    lake: Annotated[str, typer.Option(help="Lake folder, or an object-store URL.")] = str(
        DEFAULT_LAKE
    ),
    older_than: Annotated[
        int | None,
        typer.Option(min=0, help="Only cases waiting more than DAYS days since received."),
    ] = None,
    output: Annotated[
        str, typer.Option("--format", help="Output format: table, csv or json.")
    ] = "table",
) -> None:
    """List PENDED cases waiting for an examiner, oldest received first."""
    from claimsflow.analysis.queue import pended_cases
    from claimsflow.lake.catalog import CatalogError

    if output not in ("table", "csv", "json"):
        raise fail(f"--format must be table, csv or json, not {output!r}")
    try:
        result = pended_cases(location(lake), older_than=older_than)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    rows = result.rows
    if output == "table":
        # A batch id is 64 hex digits: its first 12 name it on a terminal, as `run` does.
        at = result.columns.index("received_batch_id")
        rows = [(*r[:at], str(r[at])[:12], *r[at + 1 :]) for r in rows]
    print_rows(result.columns, rows, output)
    if output == "table":
        typer.echo(f"{len(rows)} PENDED case(s)")
