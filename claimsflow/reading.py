"""Reading one batch file into a text frame (spec §1, §3 'a file that cannot be read').

The result has one String column per column of the file, in file order, plus
`row_number` (1-based, in file order) and `raw` (the row as read, JSON text).
Everything that stops a file from being a table raises `UnreadableBatch`.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl

from schemas.case_batch import REQUIRED_COLUMNS

BATCH_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
ROW_NUMBER = "row_number"
RAW = "raw"


class UnreadableBatch(Exception):
    """The file is not a table in the format its name says."""


def batch_format(path: Path) -> str | None:
    """The batch format a file name announces, or None when it is not a batch."""
    if path.name.startswith("."):
        return None
    return BATCH_SUFFIXES.get(path.suffix.lower())


def read_batch_bytes(data: bytes, fmt: str, *, with_raw: bool = True) -> pl.DataFrame:
    """Parse a batch's bytes as `fmt` into text columns plus row_number and raw.

    `with_raw=False` leaves raw out: validation then builds it for the rejected
    rows only, instead of a JSON text per row of a batch that is mostly valid.
    """
    if not data:
        raise UnreadableBatch("the file is empty")
    try:
        if fmt == "csv":
            frame = _read_csv(data)
        elif fmt == "parquet":
            frame = _read_parquet(data)
        elif fmt == "jsonl":
            frame = _read_jsonl(data)
        else:  # pragma: no cover - guarded by batch_format
            raise UnreadableBatch(f"unknown batch format {fmt!r}")
    except UnreadableBatch:
        raise
    except Exception as exc:
        raise UnreadableBatch(f"cannot be read as {fmt}: {_problem(exc)}") from exc
    except pl.exceptions.PanicException as exc:
        # Some malformed files make the reader itself fail (a Rust panic, which is
        # not an Exception): still one unreadable file, not a crashed run.
        raise UnreadableBatch(f"cannot be read as {fmt}: the reader failed on its content") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise UnreadableBatch(f"missing required column(s): {', '.join(missing)}")
    return with_row_identity(frame, with_raw=with_raw)


# Polars quotes the offending cell in `backticks`; the reason is logged and stored
# in the batch record, so the cell (member ids, diagnoses) must not be in it.
_BAD_FIELD = re.compile(r"^could not parse `.*?` as dtype `[^`]*` at column '([^']*)'", re.DOTALL)
_QUOTED = re.compile(r"`[^`]*`")


def _problem(exc: Exception) -> str:
    """The first line of a reader's error, without any cell value it quotes."""
    text = str(exc).strip()
    field = _BAD_FIELD.match(text)
    if field:
        return f"a field of column {field[1]!r} is not properly quoted"
    text = _QUOTED.sub("`...`", text)
    return text.splitlines()[0] if text else type(exc).__name__


def with_row_identity(frame: pl.DataFrame, *, with_raw: bool = True) -> pl.DataFrame:
    """Add row_number (1-based, file order) and raw (JSON of the row as read)."""
    text = frame.select(pl.all().cast(pl.String))
    if not with_raw and ROW_NUMBER not in text.columns and RAW not in text.columns:
        # A file with its own row_number or raw column keeps raw computed here,
        # before those names are taken (validation would read the wrong values).
        return text.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER))
    return text.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER),
        pl.struct(text.columns).struct.json_encode().alias(RAW)
        if text.width
        else pl.lit("{}").alias(RAW),
    )


def _require_utf8(data: bytes) -> None:
    # ASCII (the usual batch) is UTF-8: checked in place, without decoding a copy.
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableBatch(f"is not valid UTF-8 text (byte {exc.start})") from exc


def _read_csv(data: bytes) -> pl.DataFrame:
    _require_utf8(data)
    frame = pl.read_csv(
        io.BytesIO(data),
        infer_schema=False,
        empty_string_is_null=False,
        raise_if_empty=True,
    )
    _reject_duplicate_headers(frame)
    return frame


def _reject_duplicate_headers(frame: pl.DataFrame) -> None:
    renamed = [c for c in frame.columns if "_duplicated_" in c]
    if renamed:
        raise UnreadableBatch(f"has a repeated column name in its header ({renamed[0]})")


def _read_parquet(data: bytes) -> pl.DataFrame:
    return text_columns(pl.read_parquet(io.BytesIO(data)))


def text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column of a typed frame as the text a CSV would carry."""
    return frame.select(_as_text(name, dtype) for name, dtype in frame.schema.items())


def _read_jsonl(data: bytes) -> pl.DataFrame:
    _require_utf8(data)
    return text_columns(pl.read_ndjson(io.BytesIO(data), infer_schema_length=None))


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """Render a typed column as the text a CSV would carry (dates ISO, numbers plain)."""
    col = pl.col(name)
    if dtype == pl.Date:
        return col.dt.strftime("%Y-%m-%d").alias(name)
    if isinstance(dtype, pl.Datetime):
        # A timestamp at midnight is a date written by a tool that has no date
        # type; any other time of day is not a date and fails its column's check.
        return (
            pl.when(col.dt.time() == pl.time(0))
            .then(col.dt.strftime("%Y-%m-%d"))
            .otherwise(col.cast(pl.String))
            .alias(name)
        )
    if dtype == pl.Boolean:
        return pl.when(col).then(pl.lit("true")).when(~col).then(pl.lit("false")).alias(name)
    if dtype.is_nested():
        # A list or struct in a cell is kept as its JSON text: it fails its column's
        # check like any other malformed value instead of failing the whole file.
        return pl.struct(col).struct.json_encode().str.extract(r"^\{.*?:(.*)\}$", 1).alias(name)
    return col.cast(pl.String).alias(name)
