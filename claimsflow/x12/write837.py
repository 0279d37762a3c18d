"""Case rows out as an ASC X12 837 professional claim interchange (005010X222A1).

`write_837(cases, ...)` turns a text frame with the §1 columns into one ISA..IEA
interchange: sample data (`adjudicate generate --format 837`), benchmarks and
tests. It builds every segment with Polars string expressions (no Python per row),
so a million service lines take seconds.

Layout (docs/x12.md has the details):

- one transaction set (ST) per run of consecutive rows with the same
  received_date (BHT04 is the transaction set's creation date, read back as
  received_date);
- in it, a billing provider level (HL 20, NM1*85 = provider_id) per run of
  claims of one provider, a subscriber level (HL 22, NM1*IL = member_id, the
  subscriber is the patient) per run of claims of one member;
- a claim (CLM) per run of rows whose case ids read `CLAIM-1`, `CLAIM-2`, ...
  (same CLAIM, member, provider, received date, frequency and original claim, at
  most 50 lines and 12 diagnoses): CLM01 = CLAIM, LX01 = the line number, so that
  reading the file back gives the same case ids. Any other row is a claim of its
  own with CLM01 = case_id and LX01 = 1 (read back as `case_id-1`).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from claimsflow.x12.build import (
    DEFAULT_DELIMITERS,
    Envelope,
    SegmentBuilder,
    check_delimiters,
    check_text_columns,
    dollars,
)
from claimsflow.x12.segments import Delimiters

__all__ = ["DEFAULT_DELIMITERS", "write_837"]

VERSION = "005010X222A1"
#: The optional §1 columns, added as missing when the frame has none.
_OPTIONAL = ("prior_auth_id", "claim_frequency", "original_case_id")
_TEXT_COLUMNS = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
    *_OPTIONAL,
)
#: X12 limits of 005010X222A1: 2400 repeats 50 times, HI holds 12 diagnoses.
MAX_LINES = 50
MAX_DIAGNOSES = 12
#: Segments of each block, for SE01.
_HEADER_SEGMENTS = 5  # ST, BHT, NM1*41, PER, NM1*40
_BILLING_SEGMENTS = 5  # HL, NM1*85, N3, N4, REF*EI
_SUBSCRIBER_SEGMENTS = 7  # HL, SBR, NM1*IL, N3, N4, DMG, NM1*PR
_LINE_SEGMENTS = 3  # LX, SV1, DTP*472
_CASE_ID = r"^(.+)-([1-9][0-9]{0,5})$"


def write_837(
    cases: pl.DataFrame,
    *,
    sender_id: str = "CLAIMSFLOW",
    receiver_id: str = "PAYER",
    control_number: int = 1,
    created: dt.datetime = dt.datetime(2026, 1, 1, 0, 0),
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_break: str = "\n",
    usage: str = "P",
    payer_name: str = "PAYER",
    payer_id: str = "PAYER",
) -> str:
    """One 005010X222A1 interchange holding every row of `cases` as a service line.

    `cases` has the §1 columns as text (prior_auth_id, claim_frequency and
    original_case_id may be absent); empty text is written as absent. `line_break`
    follows every segment terminator ("" for none). Raises ValueError when a value
    contains a delimiter or a line break, or the delimiters are unusable.
    """
    check_delimiters(delimiters, line_break)
    text = _text_frame(cases)
    check_text_columns(text, _TEXT_COLUMNS, delimiters)
    seg = SegmentBuilder(delimiters, line_break)
    envelope = Envelope(seg, "HC", VERSION, sender_id, receiver_id, control_number, created, usage)
    opening = envelope.open()
    body, transaction_sets = _transaction_sets(
        text, seg, created, sender_id, receiver_id, payer_name, payer_id
    )
    return opening + body + envelope.close(transaction_sets)


def _text_frame(cases: pl.DataFrame) -> pl.DataFrame:
    """The §1 columns as text, empty text as null, optional ones added."""
    missing = [c for c in _TEXT_COLUMNS if c not in cases.columns and c not in _OPTIONAL]
    if missing:
        raise ValueError(f"cases lack column(s): {', '.join(missing)}")
    return cases.select(
        (
            pl.col(name).cast(pl.String)
            if name in cases.columns
            else pl.lit(None, dtype=pl.String).alias(name)
        )
        for name in _TEXT_COLUMNS
    ).with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in _TEXT_COLUMNS)


# --- the transaction sets, built as columns ------------------------------------------


def _transaction_sets(
    text: pl.DataFrame,
    seg: SegmentBuilder,
    created: dt.datetime,
    sender_id: str,
    receiver_id: str,
    payer_name: str,
    payer_id: str,
) -> tuple[str, int]:
    """Every ST..SE of the interchange as one string, and how many there are.

    Each block (transaction set header, billing level, subscriber level, claim,
    line, SE) is built only for the rows that open it, then the blocks are laid
    side by side per row and joined in row order.
    """
    if text.is_empty():
        return "", 0
    rows = _segment_counts(_hierarchy(_claim_layout(text, seg.delimiters)))
    st_control = pl.col("st").cast(pl.String).str.zfill(4)
    blocks: list[tuple[str | None, pl.Expr]] = [
        (
            "new_st",
            pl.concat_str(
                seg("ST", "837", st_control, VERSION),
                seg(
                    "BHT",
                    "0019",
                    "00",
                    st_control,
                    _x12_date(pl.col("received_date")),
                    created.strftime("%H%M"),
                    "CH",
                ),
                seg("NM1", "41", "2", "CLAIMSFLOW SUBMITTER", "", "", "", "", "46", sender_id),
                seg("PER", "IC", "CLAIMS DESK", "TE", "8005550100"),
                seg("NM1", "40", "2", "CLAIMS PAYER", "", "", "", "", "46", receiver_id),
            ),
        ),
        (
            "new_billing",
            pl.concat_str(
                seg("HL", pl.col("billing_hl").cast(pl.String), "", "20", "1"),
                seg(
                    "NM1",
                    "85",
                    "2",
                    "BILLING PROVIDER",
                    "",
                    "",
                    "",
                    "",
                    _qualified("XX", pl.col("provider_id")),
                    pl.col("provider_id"),
                ),
                seg("N3", "1 MAIN STREET"),
                seg("N4", "SPRINGFIELD", "IL", "627010001"),
                seg("REF", "EI", "123456789"),
            ),
        ),
        (
            "new_subscriber",
            pl.concat_str(
                seg(
                    "HL",
                    pl.col("subscriber_hl").cast(pl.String),
                    pl.col("billing_hl").cast(pl.String),
                    "22",
                    "0",
                ),
                seg("SBR", "P", "18", "", "", "", "", "", "", "CI"),
                seg(
                    "NM1",
                    "IL",
                    "1",
                    "SUBSCRIBER",
                    "PAT",
                    "",
                    "",
                    "",
                    _qualified("MI", pl.col("member_id")),
                    pl.col("member_id"),
                ),
                seg("N3", "1 ELM STREET"),
                seg("N4", "SPRINGFIELD", "IL", "627010002"),
                seg("DMG", "D8", "19800101", "U"),
                seg("NM1", "PR", "2", payer_name, "", "", "", "", "PI", payer_id),
            ),
        ),
        (
            "new_claim",
            pl.concat_str(
                seg(
                    "CLM",
                    pl.col("clm01"),
                    dollars(pl.col("claim_cents")),
                    "",
                    "",
                    seg.composite("11", "B", pl.col("frequency")),
                    "Y",
                    "A",
                    "Y",
                    "Y",
                ),
                pl.when(pl.col("payer_claim").is_not_null()).then(
                    seg("REF", "F8", pl.col("payer_claim"))
                ),
                pl.when(pl.col("hi").is_not_null()).then(
                    pl.concat_str(pl.lit("HI"), pl.col("hi"), pl.lit(seg.end))
                ),
                ignore_nulls=True,
            ),
        ),
        (
            None,
            pl.concat_str(
                seg("LX", pl.col("lx").cast(pl.String)),
                seg(
                    "SV1",
                    pl.when(pl.col("procedure_code").is_not_null())
                    .then(seg.composite("HC", pl.col("procedure_code")))
                    .otherwise(pl.lit("HC")),
                    pl.col("billed_amount"),
                    "UN",
                    pl.col("units"),
                    "",
                    "",
                    pl.col("pointer").cast(pl.String),
                ),
                seg("DTP", "472", "D8", _x12_date(pl.col("service_date"))),
                pl.when(pl.col("prior_auth_id").is_not_null()).then(
                    seg("REF", "G1", pl.col("prior_auth_id"))
                ),
                ignore_nulls=True,
            ),
        ),
        ("last_in_st", seg("SE", pl.col("se_count").cast(pl.String), st_control)),
    ]
    size = rows.height
    columns: list[pl.Series] = []
    for number, (opens, block) in enumerate(blocks):
        name = f"block{number}"
        if opens is None:
            columns.append(rows.select(block.alias(name)).to_series())
            continue
        opened = rows.filter(pl.col(opens)).select("row", block.alias(name))
        column = pl.Series(name, [None] * size, dtype=pl.String)
        columns.append(column.scatter(opened.get_column("row"), opened.get_column(name)))
    body = (
        pl.DataFrame(columns).select(pl.concat_str(pl.all(), ignore_nulls=True).str.join("")).item()
    )
    return str(body), rows.get_column("st").n_unique()


def _qualified(qualifier: str, value: pl.Expr) -> pl.Expr:
    """An ID code qualifier (NM108) only when its ID (NM109) is there."""
    return pl.when(value.is_not_null()).then(pl.lit(qualifier))


def _x12_date(iso: pl.Expr) -> pl.Expr:
    """YYYY-MM-DD as CCYYMMDD; other text as it is (so that it reads back the same)."""
    return (
        pl.when(iso.str.contains(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
        .then(iso.str.replace_all("-", "", literal=True))
        .otherwise(iso)
    )


def _cents(amount: pl.Expr) -> pl.Expr:
    """A decimal text (`125.5`, `125.50`, `125`) as integer cents; null if not one."""
    parts = amount.str.extract_groups(r"^([0-9]{1,12})(?:\.([0-9]{0,2}))?$")
    whole = parts.struct.field("1").cast(pl.Int64)
    fraction = parts.struct.field("2").fill_null("").str.pad_end(2, "0").cast(pl.Int64)
    return whole * 100 + fraction


def _changed(column: str) -> pl.Expr:
    """True where the value differs from the row before (null equals null), and on the
    first row."""
    value = pl.col(column)
    return value.ne_missing(value.shift(1)) | (pl.int_range(pl.len()) == 0)


def _claim_layout(text: pl.DataFrame, delimiters: Delimiters) -> pl.DataFrame:
    """Transaction sets, claims, line numbers and diagnosis pointers (see the module
    docstring). Claims are runs of rows, so everything per claim comes from forward
    fills over the rows that start one, not from window functions."""
    rows = _parsed(text)
    rows = _claim_starts(rows, pl.lit(False))
    rows = _diagnosis_numbers(rows)
    crowded = rows.filter(pl.col("diagnoses") > MAX_DIAGNOSES).get_column("claim")
    if not crowded.is_empty():
        # More distinct diagnoses than HI can hold: every line becomes a claim of its own.
        rows = _claim_starts(rows, pl.col("claim").is_in(crowded.implode()))
        rows = _diagnosis_numbers(rows)
    return _claim_fields(rows, delimiters)


def _parsed(text: pl.DataFrame) -> pl.DataFrame:
    """Case id and original case id split into claim part and line number."""
    frequency = pl.col("claim_frequency").fill_null("1")
    rows = text.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.col("case_id").str.extract_groups(_CASE_ID).alias("_case"),
        frequency.alias("frequency"),
        _cents(pl.col("billed_amount")).alias("cents"),
    ).with_columns(
        pl.col("_case").struct.field("1").alias("claim_part"),
        pl.col("_case").struct.field("2").cast(pl.Int64).alias("line_no"),
    )
    corrects = pl.col("frequency").is_in(["7", "8"]) & pl.col("original_case_id").is_not_null()
    rows = rows.with_columns(pl.when(corrects).then(pl.col("original_case_id")).alias("original"))
    rows = rows.with_columns(pl.col("original").str.extract_groups(_CASE_ID).alias("_original"))
    return (
        rows.with_columns(
            pl.col("_original").struct.field("1").alias("original_part"),
            pl.col("_original").struct.field("2").cast(pl.Int64).alias("original_no"),
            _changed("received_date").alias("new_st"),
        )
        .drop("_case", "_original")
        .with_columns(pl.col("new_st").cum_sum().cast(pl.Int64).alias("st"))
    )


def _claim_starts(rows: pl.DataFrame, alone: pl.Expr) -> pl.DataFrame:
    """`new_claim`, `claim` (1, 2, ...) and `lx`: a row continues the claim of the row
    before when it is the next line (CLAIM-n after CLAIM-(n-1)) of the same claim,
    member, provider, received date, frequency and original claim; rows `alone`
    start claims of their own."""
    same = ~pl.any_horizontal(
        _changed(c)
        for c in ("claim_part", "member_id", "provider_id", "frequency", "original_part")
    )
    numbered_original = pl.when(pl.col("original").is_not_null()).then(pl.col("line_no"))
    continues = (
        ~pl.col("new_st")
        & same
        & pl.col("claim_part").is_not_null()
        & (pl.col("line_no") == pl.col("line_no").shift(1) + 1).fill_null(False)
        & (pl.col("line_no") <= MAX_LINES)
        & pl.col("original_no").eq_missing(numbered_original)
        & ~alone
        & ~alone.shift(1).fill_null(False)
    )
    rows = rows.with_columns(continues.alias("_continues"))
    # A chain CLAIM-1, CLAIM-2, ... is one claim when it starts at line 1; a chain
    # that starts elsewhere cannot keep its numbers (LX01 counts from 1).
    chain_start = pl.when(~pl.col("_continues")).then(pl.col("row")).forward_fill()
    rows = rows.with_columns(
        (
            ~pl.col("_continues")
            | (pl.col("line_no") != pl.col("row") - chain_start + 1).fill_null(True)
        ).alias("new_claim")
    )
    claim_start = pl.when(pl.col("new_claim")).then(pl.col("row")).forward_fill()
    return rows.with_columns(
        pl.col("new_claim").cum_sum().cast(pl.Int64).alias("claim"),
        (pl.col("row") - claim_start + 1).alias("lx"),
        (pl.col("new_claim").shift(-1).fill_null(True)).alias("last_in_claim"),
    ).drop("_continues")


def _diagnosis_numbers(rows: pl.DataFrame) -> pl.DataFrame:
    """`number`: the diagnosis's place in its claim's HI (first use order), on the row
    that uses it first; `pointer`: that number on every row; `diagnoses`: how many
    the claim has (on its last row)."""
    first_use = (
        pl.col("diagnosis_code").is_not_null()
        & pl.struct("claim", "diagnosis_code").is_first_distinct()
    ).cast(pl.Int64)
    rows = rows.with_columns(first_use.alias("first_use")).with_columns(
        pl.col("first_use").cum_sum().alias("_uses")
    )
    before = pl.when(pl.col("new_claim")).then(pl.col("_uses") - pl.col("first_use"))
    rows = rows.with_columns((pl.col("_uses") - before.forward_fill()).alias("number"))
    firsts = rows.filter(pl.col("first_use") == 1).select(
        "claim", "diagnosis_code", pl.col("number").alias("pointer")
    )
    rows = rows.drop("pointer", strict=False).join(
        firsts, on=["claim", "diagnosis_code"], how="left", maintain_order="left"
    )
    return rows.with_columns(
        pl.when(pl.col("last_in_claim")).then(pl.col("number")).alias("diagnoses")
    ).drop("_uses")


def _claim_fields(rows: pl.DataFrame, delimiters: Delimiters) -> pl.DataFrame:
    """CLM01, REF*F8, CLM02 and HI of each claim, on the claim's first row."""
    keeps_numbers = (pl.col("line_no") == 1).fill_null(False)
    # CLM02: the claim's billed total, from a running sum (cents; invalid amounts count 0).
    running = pl.col("cents").fill_null(0).cum_sum()
    rows = rows.with_columns(running.alias("_running"))
    at_end = pl.when(pl.col("last_in_claim")).then(pl.col("_running")).backward_fill()
    before_start = pl.col("_running") - pl.col("cents").fill_null(0)
    first_uses = rows.filter(pl.col("first_use") == 1).select(
        "claim",
        pl.concat_str(
            pl.lit(delimiters.element),
            pl.when(pl.col("number") == 1).then(pl.lit("ABK")).otherwise(pl.lit("ABF")),
            pl.lit(delimiters.component),
            pl.col("diagnosis_code").str.replace_all(".", "", literal=True),
        ).alias("element"),
    )
    hi = first_uses.group_by("claim", maintain_order=True).agg(
        pl.col("element").str.join("").alias("hi")
    )
    starts = pl.col("new_claim")
    return (
        rows.with_columns(
            pl.when(starts)
            .then(pl.when(keeps_numbers).then(pl.col("claim_part")).otherwise(pl.col("case_id")))
            .alias("clm01"),
            pl.when(starts).then(_payer_claim()).alias("payer_claim"),
            pl.when(starts).then(at_end - before_start).alias("claim_cents"),
        )
        .drop("_running")
        .join(hi, on="claim", how="left", maintain_order="left")
        .with_columns(pl.when(starts).then(pl.col("hi")).alias("hi"))
    )


def _payer_claim() -> pl.Expr:
    """REF*F8 of a correction (on its claim's first line, LX 1): the original's claim
    part when it names line 1, else the whole original case id (read back with `-1`
    after it)."""
    names_line_one = (pl.col("original_no") == 1).fill_null(False)
    return pl.when(names_line_one).then(pl.col("original_part")).otherwise(pl.col("original"))


def _hierarchy(rows: pl.DataFrame) -> pl.DataFrame:
    """HL numbers: a billing level per run of one provider's claims, a subscriber level
    per run of one member's claims, numbered from 1 in each transaction set."""
    claim_start = pl.col("new_claim")
    new_billing = claim_start & (pl.col("new_st") | _changed("provider_id"))
    rows = rows.with_columns(new_billing.alias("new_billing"))
    new_subscriber = claim_start & (pl.col("new_billing") | _changed("member_id"))
    rows = rows.with_columns(new_subscriber.alias("new_subscriber"))
    opened = (
        pl.col("new_billing").cast(pl.Int64) + pl.col("new_subscriber").cast(pl.Int64)
    ).cum_sum()
    before_st = pl.when(pl.col("new_st")).then(opened.shift(1).fill_null(0)).forward_fill()
    in_st = opened - before_st
    return rows.with_columns(
        pl.when(pl.col("new_billing"))
        .then(in_st - pl.col("new_subscriber").cast(pl.Int64))
        .forward_fill()
        .alias("billing_hl"),
        pl.when(pl.col("new_subscriber")).then(in_st).alias("subscriber_hl"),
    )


def _segment_counts(rows: pl.DataFrame) -> pl.DataFrame:
    """SE01 of each transaction set, on its last row."""
    flag = pl.col
    per_row = (
        flag("new_st").cast(pl.Int64) * _HEADER_SEGMENTS
        + flag("new_billing").cast(pl.Int64) * _BILLING_SEGMENTS
        + flag("new_subscriber").cast(pl.Int64) * _SUBSCRIBER_SEGMENTS
        + flag("new_claim").cast(pl.Int64)
        * (
            1
            + flag("payer_claim").is_not_null().cast(pl.Int64)
            + flag("hi").is_not_null().cast(pl.Int64)
        )
        + _LINE_SEGMENTS
        + flag("prior_auth_id").is_not_null().cast(pl.Int64)
    )
    return rows.with_columns(
        (per_row.sum().over("st") + 1).alias("se_count"),
        (pl.col("st") != pl.col("st").shift(-1)).fill_null(True).alias("last_in_st"),
    )
