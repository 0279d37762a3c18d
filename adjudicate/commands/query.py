"""`adjudicate query`: read-only SQL on the analyst catalog, like a database shell.

A table shows at most 40 rows by default, with a footer that says how many there
were; CSV and JSON stream every row. `--limit` applies to every format. A query
has a time limit and a memory limit (issue 18.11).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.display import print_table, write_csv, write_json
from adjudicate.options import existing_folder_or_url
from claimsflow.settings import DEFAULT_LAKE

#: Rows a table shows unless --limit says otherwise.
TABLE_ROWS = 40


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(metavar="SQL", help="One read-only SQL query on the catalog's views.")
    ],
    lake: Annotated[
        str, typer.Option(metavar="DIR|URL", help="Lake folder, or an object-store URL.")
    ] = str(DEFAULT_LAKE),
    output: Annotated[
        OutputFormat,
        typer.Option("--format", help="table on the terminal; csv or json stream every row."),
    ] = OutputFormat.table,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help=f"Rows to show; 0 for all. Default: {TABLE_ROWS} in a table, all in csv/json.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=0, metavar="SECONDS", help="Stop the query after this long; 0: never."),
    ] = 300.0,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="Memory the query may use, e.g. 2GB or 512MiB. Default: a quarter of RAM.",
        ),
    ] = None,
) -> None:
    """Run read-only SQL on the analyst catalog (40 rows unless --limit)."""
    from claimsflow.lake.bounded_query import QueryLimits, bounded_query, parse_size
    from claimsflow.lake.catalog import CatalogError

    lake_at = existing_folder_or_url(lake, "--lake")
    try:
        memory = None if memory_limit is None else parse_size(memory_limit)
    except ValueError as exc:
        raise fail(f"--memory-limit: {exc}") from None
    if limit is None:
        limit = TABLE_ROWS if output is OutputFormat.table else 0
    limits = QueryLimits(timeout_seconds=timeout or None, memory_bytes=memory)
    try:
        with bounded_query(lake_at, sql, limits) as running:
            if output is OutputFormat.table:
                rows = running.fetch(limit) if limit else [r for c in running.chunks() for r in c]
                total = len(rows) + (running.count_rest() if limit else 0)
                shown = print_table(running.columns, rows)
                typer.echo(_footer(len(rows), total))
                if shown < len(running.columns):
                    left_out = running.columns[shown:]
                    typer.echo(
                        f"{shown} of {len(running.columns)} columns shown (not: "
                        f"{', '.join(left_out)}); name fewer columns, or use --format csv"
                    )
                return
            chunks = running.chunks()
            if limit:
                chunks = iter([running.fetch(limit)])
            (write_csv if output is OutputFormat.csv else write_json)(running.columns, chunks)
    except CatalogError as exc:
        raise fail(str(exc)) from None


def _footer(shown: int, total: int) -> str:
    noun = "row" if total == 1 else "rows"
    if shown == total:
        return f"{total:,} {noun}"
    return f"{shown:,} of {total:,} {noun}; --limit N or --limit 0 for all"
