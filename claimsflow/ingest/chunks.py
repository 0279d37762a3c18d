"""A local CSV batch read a chunk of whole lines at a time (issue 15): the partitioned
executors' coordinator never holds a 10M-case file, nor its text frame, whole.

The file is cut into pieces that each end at a line end outside any quoted field (a
line end is inside a quoted field exactly when an odd number of quotes come before
it: a quote inside a quoted field is written twice). A piece holds whole lines, so
parsed after the file's header line it gives the rows the whole file gives there
(`reading.read_batch_bytes`), numbered on from the rows before it.

Only a file whose every piece reads is read this way. A piece that does not read
(`UnreadableBatch`), or pieces that between them hold every control character the
CSV reader could mark lines with, send the caller back to reading the file whole:
the whole file's reason, and its quarantine, are then exactly those of the
one-piece run.

The file is read more than once (the coordinator's passes), so each pass hashes what
it reads and checks it against the batch id: a file that changed in between is
`InboxFileUnavailable`, as `read_inbox_file` says of a file that changed while read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

import polars as pl

from claimsflow.csvtext import line_marks_in, no_line_mark_left
from claimsflow.ingest.inbox import InboxFileUnavailable
from claimsflow.ingest.reading import UnreadableBatch, read_batch_bytes
from claimsflow.vocabulary import ROW_NUMBER

#: Bytes read at a time: ~0.8M rows of a typical batch, ~0.2 GiB of text frame.
CHUNK_BYTES: Final = 64 << 20
_QUOTE, _LINE_END = b'"', b"\n"


class ReadWhole(Exception):
    """The file must be read whole: some piece does not read on its own (see the
    module's docstring)."""


def csv_pieces(
    stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[list[bytes | memoryview]]:
    """The stream's bytes in order, in pieces that each end at a line end outside any
    quoted field (the last piece ends where the stream does). Joined, they are the
    stream's bytes exactly.

    A piece comes as the segments it is made of (the rest of the block before, and a
    view of the block read): the caller joins them once, with whatever goes before.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
    carry, carry_quotes = b"", 0
    while block := stream.read(chunk_bytes):
        cut = _after_last_line_end_outside_quotes(block, carry_quotes)
        if cut == 0:  # no line ends outside quotes yet: the block waits for the next
            carry, carry_quotes = carry + block, carry_quotes + block.count(_QUOTE)
            continue
        view = memoryview(block)
        yield [carry, view[:cut]] if carry else [view[:cut]]
        carry = bytes(view[cut:])
        carry_quotes = carry.count(_QUOTE)
    if carry:
        yield [carry]


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
    some frames), and, once every piece is read, `InboxFileUnavailable` if the bytes
    read are not those of `batch_id` (SHA-256) or the file changed meanwhile.
    """
    name = path.name
    digest = hashlib.sha256()
    header, rows, marks = b"", 0, frozenset[str]()
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InboxFileUnavailable(name, f"could not be read ({exc.strerror})") from None
    with stream:
        before = os.fstat(stream.fileno())
        if not stat.S_ISREG(before.st_mode):
            raise InboxFileUnavailable(name, "is no longer a file")
        for segments in csv_pieces(stream, chunk_bytes):
            for segment in segments:
                digest.update(segment)
            if not header:
                text = b"".join(segments)
                header = _header_line(text)
            else:
                text = b"".join([header, *segments])
            del segments
            marks |= line_marks_in(text)
            if no_line_mark_left(marks):
                raise ReadWhole(name)
            try:
                frame = read_batch_bytes(text, "csv", with_raw=False)
            except UnreadableBatch:
                raise ReadWhole(name) from None
            del text
            if rows:
                frame = frame.with_columns(pl.col(ROW_NUMBER) + rows)
            rows += frame.height
            yield frame
        after = os.fstat(stream.fileno())
    if not header:
        raise ReadWhole(name)  # an empty file: unreadable, as the whole read says
    changed = (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
    if changed or digest.hexdigest() != batch_id:
        raise InboxFileUnavailable(name, "changed while it was read")


def batch_id_of_file(path: Path) -> str:
    """Spec §6's batch id (SHA-256 of the bytes) of a local file, read a block at a
    time; `InboxFileUnavailable` if it cannot be read."""
    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise InboxFileUnavailable(path.name, f"could not be read ({exc.strerror})") from None
