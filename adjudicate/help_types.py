"""How `--help` names what each option takes (issue 19.8).

Typer labels every value by its Python annotation (`<str>`, `<path>`) and even a
flag as `<bool>`, which tells a user nothing. Here a flag shows no value at all,
an option with a metavar shows it (DIR|URL, DATE, N), and the rest show click's
plain words (TEXT, PATH, INTEGER). Imported once by the app, before any help is
printed.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption

_WORDS = {
    "<str>": "TEXT",
    "<path>": "PATH",
    "<int>": "INTEGER",
    "<float>": "NUMBER",
    "<datetime>": "DATETIME",
}


def _option_type(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag:
        return None
    if self.metavar is not None:
        return self.metavar
    shown = _base_option_type(self, ctx)
    return None if shown is None else _words(shown)


def _argument_type(self: TyperArgument, ctx: Any) -> str | None:
    shown = _base_argument_type(self, ctx)
    return None if shown is None else _words(shown)


def _words(shown: str) -> str:
    if shown in _WORDS:
        return _WORDS[shown]
    if shown.startswith("<") and shown.endswith(">"):
        inner = shown[1:-1]
        if inner.endswith(" range"):  # the range itself follows in brackets
            return _WORDS.get(f"<{inner.removesuffix(' range')}>", inner.upper())
        return f"[{inner}]"  # choices: [table|csv|json]
    return shown


_base_option_type: Any = TyperOption.display_type_rich
_base_argument_type: Any = TyperArgument.display_type_rich
TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign, assignment]
