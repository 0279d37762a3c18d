"""A local CSV or JSON Lines batch read a chunk of whole lines at a time, or a
Parquet batch a slice of rows at a time (issue 15): the partitioned executors'
coordinator never holds a 10M-case text frame whole (nor, for a text batch, its file).

A Parquet batch is read from its bytes (held: they are compressed), a slice of rows
at a time, each slice as the whole file's reader reads it (`read_batch_bytes` with
`rows`). A JSON Lines batch is cut at line ends (a JSON text holds none), and each
piece read with the keys and types the whole file's reader learns from its first
objects (`reading.learnt_types`); where that reader would read the file otherwise,
`ReadWhole`. The rest of this docstring is about CSV.

The file is cut into pieces that each end at a line end outside any quoted field. In
a CSV whose quotes are all where RFC 4180 puts them (a quote opens a field, closes
it, or is doubled inside it), a line end is inside a quoted field exactly when an
odd number of quotes come before it; every piece that holds a quote is checked to
be such a CSV (`quotes_in_place`). A piece holds whole lines, so parsed after the
file's header line it gives the rows the whole file gives there
(`reading.read_batch_bytes`), numbered on from the rows before it.

Only a file whose every piece reads that way is read in chunks. A piece that does
not read on its own (`UnreadableBatch`), a quote out of place (a stray `5" cut` in a
free-text column: the reader keeps it as text or refuses the file, and counting
quotes would cut inside a field), a line longer than `_longest_line` bytes, or
pieces that between them hold every control character the CSV reader could mark
lines with: each raises
`ReadWhole`, and the caller reads the file whole. The whole file's rows, or its
reason and its quarantine, are then exactly those of the one-piece run.

The file is read more than once (the coordinator's passes), so each pass hashes what
it reads and checks it against the batch id: a file that changed in between is
`InboxFileUnavailable`, as `read_inbox_file` says of a file that changed while read.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import polars as pl

from claimsflow.csvtext import line_marks_in, no_line_mark_left
from claimsflow.ingest.inbox import InboxFileUnavailable, os_reason
from claimsflow.ingest.reading import (
    SAMPLE_BYTES,
    JsonTypes,
    NotReadInPieces,
    UnreadableBatch,
    batch_format,
    blank_jsonl,
    learnt_types,
    read_batch_bytes,
)
from claimsflow.vocabulary import ROW_NUMBER

#: Bytes read at a time: ~0.8M rows of a typical batch, ~0.2 GiB of text frame.
CHUNK_BYTES: Final = 64 << 20
#: A case row's bytes in a typical CSV batch: a Parquet batch is read in pieces of as
#: many rows as a CSV piece holds.
CSV_ROW_BYTES: Final = 80
_QUOTE, _LINE_END = b'"', b"\n"
_VANISHED: Final = "vanished after the inbox was listed"
#: What may come before a quote that opens a field (or the second of a doubled
#: quote), and after one that closes it (or the first of a doubled quote).
_BEFORE_OPENING: Final = np.frombuffer(b',\n"', dtype=np.uint8)
_AFTER_CLOSING: Final = np.frombuffer(b',\r\n"', dtype=np.uint8)


class ReadWhole(Exception):
    """The file must be read whole: some piece does not read on its own (the
    message says why; see the module's docstring)."""


def csv_pieces(
    stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[list[bytes | memoryview]]:
    """The stream's bytes in order, in pieces that each end at a line end outside any
    quoted field, counting quotes (the last piece ends where the stream does).
    Joined, they are the stream's bytes exactly.

    A piece comes as the segments it is made of (what was left of the blocks before,
    and a view of the last block read): the caller joins them once, with whatever
    goes before. `ReadWhole` when no line end outside quotes comes for more than
    `_longest_line(chunk_bytes)` bytes.
    """
    return _pieces(stream, chunk_bytes, quoted=True)


def line_pieces(
    stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[list[bytes | memoryview]]:
    """`csv_pieces` for JSON Lines: each piece ends at a line end (a JSON text never
    holds one: a line break in a string is written `\\n`)."""
    return _pieces(stream, chunk_bytes, quoted=False)


def _pieces(
    stream: BinaryIO, chunk_bytes: int, *, quoted: bool
) -> Iterator[list[bytes | memoryview]]:
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
    pending: list[bytes] = []
    pending_bytes = pending_quotes = 0
    while block := stream.read(chunk_bytes):
        cut = (
            _after_last_line_end_outside_quotes(block, pending_quotes)
            if quoted
            else block.rfind(_LINE_END) + 1
        )
        if cut == 0:  # no line end outside quotes yet: the block waits for the next
            pending.append(block)
            pending_bytes += len(block)
            pending_quotes += block.count(_QUOTE) if quoted else 0
            if pending_bytes > _longest_line(chunk_bytes):
                raise ReadWhole(f"no line end for more than {pending_bytes} bytes")
            continue
        view = memoryview(block)
        yield [*pending, view[:cut]]
        rest = bytes(view[cut:])
        del view, block  # not held while the next block is read
        pending = [rest] if rest else []
        pending_bytes = len(rest)
        pending_quotes = rest.count(_QUOTE) if quoted else 0
    if pending:
        yield [*pending]


def _longest_line(chunk_bytes: int) -> int:
    """The longest run of bytes without a line end outside quotes read in chunks."""
    return max(4 * chunk_bytes, 1 << 20)


def _after_last_line_end_outside_quotes(block: bytes, quotes_before: int) -> int:
    """Where the text after the last line end outside quotes starts (0: none), in a
    block that `quotes_before` quotes precede since the last cut."""
    if quotes_before == 0 and _QUOTE not in block:  # the usual batch: no quotes at all
        return block.rfind(_LINE_END) + 1
    quotes = quotes_before + block.count(_QUOTE)
    end = len(block)
    while (at := block.rfind(_LINE_END, 0, end)) >= 0:
        quotes -= block.count(_QUOTE, at, end)
        if quotes % 2 == 0:
            return at + 1
        end = at
    return 0


def quotes_in_place(text: bytes) -> bool:
    """Whether every quote of `text` (which starts outside quotes) is where RFC 4180
    puts one, so that counting quotes tells a line end inside a quoted field.

    Counted from the start, a quote with an even number of quotes before it opens a
    field (after a comma, a line end or the start) or is the second of a doubled
    quote; one with an odd number closes a field (before a comma, a line end, the
    end) or is the first of a doubled quote. A quote elsewhere (`5" cut`, `"a"b`)
    is text to the reader, or an error: the count would go wrong from there.
    """
    if _QUOTE not in text:
        return True
    data = np.frombuffer(text, dtype=np.uint8)
    at = np.flatnonzero(data == _QUOTE[0])
    opening, closing = at[0::2], at[1::2]
    before = data[np.maximum(opening - 1, 0)]
    after = data[np.minimum(closing + 1, data.size - 1)]
    opens = (opening == 0) | np.isin(before, _BEFORE_OPENING)
    closes = (closing == data.size - 1) | np.isin(after, _AFTER_CLOSING)
    return bool(opens.all() and closes.all())


def _header_line(first: bytes) -> bytes:
    """The header line of a file whose first piece is `first`, as a piece after it
    needs it: the first line outside quotes, after the blank lines the reader skips."""
    body = first.lstrip(b"\r\n")
    at = body.find(_LINE_END)
    while at >= 0 and body.count(_QUOTE, 0, at) % 2:
        at = body.find(_LINE_END, at + 1)
    return body if at < 0 else body[: at + 1]


def read_csv_chunks(
    path: Path, batch_id: str, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pl.DataFrame]:
    """The batch file's text frames, a piece at a time: together, the rows of
    `read_batch_bytes(<the file>, "csv", with_raw=False)`, with the file's row_number.

    Raises `ReadWhole` when the file must be read whole instead (before or after
    some frames), and `InboxFileUnavailable` when it cannot be read or, once every
    piece is read, if the bytes read are not those of `batch_id` (SHA-256) or the
    file changed meanwhile.
    """
    return _read_line_chunks(path, batch_id, chunk_bytes, _CsvPieces())


def read_jsonl_chunks(
    path: Path, batch_id: str, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pl.DataFrame]:
    """A JSON Lines batch file's text frames, a piece of whole lines at a time, as
    `read_csv_chunks`; together, the rows of `read_batch_bytes(<the file>, "jsonl",
    with_raw=False)`.

    Every piece is read with the keys and types the whole file's reader learns from
    the file's first objects (`reading.learnt_types`), as that reader reads those
    lines; where it would read the file otherwise (a key the first objects do not
    have, a value of another type, an object or array value), `ReadWhole`.
    """
    return _read_line_chunks(path, batch_id, chunk_bytes, _JsonLinesPieces(path))


class _CsvPieces:
    """A CSV piece after the first is read after the file's header line."""

    def __init__(self) -> None:
        self.header = b""
        self.marks = frozenset[str]()

    def cut(self, stream: BinaryIO, chunk_bytes: int) -> Iterator[list[bytes | memoryview]]:
        return csv_pieces(stream, chunk_bytes)

    def joined(self, segments: list[bytes | memoryview]) -> bytes:
        if self.header:
            return b"".join([self.header, *segments])
        text = b"".join(segments)
        self.header = _header_line(text)
        return text

    def read(self, text: bytes) -> pl.DataFrame:
        if not quotes_in_place(text):
            raise ReadWhole("a quote where a CSV field cannot hold one")
        self.marks |= line_marks_in(text)
        if no_line_mark_left(self.marks):
            raise ReadWhole("every control character that could mark its lines")
        return read_batch_bytes(text, "csv", with_raw=False)


class _JsonLinesPieces:
    """Every JSON Lines piece is read with the keys and types the whole file's reader
    learns from the file's first objects (`reading.learnt_types`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.learnt: JsonTypes | None = None

    def cut(self, stream: BinaryIO, chunk_bytes: int) -> Iterator[list[bytes | memoryview]]:
        return line_pieces(stream, chunk_bytes)

    def joined(self, segments: list[bytes | memoryview]) -> bytes:
        return b"".join(segments)

    def read(self, text: bytes) -> pl.DataFrame | None:
        if blank_jsonl(text):  # no object, as in the whole file
            return None
        try:
            if self.learnt is None:
                # The file's start, read apart: checked with the rest by the pass's hash.
                with _open_regular(self.path) as stream:
                    try:
                        head = stream.read(SAMPLE_BYTES)
                    except OSError as exc:
                        reason = os_reason(exc, _VANISHED)
                        raise InboxFileUnavailable(self.path.name, reason) from None
                self.learnt = learnt_types(head)
            return read_batch_bytes(text, "jsonl", with_raw=False, learnt=self.learnt)
        except NotReadInPieces as exc:
            raise ReadWhole(str(exc)) from None


def _read_line_chunks(
    path: Path, batch_id: str, chunk_bytes: int, way: _CsvPieces | _JsonLinesPieces
) -> Iterator[pl.DataFrame]:
    name = path.name
    digest = hashlib.sha256()
    rows = pieces = 0
    with _open_regular(path) as stream:
        before = os.fstat(stream.fileno())
        for segments in way.cut(stream, chunk_bytes):
            for segment in segments:
                digest.update(segment)
            text = way.joined(segments)
            del segments
            try:
                frame = way.read(text)
            except UnreadableBatch as exc:
                raise ReadWhole(str(exc)) from None
            del text
            if frame is None:
                continue
            if rows:
                frame = frame.with_columns(pl.col(ROW_NUMBER) + rows)
            rows += frame.height
            pieces += 1
            yield frame
            del frame  # not held while the next piece is read and parsed
        after = os.fstat(stream.fileno())
    if not pieces:
        raise ReadWhole("the file is empty")
    changed = (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
    if changed or digest.hexdigest() != batch_id:
        raise InboxFileUnavailable(name, "changed while it was read")


def read_parquet_chunks(
    path: Path, batch_id: str, rows: int = CHUNK_BYTES // CSV_ROW_BYTES
) -> Iterator[pl.DataFrame]:
    """A Parquet batch file's text frames, `rows` rows at a time: together, the rows
    of `read_batch_bytes(<the file>, "parquet", with_raw=False)`, with the file's
    row_number. The file's bytes (compressed: a fraction of its text frame) are held
    while it is read; `ReadWhole` and `InboxFileUnavailable` as `read_csv_chunks`."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    with _open_regular(path) as stream:
        try:
            data = stream.read()
        except OSError as exc:
            raise InboxFileUnavailable(path.name, os_reason(exc, _VANISHED)) from None
    if hashlib.sha256(data).hexdigest() != batch_id:
        raise InboxFileUnavailable(path.name, "changed while it was read")
    if not data:
        raise ReadWhole("the file is empty")
    try:
        total = int(pl.scan_parquet(io.BytesIO(data)).select(pl.len()).collect().item())
    except (Exception, pl.exceptions.PanicException):
        raise ReadWhole("its row count cannot be read") from None
    for offset in range(0, max(total, 1), rows):
        try:
            frame = read_batch_bytes(data, "parquet", with_raw=False, rows=(offset, rows))
        except UnreadableBatch as exc:
            raise ReadWhole(str(exc)) from None
        if offset:
            frame = frame.with_columns(pl.col(ROW_NUMBER) + offset)
        yield frame
        del frame


def read_chunks(
    path: Path, batch_id: str, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pl.DataFrame]:
    """A CSV, JSON Lines or Parquet batch file's text frames, a piece at a time:
    pieces of `chunk_bytes` of text, or of as many Parquet rows as a CSV piece holds."""
    fmt = batch_format(path)
    if fmt == "csv":
        return read_csv_chunks(path, batch_id, chunk_bytes)
    if fmt == "jsonl":
        return read_jsonl_chunks(path, batch_id, chunk_bytes)
    if fmt == "parquet":
        return read_parquet_chunks(path, batch_id, max(1, chunk_bytes // CSV_ROW_BYTES))
    raise ValueError(f"{path.name}: only CSV, JSON Lines and Parquet batches are read in chunks")


def batch_id_of_file(path: Path) -> str:
    """Spec §6's batch id (SHA-256 of the bytes) of a local file, read a block at a
    time; `InboxFileUnavailable` if it cannot be read."""
    with _open_regular(path) as stream:
        try:
            return hashlib.file_digest(stream, "sha256").hexdigest()
        except OSError as exc:
            raise InboxFileUnavailable(path.name, os_reason(exc, _VANISHED)) from None


def _open_regular(path: Path) -> io.BufferedReader:
    """The file opened for reading, if it is still a regular file (a FIFO put in its
    place would block the read); else `InboxFileUnavailable`, in the inbox's words."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise InboxFileUnavailable(path.name, "is no longer a file")
        return path.open("rb")
    except OSError as exc:
        raise InboxFileUnavailable(path.name, os_reason(exc, _VANISHED)) from None
