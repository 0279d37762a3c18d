"""ASC X12 837 professional claims in: one case row per service line (spec §10).

`read_837(data)` returns the text frame the rest of the pipeline reads from any
batch: the §1 columns as String (null where the 837 has no value: §1/§3 then
reject the row naming the column), `row_number` and `raw`.

How it works without a Python loop per segment (see docs/x12.md):

1. `segments.find_interchanges` cuts the file into interchanges and learns each
   one's delimiters from its ISA; `segments.segment_frame` reads every segment
   as one row (Polars' CSV reader, the segment terminator as line end).
2. `segments.check_envelopes` checks pairing, counts, control numbers and the
   version as column expressions; any problem raises `X12Error`.
3. Loop context is four forward fills: for every segment, the position of the
   last HL, CLM or LX before it, unless a segment that closes that loop came after
   it. That puts each NM1, REF, DTP and HI in its loop (2010AA, 2010BA, 2300/2310,
   2400) and each SV1 in its line, claim, hierarchical level and transaction set.
4. Each mapped value is taken from its own small frame (the NM1*IL of 2010BA, the
   REF*G1 of 2300, ...) and looked up for the SV1 rows by position (a binary
   search: positions are sorted), two threads working side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import polars as pl

from claimsflow.vocabulary import RAW, ROW_NUMBER
from claimsflow.x12.segments import (
    Interchange,
    X12Error,
    check_envelopes,
    element_separator,
    elements,
    find_interchanges,
    present,
    segment_frame,
    tag_codes,
)
from schemas.case_batch import CASE_COLUMNS  # the §1 columns, in the returned frame's order

__all__ = ["CASE_COLUMNS", "VERSIONS", "X12Error", "read_837", "service_lines"]

#: The implementation guides an 837 batch may follow (GS08, ST03).
VERSIONS = ("005010X222A1", "005010X222A2")
#: HI qualifiers that carry diagnoses (ICD-10: ABK principal, ABF other; ICD-9: BK, BF).
DIAGNOSIS_QUALIFIERS = ("ABK", "ABF", "BK", "BF")
ICD10_QUALIFIERS = ("ABK", "ABF")
#: Frequency codes of a correction (§9): only these read REF*F8.
CORRECTION_FREQUENCIES = ("7", "8")
#: The segments the mapping or the loop context needs (with ST and SE); every other
#: one is dropped before the context is computed.
_TAGS = ("HL", "CLM", "LX", "SBR", "NM1", "REF", "DTP", "HI", "SV1", "BHT")
_CODE = tag_codes(_TAGS)
#: Threads that work out the lines, claims and diagnoses side by side.
_THREADS = 2
#: Below this many rows, one thread encodes `raw`.
_PARALLEL_ROWS = 100_000
#: Diagnosis numbers at or above this point nowhere (they only make join keys unique).
_POINTER_LIMIT = 1 << 20


def read_837(data: bytes) -> pl.DataFrame:
    """The service lines of an 837P file as case rows (spec §10).

    Raises X12Error when the file is not an X12 interchange, its envelopes do
    not pair or disagree, or a transaction set is not an 837 005010X222A1/A2.
    """
    interchanges = find_interchanges(data)
    segments = segment_frame(data, interchanges, _TAGS)
    check_envelopes(segments, interchanges, VERSIONS, "837")
    return service_lines(segments, interchanges)


def service_lines(segments: pl.DataFrame, interchanges: Sequence[Interchange]) -> pl.DataFrame:
    """Map the SV1 segments of checked 837 segments (a `segment_frame` read with this
    module's tags) to case rows.

    The lines, the claims, the diagnoses and the line-level values are worked out
    from separate subsets of the segments; two threads work them out side by side
    (Polars runs most string work on one core per column, and the machine has two).
    """
    sep = element_separator(interchanges)
    part = _Parts(_loop_context(segments), sep)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        lines_raw = pool.submit(
            lambda: elements(
                part("SV1", line_of=_LINE, claim_of=_CLAIM_OF, st_of=_ST), sep, (1, 2, 4, 7)
            )
        )
        claims_raw = pool.submit(lambda: elements(part("CLM", hl_of=_HL_OF), sep, (1, 5)))
        hi_raw = pool.submit(lambda: _hi_values(part("HI", claim_head=_CLAIM_HEAD), sep))
        line_values = pool.submit(_line_values, part)
        received = pool.submit(_received_dates, part)
        claim_values = pool.submit(lambda: _claim_values(claims_raw.result(), part))
        component = _component_separators(
            lines_raw.result(), claims_raw.result(), hi_raw.result(), interchanges
        )
        frequencies = pool.submit(
            lambda: _with_components(claims_raw.result(), "e5", component, claim_frequency=2)
        )
        diagnoses = pool.submit(
            lambda: _diagnoses(
                _with_components(hi_raw.result(), "value", component, qualifier=0, code=1)
            )
        )
        lines = _with_components(lines_raw.result(), "e1", component, procedure_code=1)
        lines = _with_components(lines, "e7", component, pointer=0)
        claims = _lookup(
            claim_values.result(),
            "pos",
            frequencies.result().select("pos", "claim_frequency"),
            "pos",
        )
        rows = _lookup(lines, "line_of", line_values.result(), "line_of")
        rows = _lookup(rows, "claim_of", claims, "pos")
        rows = _lookup(rows, "st_of", received.result(), "st_of")
        pointed = _diagnosis_key(pl.col("claim_of"), _pointer_number(pl.col("pointer")))
        rows = _lookup(
            rows.with_columns(pointed.alias("diagnosis_key")),
            "diagnosis_key",
            diagnoses.result(),
            "diagnosis_key",
        )
    return _case_rows(rows)


# --- loop context --------------------------------------------------------------------

# Each segment's loops come from four forward fills over the file: the last
# "marker" segment seen, encoded as pos * 32 + code so that one Int64 column says
# both where and what it was. A marker set lists the segments that open or close
# the loops in question; the loop a segment stands in is the last marker if that
# marker is the loop's opener (HL, CLM, LX, ST), else none.
_MARKS = {
    "st_mark": ("ST", "SE"),
    "hl_mark": ("ST", "SE", "HL"),
    "claim_mark": ("ST", "SE", "HL", "CLM"),
    "line_mark": ("ST", "SE", "HL", "CLM", "SBR", "LX"),
}


class _Loop(NamedTuple):
    """A loop as seen from a segment: the position of the `opener` segment its
    marker column points at, else null."""

    mark: str
    opener: str

    def expr(self) -> pl.Expr:
        value = pl.col(self.mark)
        return pl.when(value % 32 == _CODE[self.opener]).then(value // 32)


_ST = _Loop("st_mark", "ST")
#: The HL whose loop the segment is in (2000A/B/C and everything below it).
_HL_OF = _Loop("hl_mark", "HL")
#: The HL whose own segments the segment is among (2010AA, 2010BA: before any claim).
_HL_HEAD = _Loop("claim_mark", "HL")
#: The claim (2300 and everything below it).
_CLAIM_OF = _Loop("claim_mark", "CLM")
#: The claim's own segments and 2310 loops: before 2320 (SBR: the other subscribers,
#: whose 2330 loops carry their own NM1*IL, NM1*82, REF*G1, REF*F8) and before 2400.
_CLAIM_HEAD = _Loop("line_mark", "CLM")
#: The service line (2400 and its 2410-2440 loops).
_LINE = _Loop("line_mark", "LX")


def _loop_context(segments: pl.DataFrame) -> pl.DataFrame:
    """The segments the mapping reads (and ST, SE), with `pos` (their order in the
    file) and the four marker columns."""
    wanted = [_CODE[tag] for tag in ("ST", "SE", *_TAGS)]
    segments = segments.filter(pl.col("code").is_in(wanted))
    code = pl.col("code")
    pos = pl.int_range(pl.len(), dtype=pl.Int64)
    marks = [
        pl.when(code.is_in([_CODE[tag] for tag in tags]))
        .then(pos * 32 + code.cast(pl.Int64))
        .forward_fill()
        .alias(name)
        for name, tags in _MARKS.items()
    ]
    return segments.with_columns(pos.alias("pos"), *marks)


class _Parts:
    """The segments of one id (and, for NM1, REF and DTP, of one qualifier in
    element 1), with the loop columns asked for. Each id's rows are taken out of
    the whole file once."""

    def __init__(self, context: pl.DataFrame, sep: str | pl.Expr) -> None:
        # All at once (one pass), so that threads only ever read them. The marker
        # columns stay whole: each subset takes only the ones its loops need.
        self._marks = {name: context.get_column(name) for name in _MARKS}
        segments = context.select("code", "ic", "pos", "seg")
        by_code = segments.partition_by("code", as_dict=True, include_key=False)
        empty = segments.clear().drop("code")
        self._by_tag = {tag: by_code.get((_CODE[tag],), empty) for tag in _TAGS}
        self.sep = sep

    def __call__(
        self,
        tag: str,
        qualifier: str | None = None,
        *,
        within: tuple[str, _Loop] | None = None,
        **loops: _Loop,
    ) -> pl.DataFrame:
        """`within` = (name, loop): only the segments inside that loop, which is added
        as column `name`."""
        rows = self._by_tag[tag]
        if qualifier is not None:
            sep = self.sep
            prefix: str | pl.Expr = (
                f"{tag}{sep}{qualifier}{sep}"
                if isinstance(sep, str)
                else pl.concat_str(pl.lit(tag), sep, pl.lit(qualifier), sep)
            )
            rows = rows.filter(pl.col("seg").str.starts_with(prefix))
        needed = {loop.mark for loop in loops.values()}
        if within is not None:
            needed.add(within[1].mark)
        rows = rows.with_columns(
            pl.lit(self._marks[mark]).gather(pl.col("pos")).alias(mark) for mark in needed
        )
        if within is not None:
            name, loop = within
            rows = rows.with_columns(loop.expr().alias(name)).filter(pl.col(name).is_not_null())
        return rows.select(
            "ic",
            "pos",
            "seg",
            *([] if within is None else [within[0]]),
            *(loop.expr().alias(name) for name, loop in loops.items()),
        )


def _first_per(frame: pl.DataFrame, key: str, **values: pl.Expr) -> pl.DataFrame:
    """The first segment (file order) of each `key`, with `values` computed from it.

    Keys are positions of earlier segments, so they never decrease in file order:
    a key's first segment is the one whose key differs from the segment before.
    """
    column = pl.col(key)
    first = column.is_not_null() & (column != column.shift(1)).fill_null(True)
    return frame.filter(first).select(
        column, *(value.alias(name) for name, value in values.items())
    )


def _hi_values(his: pl.DataFrame, sep: str | pl.Expr) -> pl.DataFrame:
    """The composite elements of the 2300 HI segments, one row each, in file order."""
    return (
        his.filter(pl.col("claim_head").is_not_null())
        .select(
            "ic",
            pl.col("claim_head").alias("claim"),
            pl.col("seg").str.split(sep).list.slice(1).alias("value"),
        )
        .explode("value")
        .filter(pl.col("value") != "")
    )


def _component_separators(
    lines: pl.DataFrame,
    claims: pl.DataFrame,
    hi: pl.DataFrame,
    interchanges: Sequence[Interchange],
) -> pl.Series:
    """The component separator of each interchange (index = interchange number - 1).

    The declared ISA16, unless no composite of the interchange that always has
    several components (SV101, CLM05, HI) uses it and every one of them uses one
    same other character in its place (`HC>99213`, `11>B>1`, `BK>4779` under ISA16
    `:`): then that character, as the file's author evidently meant (docs/x12.md).
    """
    declared = pl.Series([i.delimiters.component for i in interchanges], dtype=pl.String)
    composites = pl.concat(
        [
            lines.select("ic", pl.col("e1").alias("value")),
            claims.select("ic", pl.col("e5").alias("value")),
            hi.select("ic", "value"),
        ]
    ).filter(pl.col("value").is_not_null())
    separator = (
        declared[0] if declared.n_unique() == 1 else pl.lit(declared).gather(pl.col("ic") - 1)
    )
    uses = composites.group_by("ic").agg(
        pl.col("value").str.contains(separator, literal=True).any().alias("uses")
    )
    unused = uses.filter(~pl.col("uses")).get_column("ic")
    if unused.is_empty():
        return declared
    stats = (
        composites.filter(pl.col("ic").is_in(unused.implode()))
        # The first character that is not a letter or digit: where a separator goes.
        .with_columns(pl.col("value").str.extract(r"^[A-Za-z0-9]*([^A-Za-z0-9])", 1).alias("other"))
        .group_by("ic")
        .agg(
            pl.col("other").n_unique().alias("kinds"),
            pl.col("other").is_not_null().all().alias("everywhere"),
            pl.col("other").first(),
        )
    )
    effective = declared.to_list()
    for ic, kinds, everywhere, other in stats.iter_rows():
        delimiters = interchanges[ic - 1].delimiters
        taken = {delimiters.element, delimiters.segment, delimiters.repetition, " "}
        if everywhere and kinds == 1 and other not in taken:
            effective[ic - 1] = other
    return pl.Series(effective, dtype=pl.String)


def _with_components(
    frame: pl.DataFrame, column: str, separators: pl.Series, **wanted: int
) -> pl.DataFrame:
    """Add components of a composite element (name = 0-based index), split with its
    interchange's component separator; null when absent or empty."""
    if separators.n_unique() == 1:
        split = pl.col(column).str.split_exact(separators[0], max(wanted.values()))
        fields = {name: pl.col("_split").struct.field(f"field_{i}") for name, i in wanted.items()}
        return (
            frame.with_columns(split.alias("_split"))
            .with_columns(present(field).alias(name) for name, field in fields.items())
            .drop("_split")
        )
    else:
        split = pl.col(column).str.split(pl.lit(separators).gather(pl.col("ic") - 1))
        parts = {name: pl.col("_split").list.get(i, null_on_oob=True) for name, i in wanted.items()}
    return (
        frame.with_columns(split.alias("_split"))
        .with_columns(part.alias(name) for name, part in parts.items())
        .drop("_split")
        .with_columns(present(pl.col(name)).alias(name) for name in wanted)
    )


def _lookup(left: pl.DataFrame, key: str, right: pl.DataFrame, right_key: str) -> pl.DataFrame:
    """Left join on positions: `right[right_key]` is sorted and unique (a position in
    the file, or a key built from one), so a binary search finds each left row's
    match; the left rows keep their order. Unmatched rows get nulls."""
    values = [c for c in right.columns if c != right_key]
    if right.is_empty():
        return left.with_columns(pl.lit(None, dtype=right.schema[c]).alias(c) for c in values)
    keys = left.get_column(key).cast(pl.Int64)
    right_keys = right.get_column(right_key).cast(pl.Int64)
    at = right_keys.search_sorted(keys.fill_null(-1), side="left").clip(0, right.height - 1)
    found = (right_keys.gather(at) == keys).fill_null(False)
    matched = right.select(values).select(pl.all().gather(at))
    return left.with_columns(pl.when(found).then(matched.get_column(c)).alias(c) for c in values)


# --- the mapped values ---------------------------------------------------------------


def _claim_values(claims: pl.DataFrame, part: _Parts) -> pl.DataFrame:
    """One row per CLM: claim id, member, billing or rendering provider,
    prior auth, payer claim control number and claim-level service date."""
    sep = part.sep
    head = ("claim_head", _CLAIM_HEAD)
    rendering = _first_per(
        elements(part("NM1", "82", within=head), sep, (9,)), "claim_head", rendering=pl.col("e9")
    )
    auth = _first_per(
        elements(part("REF", "G1", within=head), sep, (2,)), "claim_head", claim_auth=pl.col("e2")
    )
    original = _first_per(
        elements(part("REF", "F8", within=head), sep, (2,)), "claim_head", payer_claim=pl.col("e2")
    )
    date = _first_per(
        _with_dtp_date(elements(part("DTP", "472", within=head), sep, (2, 3)), "d"),
        "claim_head",
        claim_date=pl.col("d"),
    )
    level = ("hl_head", _HL_HEAD)
    member = _first_per(
        elements(part("NM1", "IL", within=level), sep, (9,)), "hl_head", member_id=pl.col("e9")
    )
    billing = _first_per(
        elements(part("NM1", "85", within=level), sep, (9,)), "hl_head", billing=pl.col("e9")
    )
    hl = elements(part("HL", st_of=_ST), sep, (1, 2, 3))
    rows = claims.select("pos", pl.col("e1").alias("claim_id"))
    rows = _lookup(rows, "pos", _subscriber_levels(claims, hl), "pos")
    rows = _lookup(rows, "subscriber", member, "hl_head")
    rows = _lookup(rows, "billing_level", billing, "hl_head")
    for values in (rendering, auth, original, date):
        rows = _lookup(rows, "pos", values, "claim_head")
    return rows.select(
        "pos",
        "claim_id",
        "member_id",
        pl.coalesce("rendering", "billing").alias("provider_id"),
        "claim_auth",
        "payer_claim",
        "claim_date",
    )


def _subscriber_levels(claims: pl.DataFrame, hl: pl.DataFrame) -> pl.DataFrame:
    """For each CLM (by `pos`): the subscriber HL (22) it belongs to, directly or through
    its patient HL (23) whose HL02 names the subscriber; and that subscriber's parent,
    the billing provider HL (20). Positions of the HL segments, null when not found."""
    levels = _hl_parents(hl)
    own = _lookup(
        claims.select("pos", "hl_of"),
        "hl_of",
        levels.select(pl.col("pos").alias("hl_of"), "level", "parent_pos", "parent_level"),
        "hl_of",
    )
    subscriber = (
        pl.when(pl.col("level") == "22")
        .then(pl.col("hl_of"))
        .when((pl.col("level") == "23") & (pl.col("parent_level") == "22"))
        .then(pl.col("parent_pos"))
    )
    billing = pl.when(pl.col("parent_level") == "20").then(pl.col("parent_pos"))
    return _lookup(
        own.select("pos", subscriber.alias("subscriber")),
        "subscriber",
        levels.select(pl.col("pos").alias("subscriber"), billing.alias("billing_level")),
        "subscriber",
    ).select("pos", "subscriber", "billing_level")


def _hl_parents(hl: pl.DataFrame) -> pl.DataFrame:
    """Each HL with its level and the position and level of the HL its HL02 names.

    In a well-formed file the parent of a subscriber (22) is the last billing
    provider level (20) before it, and the parent of a patient (23) the last
    subscriber: those are checked by comparing HL02 with that HL's HL01 (no join of
    text keys). An HL whose HL02 names another HL is looked up by joining on
    (transaction set, HL01), which only such files pay for.
    """
    hls = hl.select(
        "pos",
        "st_of",
        pl.col("e1").alias("id"),
        pl.col("e2").alias("parent"),
        pl.col("e3").alias("level"),
    )
    candidates = []
    for level in ("20", "22"):
        at = pl.col("level") == level
        candidates += [
            pl.when(at).then(pl.col(name)).forward_fill().alias(f"{name}_{level}")
            for name in ("pos", "st_of", "id")
        ]
    hls = hls.with_columns(candidates)
    expected = pl.when(pl.col("level") == "22").then(pl.lit("20")).when(pl.col("level") == "23")
    guess = {
        name: pl.when(pl.col("level") == "22")
        .then(pl.col(f"{name}_20"))
        .otherwise(pl.col(f"{name}_22"))
        for name in ("pos", "st_of", "id")
    }
    hls = hls.with_columns(
        expected.then(pl.lit("22")).alias("expected_level"),
        *(expr.alias(f"guess_{name}") for name, expr in guess.items()),
    )
    named = (pl.col("guess_st_of") == pl.col("st_of")) & (pl.col("guess_id") == pl.col("parent"))
    hls = hls.with_columns(
        pl.when(named.fill_null(False)).then(pl.col("guess_pos")).alias("parent_pos"),
        pl.when(named.fill_null(False)).then(pl.col("expected_level")).alias("parent_level"),
    )
    others = hls.filter(pl.col("parent_pos").is_null() & pl.col("parent").is_not_null())
    if not others.is_empty():
        # HL01 is unique within a transaction set; a file that repeats one gets its first.
        by_id = hls.filter(pl.col("id").is_not_null()).unique(
            subset=["st_of", "id"], keep="first", maintain_order=True
        )
        found = others.select("pos", "st_of", "parent").join(
            by_id.select(
                "st_of",
                pl.col("id").alias("parent"),
                pl.col("pos").alias("found_pos"),
                pl.col("level").alias("found_level"),
            ),
            on=["st_of", "parent"],
            how="inner",
        )
        hls = hls.join(found.select("pos", "found_pos", "found_level"), on="pos", how="left")
        hls = hls.with_columns(
            pl.coalesce("parent_pos", "found_pos").alias("parent_pos"),
            pl.coalesce("parent_level", "found_level").alias("parent_level"),
        )
    return hls.select("pos", "level", "parent_pos", "parent_level")


def _line_values(part: _Parts) -> pl.DataFrame:
    """One row per LX: its number, and the line's own REF*G1 and DTP*472."""
    sep = part.sep
    lx = elements(part("LX"), sep, (1,))
    line = ("line_of", _LINE)
    auth = _first_per(
        elements(part("REF", "G1", within=line), sep, (2,)), "line_of", line_auth=pl.col("e2")
    )
    date = _first_per(
        _with_dtp_date(elements(part("DTP", "472", within=line), sep, (2, 3)), "d"),
        "line_of",
        line_date=pl.col("d"),
    )
    rows = lx.select(pl.col("pos").alias("line_of"), pl.col("e1").alias("line"))
    return _lookup(_lookup(rows, "line_of", auth, "line_of"), "line_of", date, "line_of")


def _received_dates(part: _Parts) -> pl.DataFrame:
    """BHT04 of each transaction set, as YYYY-MM-DD."""
    bht = elements(part("BHT", st_of=_ST), part.sep, (4,))
    return _first_per(bht, "st_of", received_date=_iso_date("e4"))


def _diagnoses(hi: pl.DataFrame) -> pl.DataFrame:
    """The claim's diagnosis codes, numbered 1, 2, ... across its HI segments."""
    codes = hi.filter(pl.col("qualifier").is_in(DIAGNOSIS_QUALIFIERS))
    code = pl.col("code")
    dotted = (
        pl.when(
            pl.col("qualifier").is_in(ICD10_QUALIFIERS)
            & (code.str.len_chars() > 3)
            # A code some tool already wrote with its dot keeps it (no `J10..1`).
            & (code.str.slice(3, 1) != ".")
        )
        .then(pl.concat_str(code.str.slice(0, 3), pl.lit("."), code.str.slice(3)))
        .otherwise(code)
    )
    # Rows are in file order, so a claim's codes are a run: number = place in the run.
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = (pl.col("claim") != pl.col("claim").shift(1)).fill_null(True)
    number = index - pl.when(starts).then(index).forward_fill() + 1
    return codes.select(
        _diagnosis_key(pl.col("claim"), number).alias("diagnosis_key"),
        dotted.alias("diagnosis_code"),
    )


def _diagnosis_key(claim: pl.Expr, number: pl.Expr) -> pl.Expr:
    """One Int64 join key for (claim position, diagnosis number)."""
    return claim * _POINTER_LIMIT + number


def _pointer_number(pointer: pl.Expr) -> pl.Expr:
    """SV107-1 as the number of a diagnosis (digits only; anything else points nowhere)."""
    number = pointer.cast(pl.Int64, strict=False)
    digits = pointer.str.contains(r"^[0-9]{1,6}$")
    return pl.when(digits & (number > 0) & (number < _POINTER_LIMIT)).then(number)


def _iso_date(column: str) -> pl.Expr:
    """CCYYMMDD as YYYY-MM-DD; any other text as written (validation rejects it)."""
    value = pl.col(column)
    return (
        pl.when(value.str.contains(r"^[0-9]{8}$"))
        .then(
            pl.concat_str(
                value.str.slice(0, 4),
                pl.lit("-"),
                value.str.slice(4, 2),
                pl.lit("-"),
                value.str.slice(6, 2),
            )
        )
        .otherwise(value)
    )


def _with_dtp_date(dtp: pl.DataFrame, name: str) -> pl.DataFrame:
    """Add `name`: DTP03 of a D8 date, or the first date of an RD8 range, as YYYY-MM-DD."""
    first = (
        pl.when(pl.col("e2") == "RD8")
        .then(pl.col("e3").str.split_exact("-", 1).struct.field("field_0"))
        .otherwise(pl.col("e3"))
    )
    return (
        dtp.with_columns(first.alias("_date"))
        .with_columns(present(pl.col("_date")).alias("_date"))
        .with_columns(_iso_date("_date").alias(name))
    )


def _with_units(rows: pl.DataFrame) -> pl.DataFrame:
    """Add `units` from SV104: a whole number with or without zero decimals (`1`,
    `1.00`, `007`) is that integer; anything else is taken as written."""
    value = pl.col("e4")
    whole = value.str.contains(r"^[0-9]+(\.0*)?$")
    integer = value.str.split_exact(".", 1).struct.field("field_0").str.strip_chars_start("0")
    return rows.with_columns(pl.when(whole).then(integer).alias("_whole")).with_columns(
        pl.when(pl.col("_whole") == "")
        .then(pl.lit("0"))
        .otherwise(pl.coalesce("_whole", "e4"))
        .alias("units")
    )


def _case_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """The §1 columns, row_number and raw, in file order."""
    claim_id, line = pl.col("claim_id"), pl.col("line")
    corrects = pl.col("claim_frequency").is_in(CORRECTION_FREQUENCIES).fill_null(False)
    mapped = (
        # The joins kept the SV1 rows in file order.
        _with_units(rows).select(
            pl.concat_str(claim_id, pl.lit("-"), line).alias("case_id"),
            "member_id",
            "provider_id",
            pl.coalesce("line_date", "claim_date").alias("service_date"),
            "received_date",
            "procedure_code",
            "diagnosis_code",
            "units",
            pl.col("e2").alias("billed_amount"),
            pl.coalesce("line_auth", "claim_auth").alias("prior_auth_id"),
            "claim_frequency",
            pl.when(corrects)
            .then(pl.concat_str(pl.col("payer_claim"), pl.lit("-"), line))
            .alias("original_case_id"),
            claim_id,
            line,
        )
    )
    raw = _in_halves(
        mapped,
        lambda part: part.select(pl.struct(*CASE_COLUMNS, "claim_id", "line").struct.json_encode()),
    )
    return mapped.select(
        *(pl.col(name).cast(pl.String) for name in CASE_COLUMNS),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW_NUMBER),
    ).with_columns(raw.alias(RAW))


def _in_halves(frame: pl.DataFrame, work: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.Series:
    """`work` (one output column) over the two halves of `frame` on two threads: JSON
    encoding runs on one core per call."""
    if frame.height < _PARALLEL_ROWS:
        return work(frame).to_series()
    middle = frame.height // 2
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        halves = list(pool.map(work, (frame.slice(0, middle), frame.slice(middle))))
    return pl.concat([h.to_series() for h in halves])
