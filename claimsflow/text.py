"""Text shown to people, defined once: money from integer cents, one-line errors, and
reasons that quote nothing of the input."""

from __future__ import annotations

import re


def money(cents: int | None, *, symbol: str = "") -> str:
    """Cents as a decimal amount with thousands separators (integer arithmetic, no
    float): 123456 -> "1,234.56"; None -> "-"."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(int(cents)), 100)
    return f"{sign}{symbol}{whole:,}.{frac:02d}"


def first_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of an exception's message (its type's name when it has none),
    optionally prefixed by the type: what a one-line error or log shows."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0]}" if with_type else lines[0]


# A reader's error may quote what it read: a cell in `backticks`, 'quotes' or
# "double quotes", or one character in parentheses ("at character 12 ('x')").
_QUOTED_CHARACTER = re.compile(r"\s*\((?:'[^']*'|\"[^\"]*\")\)")
_QUOTED = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"")


def without_quotes(text: str) -> str:
    """`text` with everything it quotes replaced by `...`: what a reason built from a
    reader's or driver's error may say, since reasons are printed, logged and stored,
    and the input's cells (member ids, diagnoses) must not be."""
    text = _QUOTED_CHARACTER.sub("", text)
    return _QUOTED.sub(lambda m: f"{m[0][0]}...{m[0][0]}", text)


def reader_problem(exc: BaseException) -> str:
    """The first line of a reader's error, without anything it quotes from the input."""
    return without_quotes(first_line(exc))


def printable(text: str) -> str:
    """`text` with each character a terminal would act on (newline, carriage return,
    escape, bidirectional overrides, ...) written as Python writes it in a repr:
    "a\\nb" -> "a\\\\nb". A cell or reason shown this way cannot move the cursor,
    forge a line or recolour the screen."""
    if text.isprintable():
        return text
    # Only for the rare text that has such a character: a loop over its characters.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_name(name: str) -> str:
    """A file name as logs and tables show it: as it is when every character is
    printable, else its Python repr (quoted, escapes visible), so a name with a
    newline or a terminal escape cannot forge a summary line (issue 18.10)."""
    return name if name.isprintable() else repr(name)
