"""CSV text with every field as text, and each line's fields counted (batches, §1, and
reference files, §2).

A line with fewer fields than the header (a file picked up while it was still being
copied, cut inside its last line) is not padded with empty cells: its missing fields
are null and the row carries one READ_ERRORS entry per missing column. A line with
more fields than the header carries one too (its extra fields are not kept). The
caller decides what a row error means: a rejected row of a batch, a stopped run for
reference data.

How the fields are counted, in one pass of the CSV reader: every line (the header's
too) gets one more field, a control character the file does not hold (the mark). A
complete line holds the mark in the extra column; a line cut short holds it in the
column after its last field; a longer line has it beyond the columns read. A line end
inside a quoted field is marked too, and the mark is taken out of that cell again.
"""

from __future__ import annotations

import io
import re
from typing import Final

import polars as pl

from claimsflow.vocabulary import READ_ERRORS

#: A reader's row error: the column it is about and what is wrong.
READ_ERROR = pl.Struct({"column": pl.String(), "error": pl.String()})
#: The marks to choose from (the first the file does not hold).
_LINE_MARKS: Final = tuple(chr(c) for c in (0x1E, 0x1F, 0x1D, 0x1C, *range(0x01, 0x09)))
_FIRST_MISSING = "_first_missing"
_NOT_MARKS: Final = bytes(c for c in range(256) if chr(c) not in _LINE_MARKS)


class CsvTextError(ValueError):
    """The text is not a CSV table; the message states facts about the file, never its
    cells. `repeated`/`position`: the header's repeated name and where it is repeated."""

    def __init__(self, message: str, repeated: str | None = None, position: int = 0) -> None:
        super().__init__(message)
        self.repeated = repeated
        self.position = position


def read_csv_text(data: bytes) -> pl.DataFrame:
    """The CSV's columns as text (empty cells are empty strings), and a READ_ERRORS
    column when some line has fewer or more fields than the header."""
    _refuse_lone_carriage_returns(data)
    mark = next((m for m in _LINE_MARKS if m.encode() not in data), None)
    if mark is None:
        raise CsvTextError("holds every control character; it is not CSV text")
    marked, lines = _mark_line_ends(data, mark)
    frame = pl.read_csv(
        io.BytesIO(marked),
        infer_schema=False,
        empty_string_is_null=False,
        raise_if_empty=True,
        # A longer line is read up to the mark's column: its row error says so.
        truncate_ragged_lines=True,
    )
    _refuse_repeated_names(frame.columns[:-1])
    # One mark per line: more lines than the header and rows means that some line
    # ends are in quoted cells (a cell with a line break), their marks to be taken out.
    return _fields_of_each_line(frame, mark, in_cells=lines > frame.height + 1)


def line_marks_in(data: bytes) -> frozenset[str]:
    """The characters that could mark line ends which `data` holds (a file read in
    pieces: the union over its pieces says whether the whole file could be marked)."""
    # One pass that keeps only those characters, instead of one search for each.
    return frozenset(chr(c) for c in set(data.translate(None, _NOT_MARKS)))


def no_line_mark_left(held: frozenset[str]) -> bool:
    """Whether a text holding `held` leaves no character to mark its line ends with."""
    return held.issuperset(_LINE_MARKS)


def first_read_error(frame: pl.DataFrame) -> tuple[int, str, str] | None:
    """The first row error of a `read_csv_text` frame: (1-based row, column, error)."""
    if READ_ERRORS not in frame.columns:
        return None
    rows = frame.with_row_index("_row", offset=1).drop_nulls(READ_ERRORS)
    if rows.is_empty():
        return None
    first = rows.row(0, named=True)
    error = first[READ_ERRORS][0]
    return int(first["_row"]), str(error["column"]), str(error["error"])


def _refuse_lone_carriage_returns(data: bytes) -> None:
    """A CSV whose lines end in a carriage return alone (classic Mac) reads as one
    header line made of the whole file: say so, rather than name its cells."""
    first_end = data.find(b"\n")
    header = (data if first_end < 0 else data[:first_end]).rstrip(b"\r")
    if b"\r" in header:
        raise CsvTextError(
            "its lines end in a carriage return alone (CR); a CSV's lines must end in LF or CRLF"
        )


def _refuse_repeated_names(columns: list[str]) -> None:
    """A header that gives a name twice (the reader renames the second `x_duplicated_0`
    and would keep the first one's values)."""
    for position, name in enumerate(columns, 1):
        found = re.fullmatch(r"(.*)_duplicated_\d+", name, re.DOTALL)
        if found and found[1] in columns[: position - 1]:
            raise CsvTextError(
                f"has a repeated column name in its header (field {position})",
                repeated=found[1],
                position=position,
            )


def _mark_line_ends(data: bytes, mark: str) -> tuple[bytes, int]:
    """The text with the mark as each line's last field, and how many lines there are."""
    end = f",{mark}".encode()
    # Blank lines before the header are not lines of the table (the reader skips them).
    body = data.lstrip(b"\r\n") if data[:1] in (b"\r", b"\n") else data
    marked = body.replace(b"\n", end + b"\n")
    if b"\r" in body:  # one byte: found (or not) much faster than a pair
        marked = marked.replace(b"\r" + end + b"\n", end + b"\r\n")
    lines = body.count(b"\n")
    if marked.endswith(b"\n"):
        return marked, lines
    return marked + end, lines + 1


def _fields_of_each_line(frame: pl.DataFrame, mark: str, *, in_cells: bool) -> pl.DataFrame:
    """The file's columns (missing fields null) and READ_ERRORS when a line had fewer or
    more fields than the header. `in_cells`: some marks are in quoted cells."""
    *columns, marks = frame.columns
    width = len(columns)
    with_marks = (
        [c for c in columns if frame[c].str.contains(f",{mark}", literal=True).any()]
        if in_cells
        else []
    )
    if not with_marks and (frame[marks] == mark).all():
        return frame.drop(marks)  # every line has exactly the header's fields
    # The column where a short line's mark landed: its first missing field.
    first_missing = pl.coalesce(
        *(pl.when(pl.col(c) == mark).then(pl.lit(i)) for i, c in enumerate(columns)),
        pl.lit(None, dtype=pl.Int32),
    ).alias(_FIRST_MISSING)
    checked = frame.with_columns(first_missing)
    missing_from = pl.col(_FIRST_MISSING)
    short = missing_from.is_not_null()
    long = ~short & (pl.col(marks) != mark)
    errors = pl.concat_list(
        *(
            pl.when(missing_from <= i).then(
                pl.struct(
                    pl.lit(c).alias("column"),
                    pl.concat_str(
                        pl.lit("not in the line (it has "),
                        missing_from.cast(pl.String),
                        pl.lit(f" of the header's {width} fields)"),
                    ).alias("error"),
                )
            )
            for i, c in enumerate(columns)
        ),
        pl.when(long).then(
            pl.struct(
                pl.lit(f"column {width + 1}").alias("column"),
                pl.lit(f"not in the header (the line has more than its {width} fields)").alias(
                    "error"
                ),
            )
        ),
    ).list.drop_nulls()
    restored = [
        pl.when(missing_from <= i)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(_without_marks(pl.col(c), mark) if c in with_marks else pl.col(c))
        .alias(c)
        for i, c in enumerate(columns)
    ]
    return checked.select(
        *restored,
        pl.when(short | long)
        .then(errors)
        .otherwise(None)
        .cast(pl.List(READ_ERROR))
        .alias(READ_ERRORS),
    )


def _without_marks(cell: pl.Expr, mark: str) -> pl.Expr:
    """A quoted cell with line ends inside, as the file has it (marks taken out)."""
    return cell.str.replace_all(f",{mark}\r\n", "\r\n", literal=True).str.replace_all(
        f",{mark}\n", "\n", literal=True
    )
