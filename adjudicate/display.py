"""Result tables on the terminal, and as CSV or JSON for other programs.

A terminal table fits the terminal: one line per row, long cells shortened with an
ellipsis (an id of 64 hex digits would otherwise fold over many lines). Every cell
is shown as text, never as Rich markup (`PA[abc]1` stays `PA[abc]1`, `[/i]` is
just text), with control characters escaped (claimsflow.text.printable).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claimsflow.text import printable

if TYPE_CHECKING:
    from claimsflow.lake.storage import Location

#: The width of a table when stdout is not a terminal and COLUMNS is not set (CI
#: logs, files): an 80-column default would shorten most cells.
PIPED_WIDTH = 160
#: A column is never shortened below this many characters (ids stay recognisable).
MIN_COLUMN_WIDTH = 8
#: What each column adds to a boxed table besides its cells: padding and a rule.
_COLUMN_OVERHEAD = 3


def console() -> Console:
    """The terminal's width when there is one, COLUMNS when set, else PIPED_WIDTH."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console()
    return Console(width=PIPED_WIDTH)


def print_summary(table: list[dict[str, Any]], lines: list[str], lake: Location) -> None:
    if table:
        columns = list(table[0])
        print_rows(columns, [tuple(row[c] for c in columns) for row in table], "table")
    for line in lines:
        typer.echo(printable(line))
    from claimsflow.lake.catalog import catalog_path

    typer.echo(f"catalog: {catalog_path(lake)}")


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return value


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, prefixed with `'` to keep it text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _json_record(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        c: (_cell(v) if isinstance(v, dt.date) else v) for c, v in zip(columns, row, strict=True)
    }


def write_csv(columns: list[str], chunks: Iterable[Sequence[tuple[Any, ...]]]) -> None:
    """A header, then each chunk's rows as they come (a large result is never held)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for rows in chunks:
        writer.writerows([[_csv_cell(_cell(v)) for v in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()
    sys.stdout.write(buffer.getvalue())


def write_json(columns: list[str], chunks: Iterable[Sequence[tuple[Any, ...]]]) -> None:
    """One JSON array, one record per line, written as the chunks come."""
    separator = "["
    for rows in chunks:
        for row in rows:
            sys.stdout.write(separator + json.dumps(_json_record(columns, row), default=str))
            separator = ",\n"
    sys.stdout.write("[]\n" if separator == "[" else "]\n")


def _table_text(value: Any) -> Text:
    # Text, not str: Rich would read a str as markup.
    return Text("" if value is None else printable(str(_cell(value))))


def fitted_widths(natural: Sequence[int], width: int) -> list[int | None]:
    """Each column's cap (None: as wide as it needs) so the table fits `width`.

    The widest columns give way first, down to a common cap (never below
    MIN_COLUMN_WIDTH, nor below what a narrower column needs): what long ids and
    reasons lose, the short columns (status, counts) keep in full.
    """
    room = width - _COLUMN_OVERHEAD * len(natural) - 1
    if sum(natural) <= room:
        return [None] * len(natural)
    # The largest cap that fits (the total is monotone in the cap): bisect.
    low, high = MIN_COLUMN_WIDTH, max(natural)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(w, middle) for w in natural) <= room:
            low = middle
        else:
            high = middle - 1
    return [low if w > low else None for w in natural]


def print_rows(columns: list[str], rows: Sequence[tuple[Any, ...]], output: str) -> None:
    if output == "json":
        write_json(columns, [rows])
        return
    if output == "csv":
        write_csv(columns, [rows])
        return
    print_table(columns, rows)


def print_table(columns: list[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """The rows as a table that fits the terminal; returns how many columns it shows.

    Columns that would not fit even at MIN_COLUMN_WIDTH are left out from the right,
    as a database shell does (the caller says so).
    """
    cells = [[_table_text(v) for v in row] for row in rows]
    natural = [
        max([len(column), *(row[i].cell_len for row in cells)]) for i, column in enumerate(columns)
    ]
    screen = console()
    shown = columns_that_fit(natural, screen.width)
    caps = fitted_widths(natural[:shown], screen.width)
    table = Table(show_lines=False)
    for column, cap in zip(columns[:shown], caps, strict=True):
        table.add_column(Text(column), overflow="ellipsis", no_wrap=True, max_width=cap)
    for row in cells:
        table.add_row(*row[:shown])
    screen.print(table)
    return shown


def columns_that_fit(natural: Sequence[int], width: int) -> int:
    """How many of the first columns fit `width`, each at least MIN_COLUMN_WIDTH wide
    (or its natural width when narrower); always at least one."""
    used = 1
    for count, w in enumerate(natural):
        used += min(w, MIN_COLUMN_WIDTH) + _COLUMN_OVERHEAD
        if used > width:
            return max(1, count)
    return len(natural)
