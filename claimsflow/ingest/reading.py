"""Reading one batch file into a text frame (spec §1, §3 'a file that cannot be read').

The result has one String column per column of the file, in file order, plus
`row_number` (1-based, in file order), `raw` (the row as read, JSON text) and, when
a reader found something wrong with a row itself, `_read_errors` (READ_ERRORS):
validation adds those errors to the row's, so the row is rejected, not the file.

- CSV: a line with fewer fields than the header is a rejected row naming each missing
  column (the file may have been picked up while it was still being copied); a line
  with more fields is a rejected row too. Lines that end in a carriage return alone
  make the file unreadable.
- JSON Lines: numbers are read from their text, so no binary float touches an amount
  (`80.00999999999999999` is that text, and fails the amount's check); an object with
  a repeated key is a rejected row naming the key.
- X12 837 (`*.837`, `*.x12`, spec §10): one row per service line, read by
  `claimsflow.x12.read837.read_837`, whose `raw` (the mapped values plus `claim_id`
  and `line`) is kept; a broken envelope or another version is an unreadable file.

Everything that stops a file from being a table raises `UnreadableBatch`, whose
reason states facts about the file and never quotes its cells.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import polars as pl

from claimsflow.csvtext import READ_ERROR, CsvTextError, read_csv_text
from claimsflow.text import reader_problem
from claimsflow.vocabulary import RAW, READ_ERRORS, ROW_NUMBER
from claimsflow.x12.read837 import read_837
from claimsflow.x12.segments import X12Error
from schemas.case_batch import CASE_COLUMNS, REQUIRED_COLUMNS

BATCH_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".837": "x12",
    ".x12": "x12",
}


class UnreadableBatch(Exception):
    """The file is not a table in the format its name says."""


def batch_format(path: Path) -> str | None:
    """The batch format a file name announces, or None when it is not a batch."""
    if path.name.startswith("."):
        return None
    return BATCH_SUFFIXES.get(path.suffix.lower())


def read_batch_bytes(
    data: bytes,
    fmt: str,
    *,
    with_raw: bool = True,
    required: Sequence[str] = REQUIRED_COLUMNS,
    rows: tuple[int, int] | None = None,
    learnt: JsonTypes | None = None,
    in_pieces: bool = True,
) -> pl.DataFrame:
    """Parse a batch's bytes as `fmt` into text columns plus row_number and raw.

    `with_raw=False` leaves raw out: validation then builds it for the rejected
    rows only, instead of a JSON text per row of a batch that is mostly valid.
    `required`: the columns without which the file is unreadable (a case batch's by
    default; a review file's for spec §8).
    `rows` (Parquet only): (offset, length) of the rows to read, numbered from 1 as
    if they were the whole file (claimsflow/ingest/chunks.py reads a file so).
    `learnt` (JSON Lines only): `data` is a piece of whole lines of a file whose
    reader learnt these keys and types from its first objects (`learnt_types`); it
    is read as that reader reads those lines, or raises `NotReadInPieces`.
    `in_pieces=False` (JSON Lines): read whole, even over JSONL_PIECE_BYTES (the
    caller tried the pieces already: `pipeline.batch._open_in_pieces`).
    """
    if rows is not None and fmt != "parquet":
        raise ValueError(f"rows can be given for a Parquet batch only, not {fmt}")
    if learnt is not None and fmt != "jsonl":
        raise ValueError(f"learnt types can be given for a JSON Lines batch only, not {fmt}")
    if not data:
        raise UnreadableBatch("the file is empty")
    try:
        if fmt == "csv":
            frame = _read_csv(data)
        elif fmt == "parquet":
            frame = _read_parquet(data, rows)
        elif fmt == "jsonl":
            frame = _read_jsonl(data, learnt, in_pieces=in_pieces)
        elif fmt == "x12":
            # Rows already carry row_number and the §10 raw (claim_id and line beside
            # the mapped values), which a CSV-shaped raw built later would lose.
            return read_837(data)
        else:  # pragma: no cover - guarded by batch_format
            raise UnreadableBatch(f"unknown batch format {fmt!r}")
    except (UnreadableBatch, NotReadInPieces):
        raise
    except X12Error as exc:
        # One line naming the interchange and segment; it never quotes member data.
        raise UnreadableBatch(f"is not a valid X12 837 batch: {exc}") from exc
    except Exception as exc:
        raise UnreadableBatch(f"cannot be read as {fmt}: {_problem(exc)}") from exc
    except pl.exceptions.PanicException as exc:
        # Some malformed files make the reader itself fail (a Rust panic, which is
        # not an Exception): still one unreadable file, not a crashed run.
        raise UnreadableBatch(f"cannot be read as {fmt}: the reader failed on its content") from exc
    columns = [c for c in frame.columns if c != READ_ERRORS]
    missing = [c for c in required if c not in columns]
    if missing:
        raise UnreadableBatch(f"missing required column(s): {', '.join(missing)}")
    return with_row_identity(frame, with_raw=with_raw)


# Polars quotes the offending cell in `backticks`; the reason is logged and stored
# in the batch record, so the cell (member ids, diagnoses) must not be in it.
_BAD_FIELD = re.compile(r"^could not parse `.*?` as dtype `[^`]*` at column '([^']*)'", re.DOTALL)


def _problem(exc: Exception) -> str:
    """The first line of a reader's error, without any cell value it quotes."""
    field = _BAD_FIELD.match(str(exc).strip())
    if field:
        # A column named only if it is one of the contract's: a header made of data
        # (a file whose lines the reader did not split) would name a cell.
        where = f"of column {field[1]!r} " if field[1] in CASE_COLUMNS else ""
        return f"a field {where}is not properly quoted"
    return reader_problem(exc)


def with_row_identity(frame: pl.DataFrame, *, with_raw: bool = True) -> pl.DataFrame:
    """Add row_number (1-based, file order) and raw (JSON of the row as read)."""
    errors = frame.select(READ_ERRORS) if READ_ERRORS in frame.columns else None
    text = frame.select(pl.exclude(READ_ERRORS).cast(pl.String))
    reserved = {ROW_NUMBER, RAW, READ_ERRORS}
    if not with_raw and not reserved.intersection(text.columns):
        # A file with its own row_number, raw or _read_errors column keeps raw computed
        # here, before those names are taken (validation would read the wrong values).
        identified = text.with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER)
        )
    else:
        identified = text.with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER),
            pl.struct(text.columns).struct.json_encode().alias(RAW)
            if text.width
            else pl.lit("{}").alias(RAW),
        )
    return identified.hstack(errors) if errors is not None else identified


def _require_utf8(data: bytes) -> None:
    # ASCII (the usual batch) is UTF-8: checked in place, without decoding a copy.
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableBatch(f"is not valid UTF-8 text (byte {exc.start})") from exc


# -- CSV ---------------------------------------------------------------------------------


def _read_csv(data: bytes) -> pl.DataFrame:
    _require_utf8(data)
    try:
        return read_csv_text(data)
    except CsvTextError as exc:
        if exc.repeated is not None:
            # Named only if it is one of the contract's columns: a header made of data
            # would otherwise carry a cell into the reason (logged, printed, stored).
            which = exc.repeated if exc.repeated in CASE_COLUMNS else f"field {exc.position}"
            raise UnreadableBatch(f"has a repeated column name in its header ({which})") from exc
        raise UnreadableBatch(str(exc)) from exc


# -- Parquet -----------------------------------------------------------------------------


def _read_parquet(data: bytes, rows: tuple[int, int] | None = None) -> pl.DataFrame:
    if rows is None:
        return text_columns(pl.read_parquet(io.BytesIO(data)))
    return text_columns(pl.scan_parquet(io.BytesIO(data)).slice(*rows).collect())


def text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column of a typed frame as the text a CSV would carry."""
    return frame.select(_as_text(name, dtype) for name, dtype in frame.schema.items())


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


# -- JSON Lines --------------------------------------------------------------------------

_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_STRING = r'"(?:[^"\\]|\\.)*"'
#: A member's number value: `"key": 12.5,` -> `"key": "12.5",`. The pattern starts at
#: the quote closing the key. A quote inside a string is escaped (`\"`), so in a line
#: without an escaped quote, only a string value that starts with `: 12,` is misread,
#: and the quotes then inserted make the line invalid JSON (the file is unreadable):
#: a number is never misread in silence.
_NUMBER_VALUE = re.compile(rf'("\s*:\s*)({_NUMBER})(\s*[,}}\]])')
#: The same, for lines with escaped quotes: every string is consumed whole (a key
#: followed by a number, or any other string), so nothing inside a string is touched.
#: \x01 and \x02 stand for the quotes to insert; JSON text never holds them raw.
_NUMBER_VALUE_IN_STRINGS = re.compile(rf"({_STRING})(\s*:\s*)({_NUMBER})(\s*[,}}\]])|({_STRING})")
#: Objects read to learn a JSON Lines file's keys before it is read whole (the
#: counts in `_read_jsonl_whole` tell when a later object holds another key).
SCHEMA_SAMPLE_LINES: Final = 1000
#: A JSON Lines file larger than this is read a piece of whole lines at a time, where
#: that gives the whole file's rows (`_read_jsonl_in_pieces`).
JSONL_PIECE_BYTES: Final = 64 << 20
#: How much of a JSON Lines file's start the reader learns its keys from, at most.
SAMPLE_BYTES: Final = 1 << 20
#: What a blank line of JSON Lines is made of (the reader skips such lines).
_JSON_BLANKS: Final = b" \t\r\n"
#: The columns `read_batch_bytes` adds to a file's own.
_READER_COLUMNS: Final = frozenset((ROW_NUMBER, RAW, READ_ERRORS))
#: A member whose value is an array or an object (or a string holding `": [`).
_NESTED_VALUE: Final = re.compile(rb'"\s*:\s*[\[{]')

#: The keys of a JSON Lines file, in the reader's order, with the types it reads
#: their values as: what it learns from the file's first objects (`learnt_types`).
JsonTypes = dict[str, pl.DataType]


class NotReadInPieces(Exception):
    """A JSON Lines text whose pieces, read apart, might not give the rows the whole
    text gives (the message says why): it is read whole."""


def _read_jsonl(data: bytes, learnt: JsonTypes | None, *, in_pieces: bool) -> pl.DataFrame:
    if learnt is not None:
        return _read_jsonl_piece(data, learnt)
    if in_pieces and len(data) > JSONL_PIECE_BYTES:
        try:
            return _read_jsonl_in_pieces(data)
        except NotReadInPieces:
            pass  # read whole: the same rows, or the reason the file is unreadable
    return _read_jsonl_whole(data)


def _read_jsonl_in_pieces(data: bytes) -> pl.DataFrame:
    """The file's rows, read a piece of whole lines at a time: the reader's copies of the
    text (the lines, the lines with their numbers quoted, the text it parses) are held
    a piece at a time, not whole (~12 GiB for 10M cases, issue 15; the caller holds
    the bytes). Raises `NotReadInPieces` where the whole file's reader would read the
    file otherwise (`_read_jsonl_piece`).
    """
    learnt = learnt_types(data[:SAMPLE_BYTES])
    frames: list[pl.DataFrame] = []
    start = 0
    while start < len(data):
        at = data.find(b"\n", start + JSONL_PIECE_BYTES - 1)
        end = len(data) if at < 0 else at + 1
        piece = data[start:end]
        start = end
        if blank_jsonl(piece):
            continue
        try:
            frames.append(_read_jsonl_piece(piece, learnt))
        except (MemoryError, NotReadInPieces):
            raise
        except (Exception, pl.exceptions.PanicException) as exc:
            raise NotReadInPieces("a piece the reader refuses on its own") from exc
        del piece
    if not frames:
        raise NotReadInPieces("no object")
    return pl.concat(frames, rechunk=False)


def blank_jsonl(text: bytes) -> bool:
    """Whether a JSON Lines text holds blank lines only (no object to read)."""
    return not text.strip(_JSON_BLANKS)


def learnt_types(head: bytes) -> JsonTypes:
    """The keys and types the whole file's reader learns from the first objects of a
    JSON Lines file (`_read_objects`), given the file's first `SAMPLE_BYTES` at least
    (`head`): every piece of the file is read with them (`_read_jsonl_piece`).

    Raises `NotReadInPieces` when the reader learns them from every object instead (a
    file whose first SCHEMA_SAMPLE_LINES lines do not fit in its first MiB), or when a
    key is named as a column the reader adds.
    """
    cut = 0
    for _ in range(SCHEMA_SAMPLE_LINES):
        cut = head.find(b"\n", cut) + 1
        if cut == 0:
            raise NotReadInPieces("its first objects are too long to learn its keys from")
    try:
        text = _as_ndjson(_numbers_as_text(pl.read_lines(head[:cut])["line"]))
        learnt = _sample_types(text)
    except (Exception, pl.exceptions.PanicException) as exc:
        raise NotReadInPieces("its first objects do not read") from exc
    if learnt is None:
        raise NotReadInPieces("its first objects are too long to learn its keys from")
    if _READER_COLUMNS.intersection(learnt):
        raise NotReadInPieces("a key named as a column the reader adds")
    return learnt


def _read_jsonl_piece(data: bytes, learnt: JsonTypes) -> pl.DataFrame:
    """A piece of whole lines of a JSON Lines file, read as the whole file's reader reads
    those lines: with the keys and types it learnt from the file's first objects
    (`learnt_types`), every other key of the file null.

    The whole file's reader reads every object so, and keeps that, unless a value does
    not fit the learnt types, or the count of `"key":` against the fields read says
    that some object holds a key the first objects did not, gives a key twice, or a
    string holds `":`: then it learns the keys from every object, in an order of its
    own. A piece where that happens raises `NotReadInPieces`, and so does one with an
    object or array value (looked for in the text: a member's value that opens with
    `[` or `{`; one inside a string only costs a whole read).
    """
    if _holds_nested_value(data):
        raise NotReadInPieces("a value that is a JSON object or array")
    _require_utf8(data)
    lines = _numbers_as_text(pl.read_lines(data)["line"])
    text = _as_ndjson(lines)
    try:
        frame = pl.read_ndjson(io.BytesIO(text), schema=learnt)
    except pl.exceptions.PolarsError as exc:
        raise NotReadInPieces(
            "a value that does not fit the types of the first objects, or a line not JSON"
        ) from exc
    if _keys_in(lines) != _fields_in(frame, lines):
        raise NotReadInPieces("an object with a key the first objects do not have (or twice)")
    return text_columns(frame)


def _holds_nested_value(data: bytes) -> bool:
    """Whether a JSON Lines text may hold an object or array value. A text without `[`
    whose every `{` opens a line holds none, and is not searched: the search costs
    ~7 CPU s per GB, the two counts ~1.5."""
    if b"[" not in data and data.count(b"{") == data.count(b"\n{") + data.startswith(b"{"):
        return False
    return _NESTED_VALUE.search(data) is not None


def _read_jsonl_whole(data: bytes) -> pl.DataFrame:
    _require_utf8(data)
    lines = _numbers_as_text(pl.read_lines(data)["line"])
    text = _as_ndjson(lines)
    frame = _read_objects(text)
    # Every `"key":` of the file is a field the reader found (a value, or a null), unless
    # an object repeats a key (the reader keeps the first), holds an object, has a key
    # the first objects did not, or a string holds `":`. Only then is the file read
    # again, object by object.
    if _keys_in(lines) == _fields_in(frame, lines):
        return text_columns(frame)
    frame = text_columns(pl.read_ndjson(io.BytesIO(text), infer_schema_length=None))
    return _with_repeated_keys(frame, lines.filter(lines.str.strip_chars() != ""))


def _numbers_as_text(lines: pl.Series) -> pl.Series:
    """The file's lines, each number value of an object member in quotes: the reader
    then keeps its text (a binary float would turn 80.00999999999999999 into 80.01)."""
    quoted = lines.str.replace_all(_NUMBER_VALUE.pattern, '${1}"${2}"${3}')
    escaped = lines.str.contains('\\"', literal=True)
    if not escaped.any():
        return quoted
    where = escaped.arg_true()
    exact = (
        lines.gather(where)
        .str.replace_all(_NUMBER_VALUE_IN_STRINGS.pattern, "${1}${2}\x01${3}\x02${4}${5}")
        .str.replace_all("\x01\x02", "", literal=True)
        .str.replace_all("[\x01\x02]", '"')
    )
    # A line that held the stand-ins already (invalid JSON) keeps the plain pattern's
    # result: the reader then refuses it as it would have.
    raw_marks = lines.gather(where).str.contains("[\x01\x02]")
    return quoted.scatter(where.filter(~raw_marks), exact.filter(~raw_marks))


def _as_ndjson(lines: pl.Series) -> memoryview:
    """The lines as one text again: the values of an Arrow string array, each line with
    its newline, lie end to end in one buffer (no copy through Python strings)."""
    array = (lines + "\n").to_arrow(compat_level=pl.CompatLevel.oldest())
    _validity, offsets, values = array.buffers()
    # A large string array's offsets are little-endian int64, one more than its values.
    (start,) = struct.unpack_from("<q", offsets, 8 * array.offset)
    (end,) = struct.unpack_from("<q", offsets, 8 * (array.offset + len(array)))
    return memoryview(values)[start:end]


def _read_objects(text: memoryview) -> pl.DataFrame:
    """The file's objects, with the keys (and types) of its first objects: inferring
    them from every object costs as much as reading the file again."""
    typed = _sample_types(text)
    if typed is None:
        return pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)
    try:
        return pl.read_ndjson(io.BytesIO(text), schema=typed)
    except pl.exceptions.PolarsError:
        # A later value of another kind (a list where the first objects had text):
        # the types of every object, as before.
        return pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)


def _sample_types(text: memoryview) -> JsonTypes | None:
    """The keys and types of the first SCHEMA_SAMPLE_LINES objects of a text (within
    its first MiB); None when they do not fit there."""
    sample = bytes(text[:SAMPLE_BYTES])
    sample_end = 0
    for _ in range(SCHEMA_SAMPLE_LINES):
        sample_end = sample.find(b"\n", sample_end) + 1
        if sample_end == 0:
            return None
    schema = pl.read_ndjson(io.BytesIO(sample[:sample_end]), infer_schema_length=None).schema
    # A key whose first values are all null may hold text later.
    return {k: pl.String() if v == pl.Null else v for k, v in schema.items()}


def _keys_in(lines: pl.Series) -> int:
    """How many `"key":` the lines hold (and strings holding `":`)."""
    if any(lines.str.contains(f'"{blank}', literal=True).any() for blank in (" ", "\t", "\r")):
        return int(lines.str.count_matches(r'"\s*:').sum())  # blanks before a colon
    return int(lines.str.count_matches('":', literal=True).sum())


def _fields_in(frame: pl.DataFrame, lines: pl.Series) -> int:
    """The fields the reader found: values, and its columns' keys given a null.

    A null given to a key the reader made no column of (a key that only objects
    after its sample name, and only with null) is not a field it found: counted, it
    hid that key, whose column the file's other objects then lacked."""
    values = frame.select(pl.sum_horizontal(pl.all().is_not_null()).sum()).item() or 0
    if not frame.width:
        return int(values)
    # A key written with escapes in the file is not matched: its nulls go uncounted,
    # and the file is read object by object, as for any other doubt.
    keys = "|".join(_regex_literal(json.dumps(c, ensure_ascii=False)[1:-1]) for c in frame.columns)
    nulls = lines.str.count_matches(rf'"(?:{keys})"\s*:\s*null').sum()
    return int(values) + int(nulls)


def _regex_literal(text: str) -> str:
    """`text` as a literal in a Polars (Rust) regex: its meta characters escaped."""
    return "".join(f"\\{c}" if c in _REGEX_META else c for c in text)


_REGEX_META: Final = frozenset("\\.+*?()|[]{}^$#&-~")


def _with_repeated_keys(frame: pl.DataFrame, lines: pl.Series) -> pl.DataFrame:
    """READ_ERRORS for the objects that give a key twice (the reader keeps the first).

    A cheap count finds the candidates: a line holds more `"key":` than the fields the
    reader found (non-null values, and null ones). Nested objects' keys and colons in
    strings make candidates too; for those, every string of the line is read as a
    token and the object's keys compared exactly.
    """
    if lines.len() != frame.height:  # pragma: no cover - the reader skips blank lines only
        raise UnreadableBatch("its lines could not be matched with its records")
    keys = lines.str.count_matches(r'"\s*:')
    nulls = lines.str.count_matches(r'"\s*:\s*null')
    present = frame.select(pl.sum_horizontal(pl.all().is_not_null())).to_series() + nulls
    candidates = keys > present
    if not candidates.any():
        return frame
    where = candidates.arg_true()
    tokens = lines.gather(where).str.extract_all(rf"{_STRING}(?:\s*:)?")
    keys_found = tokens.list.eval(
        pl.element()
        .filter(pl.element().str.ends_with(":"))
        .str.replace(r"\s*:$", "")
        .str.json_decode(pl.String)  # the key as the reader has it (escapes decoded)
    )
    repeated = keys_found.list.eval(
        pl.element().filter(pl.element().is_duplicated() & pl.element().is_in(frame.columns))
    ).list.unique(maintain_order=True)
    errors = repeated.list.eval(
        pl.struct(
            pl.element().alias("column"),
            pl.lit("given more than once in this JSON object").alias("error"),
        )
    ).cast(pl.List(READ_ERROR))
    found = pl.DataFrame({"_row": where.cast(pl.Int64), READ_ERRORS: errors}).filter(
        pl.col(READ_ERRORS).list.len() > 0
    )
    if found.is_empty():
        return frame
    return (
        frame.with_row_index("_row")
        .with_columns(pl.col("_row").cast(pl.Int64))
        .join(found, on="_row", how="left", maintain_order="left")
        .drop("_row")
    )
