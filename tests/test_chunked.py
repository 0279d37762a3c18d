"""A local CSV batch prepared a chunk at a time for the partitioned executors (issue 15,
claimsflow/pipeline/chunked.py): the same rows read, the same verdicts, the same
event log as the one-piece run, whatever the chunk size."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.ingest import reading
from claimsflow.ingest.chunks import (
    ReadWhole,
    batch_id_of_file,
    csv_pieces,
    quotes_in_place,
    read_csv_chunks,
    read_jsonl_chunks,
    read_parquet_chunks,
)
from claimsflow.ingest.inbox import InboxFileUnavailable, discover_inbox
from claimsflow.ingest.reading import UnreadableBatch, read_batch_bytes
from claimsflow.lake import eventlog
from claimsflow.pipeline import batch as batch_module
from claimsflow.pipeline import chunked
from claimsflow.pipeline.batch import (
    BatchOutcome,
    RunContext,
    batch_id_of_bytes,
    process_batch,
)
from claimsflow.pipeline.chunked import adjudicate_in_chunks
from claimsflow.pipeline.partitioning import decide_parts_here
from claimsflow.settings import RULES_DIR
from claimsflow.tools.generate import write_sample
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED
from tests.batch_helpers import REQUIRED_HEADER, RunFactory, case_row, csv_bytes, write_csv
from tests.hypothesis_support import examples, whole_runs
from tests.test_partitioning import EVENT_TABLES, in_a_fixed_order

#: The objects a JSON Lines reader learns a file's keys from, here: 1,000 in the
#: product; a few, so that files of a few lines are read in pieces too.
_SAMPLE = 3


@pytest.fixture(autouse=True, scope="module")
def _a_small_json_sample() -> Iterator[None]:
    with mock.patch.object(reading, "SCHEMA_SAMPLE_LINES", _SAMPLE):
        yield


# -- pieces of whole lines --------------------------------------------------------------


def test_a_piece_ends_at_the_last_line_end_outside_quotes() -> None:
    data = b'h\n"a\nb",c\nd\n'

    # Blocks of 3 bytes: 'h\n"' cuts after 'h\n'; the quoted line end of '"a\nb"'
    # (one quote before it) is no place to cut, so the rest waits for the final
    # line end, after which no quote is open.
    assert _pieces(data, 3) == [b"h\n", b'"a\nb",c\nd\n']
    assert _pieces(data, 100) == [data]
    assert _pieces(b"a\nb", 1) == [b"a\n", b"b"]
    assert _pieces(b"", 8) == []


def test_a_line_longer_than_four_chunks_and_a_mebibyte_is_read_whole() -> None:
    line = b"x" * ((1 << 20) + 4096)

    with pytest.raises(ReadWhole, match="no line end for more than"):
        _pieces(b"a\n" + line + b"\n", 1024)
    short = line[: 1 << 19]
    assert _pieces(b"a\n" + short + b"\nb", 1024) == [b"a\n", short + b"\n", b"b"]


@pytest.mark.parametrize(
    ("text", "in_place"),
    [
        (b"a,b\n", True),
        (b'"a",b\n', True),  # opens a field, closes it
        (b'"a""b",c\r\n', True),  # a doubled quote inside
        (b'"",x\n', True),  # an empty quoted field
        (b'"a\nb",c\n', True),  # a line end inside
        (b'"""a",x', True),
        (b'x,"', True),  # open at the end: the reader's to refuse
        (b'5"x,1\n', False),  # a quote inside an unquoted field is text to the reader
        (b'ab",1\n', False),
        (b'"a"b",c\n', False),  # text after a closing quote
        (b'"a" ,b\n', False),
    ],
)
def test_quotes_out_of_place_are_found(text: bytes, in_place: bool) -> None:
    assert quotes_in_place(text) is in_place


def test_a_stray_quote_sends_the_file_to_the_whole_read(
    tmp_path: Path, reference_dir: Path
) -> None:
    # Counted, the stray quote of `5"` would put the line end after `"p` outside
    # quotes and cut the quoted cell "p\nq" in two.
    def line(case_id: str, note: str) -> str:
        row = case_row(case_id)
        return ",".join([*(row[c] for c in REQUIRED_HEADER), note]) + "\n"

    header = ",".join([*REQUIRED_HEADER, "note"]) + "\n"
    data = (header + line("C1", '5" cut') + line("C2", '"p\nq"') + line("C3", "x")).encode()
    outcomes: dict[str, BatchOutcome] = {}
    for way in ("whole", "chunked"):
        inbox = tmp_path / way / "inbox"
        inbox.mkdir(parents=True)
        path = inbox / "b.csv"
        path.write_bytes(data)
        run = _run(tmp_path / way / "lake", reference_dir)
        if way == "whole":
            outcomes[way] = process_batch(path, run)
        else:
            with pytest.raises(ReadWhole, match="a quote where a CSV field cannot hold one"):
                list(read_csv_chunks(path, batch_id_of_bytes(data), 16))
            outcomes[way] = adjudicate_in_chunks(path, run, 2, decide_parts_here, 16)

    # The reader refuses the file (the stray quote confuses it): the same verdict.
    assert outcomes["chunked"].status == outcomes["whole"].status == REJECTED
    assert outcomes["chunked"].reason == outcomes["whole"].reason


def _pieces(data: bytes, chunk: int) -> list[bytes]:
    return [b"".join(segments) for segments in csv_pieces(io.BytesIO(data), chunk)]


@given(
    data=st.lists(st.sampled_from([b"a", b",", b'"', b"\n", b"\r"]), max_size=120).map(b"".join),
    chunk=st.integers(min_value=1, max_value=40),
)
def test_pieces_are_the_file_cut_at_line_ends_outside_quotes(data: bytes, chunk: int) -> None:
    pieces = _pieces(data, chunk)

    assert b"".join(pieces) == data
    assert all(pieces)
    for piece in pieces[:-1]:
        # Each piece starts outside quotes, so it ends outside them when its quotes
        # are even in number.
        assert piece.endswith(b"\n")
        assert piece.count(b'"') % 2 == 0


# -- the rows read ---------------------------------------------------------------------

_CELL = st.sampled_from(
    ["", "x", "C1", "a b", '"q,1"', '"line\nbreak"', '"say ""hi"""', "é", '5"x', 'ab"', '"a"b']
)
_LINE = st.lists(_CELL, min_size=0, max_size=len(REQUIRED_HEADER) + 2).map(",".join)


@settings(max_examples=examples(150), deadline=None)
@given(
    lines=st.lists(_LINE, max_size=12),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    quoted_header=st.booleans(),
    chunk=st.integers(min_value=1, max_value=200),
)
def test_a_csv_read_in_chunks_is_the_whole_files_rows(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    crlf: bool,
    final_newline: bool,
    quoted_header: bool,
    chunk: int,
) -> None:
    end = "\r\n" if crlf else "\n"
    header = ",".join(f'"{c}"' if quoted_header else c for c in REQUIRED_HEADER)
    text = end.join([header, *lines]) + (end if final_newline else "")
    data = text.encode()
    path = tmp_path_factory.mktemp("chunks") / "b.csv"
    path.write_bytes(data)
    try:
        whole: pl.DataFrame | None = read_batch_bytes(data, "csv", with_raw=False)
    except UnreadableBatch:
        whole = None

    try:
        frames = list(read_csv_chunks(path, batch_id_of_bytes(data), chunk))
    except ReadWhole:
        frames = None

    if whole is None:  # the one-piece run's reason then comes from the whole read
        assert frames is None
        return
    if frames is None:  # only a quote the count cannot follow sends a table back
        assert not quotes_in_place(data)
        return
    got = pl.concat(frames, how="diagonal")
    assert got.columns == whole.columns
    assert got.equals(whole)


@settings(max_examples=examples(60), deadline=None)
@given(
    values=st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(max_size=4)),
            st.one_of(st.none(), st.integers(-(10**6), 10**6)),
            st.one_of(st.none(), st.dates()),
        ),
        max_size=40,
    ),
    rows=st.integers(min_value=1, max_value=12),
)
def test_a_parquet_read_in_slices_is_the_whole_files_rows(
    tmp_path_factory: pytest.TempPathFactory,
    values: list[tuple[str | None, int | None, dt.date | None]],
    rows: int,
) -> None:
    # Typed columns (text, integers, dates) become the text a CSV would carry.
    typed = pl.DataFrame(
        {
            **{c: [v[0] for v in values] for c in REQUIRED_HEADER if c != "units"},
            "units": [v[1] for v in values],
            "service_date": [v[2] for v in values],
        },
        schema_overrides={"units": pl.Int64, "service_date": pl.Date},
    )
    path = tmp_path_factory.mktemp("slices") / "b.parquet"
    typed.write_parquet(path, row_group_size=7)
    data = path.read_bytes()

    got = pl.concat(list(read_parquet_chunks(path, batch_id_of_bytes(data), rows)))

    assert got.equals(read_batch_bytes(data, "parquet", with_raw=False))
    assert got["row_number"].to_list() == list(range(1, len(values) + 1))


# A JSON Lines object's members, as text: keys the batch has and others, values of
# every kind (an escaped quote, a `":` in a string, numbers, nested values), a key
# given twice; lines that are blank or not JSON.
_KEY = st.sampled_from(['"case_id"', '"units"', '"prior_auth_id"', '"note"', '"flag"'])
_VALUE = st.sampled_from(
    [
        '"C1"',
        '"a\\"b"',
        '"x\\":y"',
        "12",
        "-0.50",
        "1e3",
        "true",
        "false",
        "null",
        '""',
        '[1, "a"]',
        '{"k": 1}',
    ]
)
_OBJECT = st.lists(st.tuples(_KEY, _VALUE).map(": ".join), max_size=6).map(
    lambda members: "{" + ", ".join(members) + "}"
)
_JSON_LINE = st.one_of(_OBJECT, _OBJECT, _OBJECT, st.sampled_from(["", "  ", "{", "[]"]))


def _with_required(line: str) -> str:
    """An object's line with every required column first (so that a piece reads on its
    own); any other line as it is."""
    if not line.startswith("{"):
        return line
    required = ", ".join(f'"{c}": "v"' for c in REQUIRED_HEADER)
    return ("{" + required + ", " + line[1:]).replace(", }", "}")


@settings(max_examples=examples(150), deadline=None)
@given(
    lines=st.lists(_JSON_LINE, max_size=12),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    chunk=st.integers(min_value=1, max_value=200),
)
def test_a_jsonl_read_in_chunks_is_the_whole_files_rows(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    crlf: bool,
    final_newline: bool,
    chunk: int,
) -> None:
    body = [_with_required(line) for line in lines]
    end = "\r\n" if crlf else "\n"
    data = (end.join(body) + (end if final_newline else "")).encode()
    path = tmp_path_factory.mktemp("jsonl") / "b.jsonl"
    path.write_bytes(data)
    try:
        whole: pl.DataFrame | None = read_batch_bytes(data, "jsonl", with_raw=False)
    except UnreadableBatch:
        whole = None

    try:
        frames: list[pl.DataFrame] | None = list(
            read_jsonl_chunks(path, batch_id_of_bytes(data), chunk)
        )
    except ReadWhole:
        frames = None

    if whole is None:  # the one-piece run's reason then comes from the whole read
        assert frames is None
        return
    if frames is None:
        # Read whole: where the whole file's reader reads it another way than with the
        # keys and types of its first objects (a key they lack, a value of another
        # type, a nested value), or a file too short to learn its keys from.
        return
    got = pl.concat(frames, how="diagonal")
    assert got.columns == whole.columns
    assert got.equals(whole)


@settings(max_examples=examples(150), deadline=None)
@given(
    lines=st.lists(_JSON_LINE, max_size=12),
    final_newline=st.booleans(),
    piece=st.integers(min_value=1, max_value=400),
)
def test_a_large_jsonl_file_read_in_pieces_in_memory_is_the_whole_read(
    lines: list[str], final_newline: bool, piece: int
) -> None:
    """The one-piece run reads a JSON Lines file larger than JSONL_PIECE_BYTES a piece
    at a time (its text and the reader's copies held a piece at a time): the same
    rows, raw and row errors, or the same reason the file is unreadable."""
    body = [_with_required(line) for line in lines]
    data = ("\n".join(body) + ("\n" if final_newline else "")).encode()

    def read(piece_bytes: int) -> pl.DataFrame | str:
        with mock.patch.object(reading, "JSONL_PIECE_BYTES", piece_bytes):
            try:
                return read_batch_bytes(data, "jsonl")
            except UnreadableBatch as exc:
                return str(exc)

    whole, in_pieces = read(len(data) + 1), read(piece)

    if isinstance(whole, str):
        assert in_pieces == whole
    else:
        assert isinstance(in_pieces, pl.DataFrame)
        assert in_pieces.columns == whole.columns
        assert in_pieces.equals(whole)


def _object(members: str) -> bytes:
    """A JSON Lines object with every required column, then `members`, and its newline."""
    return f"{_with_required('{' + members + '}')}\n".encode()


@pytest.mark.parametrize(
    "pieces",
    [
        # Refused whole (true, then an array: no common type), but a piece that sees
        # text first reads the array as text.
        [_object('"x": true'), _object('"x": []') + _object('"x": "s"')],
        # A piece whose first objects give x only null types it as text, and reads a
        # later array as its JSON text.
        [
            _object('"x": true') * _SAMPLE,
            _object('"x": null') * _SAMPLE + _object('"x": ["a", 1]'),
        ],
        # The first piece's reader learns its keys from its first objects; a key given
        # only null after them is a column of the whole file (another piece holds a
        # `":` in a string, which makes the whole file be read object by object).
        [
            _object('"note": "a"') * _SAMPLE + _object('"note": "a", "late": null'),
            _object('"note": "x\\": y"'),
        ],
    ],
)
def test_jsonl_pieces_that_would_not_read_as_the_whole_file_are_read_whole(
    tmp_path: Path, pieces: list[bytes]
) -> None:
    data = b"".join(pieces)
    path = tmp_path / "b.jsonl"
    path.write_bytes(data)

    with pytest.raises(ReadWhole):
        list(read_jsonl_chunks(path, batch_id_of_bytes(data), len(pieces[0])))
    with mock.patch.object(reading, "JSONL_PIECE_BYTES", len(pieces[0])):
        try:
            in_pieces: pl.DataFrame | str = read_batch_bytes(data, "jsonl")
        except UnreadableBatch as exc:
            in_pieces = str(exc)
    try:
        whole: pl.DataFrame | str = read_batch_bytes(data, "jsonl")
    except UnreadableBatch as exc:
        whole = str(exc)
    if isinstance(whole, str):  # refused whole: refused in pieces, with the same reason
        assert in_pieces == whole
    else:
        assert isinstance(in_pieces, pl.DataFrame)
        assert in_pieces.equals(whole)


def test_a_key_given_only_null_after_the_readers_sample_is_a_column() -> None:
    """The whole file's reader learns its keys from its first objects; a key that only
    a later object names, with null, is a column all the same (null in every row), and
    the raw of a rejected row names it."""
    data = _object('"note": "a"') * _SAMPLE + _object('"note": "b", "late": null')

    frame = read_batch_bytes(data, "jsonl")

    assert frame.columns[-4:] == ["note", "late", "row_number", "raw"]
    assert frame["late"].null_count() == _SAMPLE + 1
    assert json.loads(frame["raw"][-1])["late"] is None


def test_a_jsonl_file_is_read_in_pieces_of_whole_lines(inbox: Path, make_run: RunFactory) -> None:
    """One object a piece: the rows, their numbers, and a rejected row's raw are the
    whole file's (numbers read as their text: units 0 is rejected, 80.00 billed)."""
    first = json.dumps(case_row("C1", units="0")).replace('"units": "0"', '"units": 0')
    later = json.dumps(case_row("C2")).replace('"billed_amount": "80.00"', '"billed_amount": 80.00')
    data = f"{first}\n\n{later}\n".encode()  # a blank line between them
    path = inbox / "b.jsonl"
    path.write_bytes(data)

    frames = list(read_jsonl_chunks(path, batch_id_of_bytes(data), 1))

    assert [frame.height for frame in frames] == [1, 1]
    got = pl.concat(frames)
    assert got.equals(read_batch_bytes(data, "jsonl", with_raw=False))
    assert got.select("row_number", "case_id", "units", "billed_amount").rows() == [
        (1, "C1", "0", "80.00"),
        (2, "C2", "1", "80.00"),
    ]

    run = make_run("pieces")
    outcome = adjudicate_in_chunks(path, run, 2, decide_parts_here, chunk_bytes=1)

    assert (outcome.status, outcome.rows_decided, outcome.rows_rejected) == (PROCESSED, 1, 1)
    (rejected,) = eventlog.scan_table(run.lake, "rejections").collect().rows(named=True)
    assert (rejected["row_number"], rejected["errors"]) == (1, ["units: must be between 1 and 999"])
    assert json.loads(rejected["raw"]) == case_row("C1", units="0")


@pytest.mark.parametrize(
    ("first", "later", "why"),
    [
        # The whole file's reader then learns the keys from every object, in an order of
        # its own: the file is read whole, in one piece or many.
        ({}, {"note": "late"}, "an object with a key the first objects do not have"),
        ({}, {"note": ["a", 1]}, "a value that is a JSON object or array"),
        ({}, {"note": {"k": 1}}, "a value that is a JSON object or array"),
        ({"raw": "x"}, {"raw": "y"}, "a key named as a column the reader adds"),
    ],
)
def test_a_jsonl_file_that_pieces_would_read_otherwise_is_read_whole(
    tmp_path: Path, first: dict[str, object], later: dict[str, object], why: str
) -> None:
    objects = [case_row(f"C{i}") | first for i in range(_SAMPLE)] + [case_row("C9") | later]
    data = "".join(f"{json.dumps(o)}\n" for o in objects).encode()
    path = tmp_path / "b.jsonl"
    path.write_bytes(data)

    for chunk in (1, len(data)):  # a piece per line, then one piece
        with pytest.raises(ReadWhole, match=why):
            list(read_jsonl_chunks(path, batch_id_of_bytes(data), chunk))


@pytest.mark.parametrize("piece_bytes", [2_000, 30_000])
def test_the_one_piece_run_reads_a_large_jsonl_file_in_pieces_to_the_same_event_log(
    tmp_path: Path, piece_bytes: int
) -> None:
    """`process_batch` reads a local JSON Lines file over JSONL_PIECE_BYTES from disk a
    piece at a time (pipeline/batch.py, `_open_in_pieces`): the same event log as the
    whole read, corrections of earlier batches and invalid rows included."""
    write_sample(tmp_path, 600, 3, 11, formats=("jsonl",))
    lakes = {"whole": tmp_path / "whole", "pieces": tmp_path / "pieces"}
    for way, lake in lakes.items():
        run = _run(lake, tmp_path / "reference")
        threshold = piece_bytes if way == "pieces" else 1 << 40
        with mock.patch.object(reading, "JSONL_PIECE_BYTES", threshold):
            for path in discover_inbox(tmp_path / "inbox")[0]:
                assert process_batch(path, run).status == PROCESSED

    for table in EVENT_TABLES:
        expected = in_a_fixed_order(eventlog.scan_table(lakes["whole"], table).collect())
        got = in_a_fixed_order(eventlog.scan_table(lakes["pieces"], table).collect())
        assert got.equals(expected), table
    # Hashed a block at a time, the same bytes are the same batch: seen, skipped.
    first = discover_inbox(tmp_path / "inbox")[0][0]
    with mock.patch.object(reading, "JSONL_PIECE_BYTES", piece_bytes):
        again = process_batch(first, _run(lakes["pieces"], tmp_path / "reference"))
    assert (again.status, again.batch_id) == (SKIPPED, batch_id_of_bytes(first.read_bytes()))


def test_a_large_jsonl_file_that_does_not_read_is_rejected_and_kept_verbatim(
    inbox: Path, lake: Path, make_run: RunFactory
) -> None:
    good = [json.dumps(case_row(f"C{i}")) for i in range(1, 30)]
    data = ("\n".join([*good[:20], '{"case_id": "C99", ', *good[20:]]) + "\n").encode()
    (inbox / "b.jsonl").write_bytes(data)
    run = make_run("broken")

    with mock.patch.object(reading, "JSONL_PIECE_BYTES", 100):
        outcome = process_batch(inbox / "b.jsonl", run)

    assert outcome.status == REJECTED
    assert outcome.reason is not None and outcome.reason.startswith("cannot be read as jsonl")
    (kept,) = [p for p in lake.rglob("b.jsonl") if "quarantine" in p.parts]
    assert kept.read_bytes() == data


def test_a_large_jsonl_file_whose_pieces_do_not_read_is_read_whole_once(
    inbox: Path, make_run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces read from disk that fall back are not tried again from the bytes: a later
    object's new key sends the file to the whole read, which decides both rows."""
    objects = [case_row(f"C{i}") for i in range(_SAMPLE)] + [case_row("C9") | {"note": "x"}]
    (inbox / "b.jsonl").write_bytes("".join(f"{json.dumps(o)}\n" for o in objects).encode())

    def not_again(data: bytes) -> pl.DataFrame:
        raise AssertionError("the pieces were tried again")

    monkeypatch.setattr(reading, "_read_jsonl_in_pieces", not_again)
    with mock.patch.object(reading, "JSONL_PIECE_BYTES", 10):
        outcome = process_batch(inbox / "b.jsonl", make_run("once"))

    assert (outcome.status, outcome.rows_in, outcome.rows_decided) == (PROCESSED, 4, 4)

    # So with the partitioned executors: their chunks fall back to the whole read, and
    # the one-piece preparation does not try the file's pieces again.
    monkeypatch.setattr(batch_module, "_open_in_pieces", not_again)
    (inbox / "c.jsonl").write_bytes((inbox / "b.jsonl").read_bytes().replace(b'"C', b'"D'))
    with mock.patch.object(reading, "JSONL_PIECE_BYTES", 10):
        parted = adjudicate_in_chunks(inbox / "c.jsonl", make_run("parts"), 2, decide_parts_here, 1)

    assert (parted.status, parted.rows_in, parted.rows_decided) == (PROCESSED, 4, 4)


def test_a_large_jsonl_file_changed_after_it_was_hashed_is_left_for_the_next_run(
    inbox: Path, make_run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = inbox / "b.jsonl"
    path.write_bytes(f"{json.dumps(case_row('C1'))}\n".encode())

    def then_appended(p: Path) -> str:
        batch_id = batch_id_of_file(p)
        with p.open("ab") as out:
            out.write(f"{json.dumps(case_row('C2'))}\n".encode())
        return batch_id

    monkeypatch.setattr(batch_module, "batch_id_of_file", then_appended)
    run = make_run("changed")

    with (
        mock.patch.object(reading, "JSONL_PIECE_BYTES", 10),
        pytest.raises(InboxFileUnavailable, match="changed while it was read"),
    ):
        process_batch(path, run)

    assert eventlog.recorded_batch_ids(run.lake) in ([], ["_empty"])


def test_a_file_that_changed_between_reads_is_not_read(tmp_path: Path) -> None:
    data = csv_bytes([case_row("C1"), case_row("C2")])
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    batch_id = batch_id_of_bytes(data)
    path.write_bytes(data + csv_bytes([case_row("C3")]).split(b"\n", 1)[1])

    with pytest.raises(InboxFileUnavailable, match="changed while it was read"):
        list(read_csv_chunks(path, batch_id, 64))


# -- the batch decided -----------------------------------------------------------------


def test_repeats_and_corrections_are_judged_across_chunks(
    inbox: Path, make_run: RunFactory
) -> None:
    write_csv(inbox / "a.csv", [case_row("O1"), case_row("O2", service_date="2024-05-02")])
    process_batch(inbox / "a.csv", make_run("first"))
    run = make_run("chunked")
    corrects = {"claim_frequency": "8", "original_case_id": "O1"}
    write_csv(
        inbox / "b.csv",
        [
            case_row("V1", **corrects),  # voids O1
            case_row("C1", service_date="2024-05-03"),
            # A later chunk: a second correction of O1, and C1's case_id again.
            case_row("V2", **corrects),
            case_row("C1", service_date="2024-05-04"),
            case_row("O2"),  # decided in the first batch: a resubmission
            case_row("C2", service_date="2024-05-05"),
        ],
    )

    # One line per chunk: every repeat and correction is in a chunk of its own.
    outcome = adjudicate_in_chunks(inbox / "b.csv", run, 2, decide_parts_here, chunk_bytes=1)

    assert (outcome.status, outcome.rows_in, outcome.rows_decided) == (PROCESSED, 6, 3)
    assert outcome.voided_originals == 1
    rejections = eventlog.scan_table(run.lake, "rejections").collect().sort("row_number")
    assert rejections.select("row_number", "case_id", "errors").rows() == [
        (3, "V2", ["original_case_id: an earlier row of this batch already corrects this case"]),
        (4, "C1", ["case_id: repeats the case_id of an earlier row of this batch"]),
        (5, "O2", ["case_id: already has a decision from an earlier batch (resubmission)"]),
    ]
    decisions = eventlog.scan_table(run.lake, "decisions").filter(pl.col("run_id") == "chunked")
    assert sorted(
        decisions.select("case_id", "status", "decided_by", "decision_source").collect().rows()
    ) == [
        ("C1", "APPROVED", None, "ADJUDICATION"),
        ("C2", "APPROVED", None, "ADJUDICATION"),
        ("O1", "VOIDED", "V1", "CORRECTION"),
        ("V1", "VOIDED", "V1", "CORRECTION"),
    ]
    assert sorted(
        eventlog.scan_table(run.lake, "cases")
        .filter(pl.col("case_id").is_in(["V1", "C1", "C2"]))
        .select("row_number", "case_id")
        .collect()
        .rows()
    ) == [(1, "V1"), (2, "C1"), (6, "C2")]
    assert list(eventlog.staging_dir(run.lake).iterdir()) == []


def test_a_batch_with_no_valid_case_is_recorded(inbox: Path, make_run: RunFactory) -> None:
    write_csv(inbox / "bad.csv", [case_row("C1", units="0"), case_row("C2", units="x")])
    run = make_run("none")

    outcome = adjudicate_in_chunks(inbox / "bad.csv", run, 3, decide_parts_here, chunk_bytes=8)

    assert (outcome.status, outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (
        PROCESSED,
        2,
        0,
        2,
    )
    assert eventlog.scan_table(run.lake, "decisions").collect().height == 0
    assert eventlog.scan_table(run.lake, "rejections").collect()["case_id"].to_list() == [
        "C1",
        "C2",
    ]


def test_an_unreadable_file_is_rejected_as_the_one_piece_run_rejects_it(
    tmp_path: Path, reference_dir: Path
) -> None:
    good = csv_bytes([case_row(f"C{i}") for i in range(1, 40)])
    data = good + b"C99,M001,P001,2024-05-01,2024-05-10,99213,J45.909,1,\xff80.00,\n"
    outcomes: dict[str, BatchOutcome] = {}
    for way in ("whole", "chunked"):
        inbox = tmp_path / way / "inbox"
        inbox.mkdir(parents=True)
        (inbox / "b.csv").write_bytes(data)
        run = _run(tmp_path / way / "lake", reference_dir)
        if way == "whole":
            outcomes[way] = process_batch(inbox / "b.csv", run)
        else:
            outcomes[way] = adjudicate_in_chunks(inbox / "b.csv", run, 2, decide_parts_here, 256)

    assert outcomes["chunked"].status == REJECTED
    assert outcomes["chunked"].reason == outcomes["whole"].reason
    assert outcomes["chunked"].reason is not None and "UTF-8" in outcomes["chunked"].reason
    kept = tmp_path / "chunked" / "lake"
    (quarantined,) = [p for p in kept.rglob("b.csv") if "quarantine" in p.parts]
    assert quarantined.read_bytes() == data


def test_a_batch_read_whole_after_an_attempt_in_chunks_counts_the_attempt(
    inbox: Path, make_run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock is read when the attempt starts (100 s) and when the whole read ends
    (130 s): the batch took 30 s, not the whole read's own time alone."""
    data = csv_bytes([case_row("C1")]) + b"C2,M001,\xff\n"  # not UTF-8: read whole
    (inbox / "b.csv").write_bytes(data)
    readings = [100.0, 130.0]  # the attempt's start, then every later reading

    def clock() -> float:
        return readings.pop(0) if len(readings) > 1 else readings[0]

    monkeypatch.setattr(chunked, "time", SimpleNamespace(perf_counter=clock))

    outcome = adjudicate_in_chunks(inbox / "b.csv", make_run("x"), 2, decide_parts_here)

    assert outcome.status == REJECTED
    assert outcome.seconds == 30.0


def test_a_recorded_batch_is_skipped(inbox: Path, make_run: RunFactory) -> None:
    write_csv(inbox / "b.csv", [case_row("C1")])
    first = adjudicate_in_chunks(inbox / "b.csv", make_run("one"), 2, decide_parts_here)

    again = adjudicate_in_chunks(inbox / "b.csv", make_run("two"), 2, decide_parts_here)

    assert (first.status, again.status) == (PROCESSED, SKIPPED)
    assert again.batch_id == first.batch_id


def test_a_file_changed_between_the_passes_is_left_for_the_next_run(
    inbox: Path, make_run: RunFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(inbox / "b.csv", [case_row("C1"), case_row("C2")])
    first_pass = chunked._first_pass

    def then_appended(*args: object, **kwargs: object) -> object:
        found = first_pass(*args, **kwargs)  # type: ignore[arg-type]
        with path.open("ab") as out:
            out.write(b"C3,M001,P001,2024-05-01,2024-05-10,99213,J45.909,1,80.00,\n")
        return found

    monkeypatch.setattr(chunked, "_first_pass", then_appended)
    run = make_run("changed")

    with pytest.raises(InboxFileUnavailable, match="changed while it was read"):
        adjudicate_in_chunks(path, run, 2, decide_parts_here)

    assert eventlog.recorded_batch_ids(run.lake) in ([], ["_empty"])
    assert list(eventlog.staging_dir(run.lake).iterdir()) == []


# A few examples: each writes a sample and runs it twice (~5 s); the reading and the
# verdicts across chunks have property tests of their own above.
@whole_runs(6)
@given(
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    cases=st.integers(min_value=1, max_value=800),
    batches=st.integers(min_value=2, max_value=3),
    partitions=st.integers(min_value=1, max_value=5),
    # From ~25 rows a piece (a piece per line: the hand-made test above) to the batch.
    chunk=st.integers(min_value=2_000, max_value=80_000),
    fmt=st.sampled_from(["csv", "jsonl", "parquet"]),
)
def test_any_chunking_gives_the_one_piece_event_log(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    cases: int,
    batches: int,
    partitions: int,
    chunk: int,
    fmt: str,
) -> None:
    root = tmp_path_factory.mktemp("chunked")
    # Repeated case_ids, invalid rows, and from the second batch on corrections
    # (voids and replacements) of earlier batches' cases. A Parquet batch is read
    # in slices of chunk / 80 rows (25 rows and up).
    write_sample(root, cases, batches, seed, formats=(fmt,))
    lakes = {"whole": root / "whole", "chunked": root / "chunked"}
    outcomes: dict[str, list[BatchOutcome]] = {}
    for way, lake in lakes.items():
        run = _run(lake, root / "reference")
        outcomes[way] = [
            process_batch(path, run)
            if way == "whole"
            else adjudicate_in_chunks(path, run, partitions, decide_parts_here, chunk)
            for path in discover_inbox(root / "inbox")[0]
        ]

    def tally(o: BatchOutcome) -> tuple[object, ...]:
        return (o.status, o.rows_in, o.rows_decided, o.rows_rejected, o.voided_originals)

    assert [tally(o) for o in outcomes["chunked"]] == [tally(o) for o in outcomes["whole"]]
    assert [o.by_status for o in outcomes["chunked"]] == [o.by_status for o in outcomes["whole"]]
    for table in EVENT_TABLES:
        expected = in_a_fixed_order(eventlog.scan_table(lakes["whole"], table).collect())
        got = in_a_fixed_order(eventlog.scan_table(lakes["chunked"], table).collect())
        assert got.equals(expected), table
    assert list(eventlog.staging_dir(lakes["chunked"]).iterdir()) == []
    shutil.rmtree(root)


def _run(lake: Path, reference: Path) -> RunContext:
    eventlog.ensure_lake(lake)
    return RunContext(
        lake,
        load_reference(reference),
        load_ruleset(RULES_DIR / "claims-standard-v1.yaml"),
        "run",
        lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
