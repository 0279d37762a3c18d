"""Writing X12: segments as Polars string expressions, and the ISA/GS envelope.

Shared by the 837 and 835 writers. A segment is built for every row at once:
its elements are joined with the element separator and trailing empty elements
are dropped (X12 does not allow them), then the terminator (and an optional line
break) is appended. Nothing here loops over rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from claimsflow.x12.segments import Delimiters

DEFAULT_DELIMITERS = Delimiters(element="*", component=":", repetition="^", segment="~")
LINE_BREAKS = ("", "\n", "\r\n")


def check_delimiters(delimiters: Delimiters, line_break: str) -> None:
    """ValueError unless the delimiters can be declared in an ISA and told apart."""
    inner = [delimiters.element, delimiters.component]
    if delimiters.repetition is not None:
        inner.append(delimiters.repetition)
    chosen = [*inner, delimiters.segment]
    if any(len(c) != 1 or not c.isascii() or c.isalnum() or c in " \t" for c in chosen):
        raise ValueError("each delimiter must be one ASCII character, not a letter, digit or space")
    if any(c in "\r\n" for c in inner):
        raise ValueError("only the segment terminator may be a line break")
    if len(set(chosen)) != len(chosen):
        raise ValueError("the delimiters must be distinct")
    if line_break not in LINE_BREAKS:
        raise ValueError("line_break must be '', '\\n' or '\\r\\n'")
    if delimiters.segment in "\r\n" and line_break:
        raise ValueError("a line-break terminator takes no line_break after it")


def forbidden_characters(delimiters: Delimiters) -> list[str]:
    """Characters no value may hold: the delimiters and line breaks."""
    chars = [delimiters.element, delimiters.component, delimiters.segment, "\r", "\n"]
    if delimiters.repetition is not None:
        chars.append(delimiters.repetition)
    return chars


def check_text_columns(
    frame: pl.DataFrame, columns: tuple[str, ...], delimiters: Delimiters
) -> None:
    """ValueError naming the first column with a value that holds a delimiter."""
    forbidden = forbidden_characters(delimiters)
    found = frame.select(
        pl.col(c).str.contains_any(forbidden).fill_null(False).any().alias(c) for c in columns
    ).row(0, named=True)
    for name, hit in found.items():
        if hit:
            raise ValueError(f"column {name} has a value holding an X12 delimiter")


class SegmentBuilder:
    """Segments as string expressions, terminator and line break included."""

    def __init__(self, delimiters: Delimiters, line_break: str) -> None:
        self.delimiters = delimiters
        self.end = delimiters.segment + line_break

    def __call__(self, tag: str, *elements: str | pl.Expr) -> pl.Expr:
        """One segment per row; a null element is written empty."""
        parts = [pl.lit(tag), *(as_expr(e).fill_null("") for e in elements)]
        joined = pl.concat_str(parts, separator=self.delimiters.element)
        return pl.concat_str(joined.str.strip_chars_end(self.delimiters.element), pl.lit(self.end))

    def fixed(self, tag: str, *elements: str | pl.Expr) -> list[pl.Expr]:
        """One segment whose last element is never empty (nothing to strip), as the
        pieces of a `concat_str`: a caller joins several segments in one concatenation
        instead of one per segment (each level copies every row's text)."""
        pieces: list[pl.Expr] = []
        text = tag
        for element in elements:
            text += self.delimiters.element
            if isinstance(element, str):
                text += element
            else:
                pieces += [pl.lit(text), element.fill_null("")]
                text = ""
        return [*pieces, pl.lit(text + self.end)]

    def composite(self, *components: str | pl.Expr) -> pl.Expr:
        """One composite element per row (trailing empty components dropped)."""
        parts = [as_expr(c).fill_null("") for c in components]
        joined = pl.concat_str(parts, separator=self.delimiters.component)
        return joined.str.strip_chars_end(self.delimiters.component)

    def text(self, *elements: str) -> str:
        """One segment from Python text (the envelope's)."""
        return self.delimiters.element.join(elements).rstrip(self.delimiters.element) + self.end


def as_expr(value: str | pl.Expr) -> pl.Expr:
    return pl.lit(value, dtype=pl.String) if isinstance(value, str) else value


def dollars(cents: pl.Expr) -> pl.Expr:
    """Integer cents as dollars with two decimals (`12345` -> `123.45`), no float: the
    cents become a decimal of scale 2, divided by 100 exactly. Half the time of joining
    the quotient and the zero-filled remainder as text (issue 15: an 835 writes five
    amounts per case)."""
    return (cents.cast(_CENTS) / 100).cast(_CENTS).cast(pl.String)


_CENTS = pl.Decimal(38, 2)


@dataclass(frozen=True)
class Envelope:
    """The ISA/GS that open an interchange of one functional group, and GE/IEA."""

    segments: SegmentBuilder
    functional_id: str  # GS01: HC (837), HP (835)
    version: str  # GS08
    sender_id: str
    receiver_id: str
    control_number: int
    created: dt.datetime
    usage: str = "P"

    def open(self) -> str:
        """ISA (fixed width: ids padded to 15, control number to 9 digits) and GS."""
        d = self.segments.delimiters
        if not 0 < self.control_number < 10**9:
            raise ValueError("control_number must be 1 to 999999999")
        if self.usage not in ("P", "T"):
            raise ValueError("usage must be P (production) or T (test)")
        for name in ("sender_id", "receiver_id"):
            value = str(getattr(self, name))
            if not 0 < len(value) <= 15 or any(c in value for c in forbidden_characters(d)):
                raise ValueError(f"{name} must be 1 to 15 characters without a delimiter")
        isa = d.element.join(
            [
                "ISA",
                "00",
                " " * 10,
                "00",
                " " * 10,
                "ZZ",
                f"{self.sender_id:<15}",
                "ZZ",
                f"{self.receiver_id:<15}",
                self.created.strftime("%y%m%d"),
                self.created.strftime("%H%M"),
                d.repetition or "^",
                "00501",
                f"{self.control_number:09d}",
                "0",
                self.usage,
                d.component,
            ]
        )
        gs = self.segments.text(
            "GS",
            self.functional_id,
            self.sender_id,
            self.receiver_id,
            self.created.strftime("%Y%m%d"),
            self.created.strftime("%H%M"),
            str(self.control_number),
            "X",
            self.version,
        )
        return isa + self.segments.end + gs

    def close(self, transaction_sets: int) -> str:
        """GE (count of ST, GS06) and IEA (one group, ISA13)."""
        return self.segments.text(
            "GE", str(transaction_sets), str(self.control_number)
        ) + self.segments.text("IEA", "1", f"{self.control_number:09d}")
