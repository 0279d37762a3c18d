"""Options shared by commands: dates and lake or inbox locations, checked into one-line
usage errors."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from adjudicate.app import fail

if TYPE_CHECKING:
    from claimsflow.lake.storage import Location


def parse_date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} must be a date YYYY-MM-DD, not {text!r}") from None


def location(text: str) -> Location:
    """A lake or inbox option as a local Path or an object-store location (one-line error)."""
    from claimsflow.lake.storage import StorageError, parse_location

    try:
        return parse_location(text)
    except StorageError as exc:
        raise fail(str(exc)) from None


def check_remote(location: Location) -> None:
    """An object-store location that cannot be listed (credentials, endpoint, bucket)
    stops the run here with one line, not with a traceback from inside the flow."""
    from claimsflow.lake.storage import StorageError, check_reachable

    try:
        check_reachable(location)
    except StorageError as exc:
        raise fail(str(exc)) from None


def existing_folder_or_url(text: str, option: str) -> Location:
    """`location(text)`, refused with one line when a local path is a file, or lies
    under one: a lake, inbox or reports folder cannot be a file (issue 19.5)."""
    from pathlib import Path

    from claimsflow.text import shown_name

    at = location(text)
    if isinstance(at, Path):
        # The path itself or the nearest part of it that exists (a lake not yet made).
        for part in (at, *at.parents):
            if part.exists() or part.is_symlink():
                if part.is_dir():
                    break
                kind = "a file" if part.is_file() else "a broken link or special file"
                where = "is" if part == at else f"is under {shown_name(str(part))},"
                raise fail(f"{option} {shown_name(text)}: {where} {kind}, not a folder")
    return at
