"""X12 interchanges: ISA delimiters, segments and elements, envelope checks.

The reader works on whole columns: the file is cut into interchanges here (a few
Python steps per interchange, to learn each one's delimiters from its ISA), then
every segment becomes one row of a Polars frame, and the envelope rules (ISA/IEA,
GS/GE, ST/SE pairing, counts and control numbers) are checked as column
expressions over those rows. No Python code runs once per segment.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

#: The fixed-width ISA segment: 106 characters, terminator included.
ISA_LENGTH = 106
#: Where the element separator stands in a fixed-width ISA (before ISA01..ISA16).
_ISA_SEPARATOR_AT = (3, 6, 17, 20, 31, 34, 50, 53, 69, 76, 81, 83, 89, 99, 101, 103)
_ISA13 = slice(90, 99)
_ISA11_AT, _ISA16_AT, _TERMINATOR_AT = 82, 104, 105
ENVELOPE_TAGS = ("ISA", "IEA", "GS", "GE", "ST", "SE")
#: Segment order of the envelope: what may follow each envelope segment.
_MAY_FOLLOW: dict[str, tuple[str | None, ...]] = {
    "ISA": (None, "IEA"),
    "GS": ("ISA", "GE"),
    "ST": ("GS", "SE"),
    "SE": ("ST",),
    "GE": ("SE", "GS"),
    "IEA": ("GE", "ISA"),
}
_UTF8_BOM = b"\xef\xbb\xbf"
#: Between interchanges: blank space, and the NUL or Ctrl-Z padding some systems add.
_BLANK = b" \t\r\n\x00\x1a"


class X12Error(ValueError):
    """The file is not a well-formed X12 interchange of the expected kind.

    The message is one line naming the segment and where it is; it never quotes
    member data (it is logged and stored with the quarantined batch).
    """


@dataclass(frozen=True)
class Delimiters:
    """The separators one interchange declares in its ISA."""

    element: str
    component: str
    repetition: str | None
    segment: str


@dataclass(frozen=True)
class Interchange:
    """One ISA..IEA interchange: where it is in the file and its delimiters."""

    number: int  # 1-based, in file order
    start: int  # byte offset of its ISA
    end: int  # byte offset just past its IEA's terminator
    delimiters: Delimiters
    control_number: str  # ISA13


def isa_delimiters(isa: bytes, number: int = 1) -> Delimiters:
    """The delimiters a fixed-width ISA declares (element = byte 3, component = ISA16,
    repetition = ISA11 when it is not a letter or digit (5010), terminator = the byte
    after ISA16). Raises X12Error when the ISA is not fixed-width or the delimiters
    are unusable."""
    where = f"interchange {number}"
    if len(isa) < ISA_LENGTH or not isa.startswith(b"ISA"):
        raise X12Error(f"{where}: the ISA segment is shorter than its fixed 106 characters")
    if not isa[:ISA_LENGTH].isascii():
        raise X12Error(f"{where}: the ISA segment is not ASCII text")
    text = isa[:ISA_LENGTH].decode("ascii")
    element = text[3]
    if any(text[i] != element for i in _ISA_SEPARATOR_AT) or text[4:104].count(element) != 15:
        raise X12Error(
            f"{where}: the ISA segment is not fixed-width (16 elements at their fixed positions)"
        )
    component, terminator = text[_ISA16_AT], text[_TERMINATOR_AT]
    separators = [element, component, terminator]
    if len(set(separators)) != len(separators):
        raise X12Error(f"{where}: the ISA declares the same character for two delimiters")
    if any(c.isalnum() or c == " " for c in separators):
        raise X12Error(f"{where}: the ISA declares a letter, digit or space as a delimiter")
    if element in "\r\n" or component in "\r\n":
        raise X12Error(f"{where}: the ISA declares a line break as an element separator")
    # ISA11 is the repetition separator in 5010; in 4010 it is the standards id `U`.
    # No element §10 reads repeats, so an ISA11 that is no usable separator (a
    # letter, a space, a line break, or one of the other delimiters) is ignored.
    repetition: str | None = text[_ISA11_AT]
    if (
        repetition is None
        or repetition.isalnum()
        or repetition in " \r\n"
        or repetition in separators
    ):
        repetition = None
    return Delimiters(element, component, repetition, terminator)


def find_interchanges(data: bytes) -> list[Interchange]:
    """Cut a file into its interchanges, each with the delimiters of its own ISA.

    Blank space before, between and after interchanges is allowed (and a UTF-8
    byte-order mark at the start); anything else outside an interchange is not.
    """
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    position = _skip_blank(data, start)
    if position == len(data):
        raise X12Error("the file is empty: not an X12 interchange")
    found: list[Interchange] = []
    while position < len(data):
        number = len(found) + 1
        if not data.startswith(b"ISA", position):
            what = (
                "the file does not start with an ISA segment"
                if number == 1
                else (f"data after interchange {number - 1} is not an ISA segment")
            )
            raise X12Error(f"{what}: not an X12 interchange")
        delimiters = isa_delimiters(data[position : position + ISA_LENGTH], number)
        end = _interchange_end(data, position, delimiters, number)
        control = data[position + _ISA13.start : position + _ISA13.stop].decode("ascii")
        found.append(Interchange(number, position, end, delimiters, control))
        position = _skip_blank(data, end)
    return found


def _skip_blank(data: bytes, position: int) -> int:
    while position < len(data) and data[position] in _BLANK:
        position += 1
    return position


def _interchange_end(data: bytes, start: int, delimiters: Delimiters, number: int) -> int:
    """Just past the terminator of the first IEA segment after the ISA at `start`."""
    terminator = delimiters.segment.encode("ascii")
    needle = b"IEA" + delimiters.element.encode("ascii")
    position = start + ISA_LENGTH
    while True:
        found = data.find(needle, position)
        if found == -1:
            # `IEA` with no element at all, as the very last segment.
            found = data.find(b"IEA" + terminator, position)
            if found == -1:
                raise X12Error(f"interchange {number}: ISA without a matching IEA segment")
        # A segment starts after a terminator and any line breaks.
        before = found
        while before > start and data[before - 1] in b"\r\n" and terminator not in b"\r\n":
            before -= 1
        if data[before - 1 : before] == terminator:
            close = data.find(terminator, found + 3)
            # An IEA as the very last bytes of a file may lack its terminator.
            return len(data) if close == -1 else close + 1
        position = found + 1


def _unused_byte(data: bytes) -> str:
    """A byte that does not occur in `data`: the column separator of a one-column read."""
    for code in (*range(0, 9), *range(14, 32), 127):
        if bytes([code]) not in data:
            return chr(code)
    raise X12Error("the file uses every control character: not X12 text")


def tag_codes(tags: Sequence[str]) -> dict[str, int]:
    """Segment ids and their codes in a segment frame: envelope ids first, then `tags`
    (code 0 = any other segment)."""
    ordered = list(ENVELOPE_TAGS) + [t for t in tags if t not in ENVELOPE_TAGS]
    return {tag: number for number, tag in enumerate(ordered, start=1)}


def segment_frame(
    data: bytes, interchanges: Sequence[Interchange], tags: Sequence[str] = ()
) -> pl.DataFrame:
    """One row per segment of the file, in file order.

    Columns: `ic` (interchange number, Int32), `code` (UInt8: the segment id's
    number in `tag_codes(tags)`, 0 for any other id) and `seg` (the segment's text,
    without terminator and line breaks). Interchanges that share a segment
    terminator are read together by Polars' CSV reader, one segment per "line",
    which is many times faster than any split done in Python. Segment ids are told
    apart by their first three characters (a two-letter id plus its separator), so
    no column of segment ids is ever built.
    """
    codes = tag_codes(tags)
    frames: list[pl.DataFrame] = []
    by_terminator: dict[str, list[Interchange]] = {}
    for interchange in interchanges:
        by_terminator.setdefault(interchange.delimiters.segment, []).append(interchange)
    for terminator, members in by_terminator.items():
        whole = len(members) == 1 and members[0].start == 0 and members[0].end == len(data)
        # The usual file is one interchange: read its bytes without a copy.
        chunk = data if whole else b"".join(data[i.start : i.end] for i in members)
        frame = _read_segments(chunk, terminator, members, codes)
        if frame.filter(pl.col("code") == codes["ISA"]).height != len(members):
            # An ISA inside an interchange (its IEA is missing): read each interchange
            # on its own so that the envelope check can say where.
            frames.extend(
                _read_segments(data[i.start : i.end], terminator, [i], codes) for i in members
            )
        else:
            frames.append(frame)
    if len(frames) == 1:
        return frames[0]
    return pl.concat(frames).with_row_index("_order").sort("ic", "_order").drop("_order")


def _read_segments(
    chunk: bytes, terminator: str, members: Sequence[Interchange], codes: dict[str, int]
) -> pl.DataFrame:
    """The chunk's segments: `ic`, `code` and `seg`."""
    # Line breaks around segments are not part of them. X12 data has no line breaks
    # of its own, so (unless a line break is the terminator) they all go, in one
    # pass over the bytes instead of one strip per segment.
    for line_break in (b"\r", b"\n"):
        if line_break != terminator.encode("ascii") and line_break in chunk:
            chunk = chunk.replace(line_break, b"")
    frame = pl.read_csv(
        io.BytesIO(chunk),
        has_header=False,
        separator=_unused_byte(chunk),
        eol_char=terminator,
        quote_char=None,
        schema={"seg": pl.String},
        empty_string_is_null=False,
        raise_if_empty=False,
        truncate_ragged_lines=True,
        # Non-UTF-8 bytes (a Latin-1 name, say) become U+FFFD: nothing mapped from an
        # 837 relies on them, and the reader must not fail on a stray byte.
        encoding="utf8-lossy",
    )
    # An empty segment (two terminators in a row) is no segment: SE01 does not count it.
    if (terminator * 2).encode("ascii") in chunk or chunk.startswith(terminator.encode("ascii")):
        frame = frame.filter(pl.col("seg") != "")
    keys: dict[str, int] = {}
    for separator in {i.delimiters.element for i in members}:
        for tag, number in codes.items():
            keys[tag if len(tag) == 3 else tag + separator] = number
            keys[tag] = number  # a segment that is its id alone
    code = pl.col("seg").str.head(3).replace_strict(keys, default=0, return_dtype=pl.UInt8)
    frame = frame.select(code.alias("code"), "seg")
    if len(members) == 1:
        return frame.select(pl.lit(members[0].number, dtype=pl.Int32).alias("ic"), "code", "seg")
    numbers = pl.Series([i.number for i in members], dtype=pl.Int32)
    starts = (pl.col("code") == codes["ISA"]).cum_sum().clip(1, len(members)) - 1
    return frame.select(pl.lit(numbers).gather(starts).alias("ic"), "code", "seg")


def element_separator(interchanges: Sequence[Interchange]) -> str | pl.Expr:
    """The element separator to split segments with: a literal when every interchange
    uses the same one, else a per-row expression (each segment's interchange's)."""
    separators = {i.delimiters.element for i in interchanges}
    if len(separators) == 1:
        return separators.pop()
    table = pl.Series([i.delimiters.element for i in interchanges], dtype=pl.String)
    return pl.lit(table).gather(pl.col("ic") - 1)


def elements(frame: pl.DataFrame, separator: str | pl.Expr, indices: Sequence[int]) -> pl.DataFrame:
    """Add `e<i>` columns to a frame of segments: element i (1-based, as in NM109),
    null when absent or empty. The segment is split once (Polars does not share a
    split between the expressions that read its parts)."""
    if not indices:
        return frame
    names = [f"e{i}" for i in indices]
    if isinstance(separator, str):
        # Struct fields are the split's own columns: reading one twice costs nothing.
        split = pl.col("seg").str.split_exact(separator, max(indices))
        fields = [pl.col("_split").struct.field(f"field_{i}") for i in indices]
        return (
            frame.with_columns(split.alias("_split"))
            .with_columns(present(f).alias(n) for f, n in zip(fields, names, strict=True))
            .drop("_split")
        )
    split = pl.col("seg").str.split(separator)
    parts = [pl.col("_split").list.get(i, null_on_oob=True) for i in indices]
    return (
        frame.with_columns(split.alias("_split"))
        .with_columns(part.alias(name) for part, name in zip(parts, names, strict=True))
        .drop("_split")
        .with_columns(present(pl.col(name)).alias(name) for name in names)
    )


def present(value: pl.Expr) -> pl.Expr:
    """An X12 value, with an empty string read as absent (`value` is evaluated twice:
    give it a column, not a costly expression)."""
    return pl.when(value != "").then(value)


# --- envelope checks -----------------------------------------------------------------


def check_envelopes(
    segments: pl.DataFrame,
    interchanges: Sequence[Interchange],
    versions: Sequence[str],
    transaction: str,
) -> None:
    """Raise X12Error for the first envelope problem in file order.

    Checked: ISA/IEA, GS/GE and ST/SE pair up in order; no other segment stands
    outside ST..SE; IEA01 = number of GS, IEA02 = ISA13, GE01 = number of ST,
    GE02 = GS06, SE01 = segments from ST to SE inclusive, SE02 = ST02; every GS08 is
    one of `versions`, every ST01 is `transaction` and ST03 (when given) is one of
    `versions`. `segments` is a `segment_frame`.
    """
    codes = tag_codes(())
    names = pl.Series(list(codes), dtype=pl.String)
    is_envelope = pl.col("code").is_in(list(codes.values()))
    indexed = segments.with_row_index("pos")
    inside = pl.when(is_envelope).then(pl.col("code")).forward_fill()
    stray = indexed.filter(~is_envelope & (inside != codes["ST"])).head(1)
    envelope = elements(
        indexed.filter(is_envelope).with_columns(
            pl.lit(names).gather(pl.col("code").cast(pl.Int64) - 1).alias("tag")
        ),
        element_separator(interchanges),
        (1, 2, 3, 6, 8),
    )
    starts = envelope.filter(pl.col("tag") == "ISA").select("ic", pl.col("pos").alias("isa_pos"))
    envelope = envelope.join(starts, on="ic", how="left", maintain_order="left")
    isa13 = pl.Series([i.control_number for i in interchanges], dtype=pl.String)
    problems = _envelope_problems(envelope.with_columns(_seq()), isa13, versions, transaction)
    stray_tag = (
        pl.col("seg")
        .str.slice(0, 3)
        .str.strip_chars_end("".join({i.delimiters.element for i in interchanges}))
    )
    outside = stray.join(starts, on="ic", how="left").select(
        "ic",
        _seq(),
        pl.format("segment {} stands outside a transaction set (ST..SE)", stray_tag).alias(
            "reason"
        ),
    )
    found = pl.concat([problems.select("ic", "seq", "reason"), outside]).sort("ic", "seq").head(1)
    if found.height:
        ic, seq, reason = found.row(0)
        raise X12Error(f"interchange {ic}, segment {seq}: {reason}")


def _seq() -> pl.Expr:
    """The segment's number within its interchange (the ISA is 1)."""
    return (pl.col("pos").cast(pl.Int64) - pl.col("isa_pos").cast(pl.Int64) + 1).alias("seq")


def _envelope_problems(
    envelope: pl.DataFrame, isa13: pl.Series, versions: Sequence[str], transaction: str
) -> pl.DataFrame:
    """Every envelope segment that breaks a rule, with a reason (no member data)."""
    tag, e1, e2, e3 = pl.col("tag"), pl.col("e1"), pl.col("e2"), pl.col("e3")
    previous = tag.shift(1)
    allowed = pl.lit(False)
    for name, before in _MAY_FOLLOW.items():
        ok = pl.lit(False)
        for prior in before:
            ok = ok | (previous.is_null() if prior is None else previous == prior)
        allowed = allowed | ((tag == name) & ok)
    # Counts: segments of ST..SE, ST in GS..GE, GS in ISA..IEA.
    is_st, is_gs = (tag == "ST").cast(pl.Int64), (tag == "GS").cast(pl.Int64)
    st_total, gs_total = is_st.cum_sum(), is_gs.cum_sum()
    at_gs = pl.when(tag == "GS").then(st_total).forward_fill()
    at_isa = pl.when(tag == "ISA").then(gs_total).forward_fill()
    opener = pl.struct(
        previous.alias("tag"), pl.col("seq").shift(1).alias("seq"), e2.shift(1).alias("e2")
    )
    gs06 = pl.when(tag == "GS").then(pl.col("e6")).forward_fill()
    isa_control = pl.lit(isa13).gather(pl.col("ic") - 1)
    frame = envelope.with_columns(
        allowed.alias("allowed"),
        opener.alias("opener"),
        (st_total - at_gs).alias("st_in_group"),
        (gs_total - at_isa).alias("gs_in_interchange"),
        gs06.alias("gs06"),
        isa_control.alias("isa13"),
    )
    count = e1.cast(pl.Int64, strict=False)
    st_seq = pl.col("opener").struct.field("seq")
    st02 = pl.col("opener").struct.field("e2")
    reason = (
        pl.when(~pl.col("allowed"))
        .then(_order_reason(tag, previous))
        .when((tag == "GS") & ~pl.col("e8").is_in(list(versions)).fill_null(False))
        .then(pl.format("GS08 version {} is not {}", _shown(pl.col("e8")), pl.lit(_or(versions))))
        .when((tag == "ST") & (e1 != transaction).fill_null(True))
        .then(pl.format("ST01 {} is not {}", _shown(e1), pl.lit(transaction)))
        .when((tag == "ST") & e3.is_not_null() & ~e3.is_in(list(versions)).fill_null(False))
        .then(pl.format("ST03 version {} is not {}", _shown(e3), pl.lit(_or(versions))))
        .when((tag == "SE") & (count != pl.col("seq") - st_seq + 1).fill_null(True))
        .then(
            pl.format(
                "SE01 {} does not count the {} segments of the transaction set",
                _shown(e1),
                (pl.col("seq") - st_seq + 1).cast(pl.String),
            )
        )
        .when((tag == "SE") & (e2 != st02).fill_null(True))
        .then(pl.lit("SE02 does not match ST02"))
        .when((tag == "GE") & (count != pl.col("st_in_group")).fill_null(True))
        .then(
            pl.format(
                "GE01 {} does not count the {} transaction sets of the group",
                _shown(e1),
                pl.col("st_in_group").cast(pl.String),
            )
        )
        .when((tag == "GE") & ~_same_number(e2, pl.col("gs06")))
        .then(pl.lit("GE02 does not match GS06"))
        .when((tag == "IEA") & (count != pl.col("gs_in_interchange")).fill_null(True))
        .then(
            pl.format(
                "IEA01 {} does not count the {} functional groups of the interchange",
                _shown(e1),
                pl.col("gs_in_interchange").cast(pl.String),
            )
        )
        .when((tag == "IEA") & ~_same_number(e2, pl.col("isa13")))
        .then(pl.lit("IEA02 does not match ISA13"))
    )
    return frame.with_columns(reason.alias("reason")).filter(pl.col("reason").is_not_null())


def _order_reason(tag: pl.Expr, previous: pl.Expr) -> pl.Expr:
    return (
        pl.when(previous.is_null())
        .then(pl.format("{} where the interchange should start with ISA", tag))
        .otherwise(pl.format("{} after {} breaks the ISA/GS/ST/SE/GE/IEA envelope", tag, previous))
    )


def _same_number(left: pl.Expr, right: pl.Expr) -> pl.Expr:
    """Control numbers agree: the same text, or (numeric ones) the same number."""
    as_number = left.cast(pl.Int64, strict=False) == right.cast(pl.Int64, strict=False)
    return ((left == right) | as_number).fill_null(False)


def _shown(value: pl.Expr) -> pl.Expr:
    """An envelope value for a reason: shown only when it looks like a code or a count
    (so that a damaged file can never put member data into a reason)."""
    code = value.str.contains(r"^[0-9A-Z]{1,12}$").fill_null(False)
    return (
        pl.when(code)
        .then(pl.concat_str(pl.lit("'"), value, pl.lit("'")))
        .when(value.is_null())
        .then(pl.lit("(missing)"))
        .otherwise(pl.lit("(not a code)"))
    )


def _or(options: Sequence[str]) -> str:
    return " or ".join(options)
