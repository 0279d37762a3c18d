"""Which entries of an inbox are batches (spec §1): batch files in lexicographic order
of name; everything else is left untouched and named in the run's report.

Three more kinds of entry are left for a later run and named in the report:

- a batch file that is **not ready**: modified less than `quiet_seconds` ago (or as
  far in the future), so it may still be being copied in. Feeds should write a file
  under another name (or elsewhere) and rename it into the inbox when it is whole;
  the quiet period covers the ones that do not (docs/operations.md);
- an entry that **cannot be examined**: a symbolic link loop, a link to nothing, an
  entry the run may not read. Discovery never fails on one entry;
- a batch file that **vanished or changed** between the listing and the reading
  (`read_inbox_file` raises `InboxFileUnavailable`): no batch is recorded for bytes
  that were never read whole.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from claimsflow.ingest.reading import batch_format
from claimsflow.lake.storage import Location, RemoteLocation
from claimsflow.settings import DEFAULT_QUIET_SECONDS
from claimsflow.text import shown_name

__all__ = [
    "DEFAULT_QUIET_SECONDS",
    "InboxFileUnavailable",
    "InboxListing",
    "NotRead",
    "discover",
    "discover_inbox",
    "discover_remote_inbox",
    "list_inbox",
    "os_reason",
    "read_inbox_file",
]


class InboxFileUnavailable(Exception):
    """A listed batch file could not be read whole: gone, unreadable or changed."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class NotRead:
    """An inbox entry a run left alone, and why (named in the run's report)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{shown_name(self.name)} ({self.reason})"


@dataclass(frozen=True)
class InboxListing:
    """One look at an inbox.

    batches: the batch files to process now, in name order.
    ignored: entries that are not batches (hidden, other extensions, folders, links
        leading out of the inbox).
    not_ready: batch files modified within the quiet period.
    not_read: entries that cannot be examined, with the reason.
    """

    batches: list[Location] = field(default_factory=list)
    ignored: list[Location] = field(default_factory=list)
    not_ready: list[Location] = field(default_factory=list)
    not_read: list[NotRead] = field(default_factory=list)


def list_inbox(
    inbox: Location, *, quiet_seconds: float = 0.0, now: float | None = None
) -> InboxListing:
    """The inbox's entries, sorted into what a run does with them.

    `quiet_seconds`: a batch file modified less than this long ago (by `now`, epoch
    seconds; default the clock) is not ready. 0 takes every batch file.
    """
    at = time.time() if now is None else now
    if isinstance(inbox, RemoteLocation):
        return _list_remote(inbox, quiet_seconds, at)
    return _list_local(inbox, quiet_seconds, at)


def discover(inbox: Location) -> tuple[Sequence[Location], Sequence[Location]]:
    """The batch files of a local or remote inbox, and the entries that are not batches
    (entries that cannot be examined among them); no quiet period."""
    listing = list_inbox(inbox)
    names = {n.name for n in listing.not_read}
    unexamined = [inbox / name for name in sorted(names)]
    return listing.batches, sorted([*listing.ignored, *unexamined], key=lambda p: p.name)


def discover_inbox(inbox: Path) -> tuple[list[Path], list[Path]]:
    """Batch files in lexicographic order of name, and the entries that are not batches.

    Hidden files, other extensions, folders, links leading out of the inbox and
    entries that cannot be examined are left untouched (spec §1) and named in the
    run's report.
    """
    listing = _list_local(inbox, 0.0, time.time())
    unexamined = [inbox / n.name for n in listing.not_read]
    return (
        [p for p in listing.batches if isinstance(p, Path)],
        sorted([*(p for p in listing.ignored if isinstance(p, Path)), *unexamined], key=str),
    )


def discover_remote_inbox(
    inbox: RemoteLocation,
) -> tuple[list[RemoteLocation], list[RemoteLocation]]:
    """`discover_inbox` on an object store."""
    listing = _list_remote(inbox, 0.0, time.time())
    return (
        [p for p in listing.batches if isinstance(p, RemoteLocation)],
        [p for p in listing.ignored if isinstance(p, RemoteLocation)],
    )


def read_inbox_file(path: Location) -> bytes:
    """The bytes of a listed batch file, read whole, or `InboxFileUnavailable`.

    The file is checked before and after it is read: one that vanished, became
    unreadable or changed meanwhile (a copy still going on) is not a batch this run.
    """
    name = path.name
    if isinstance(path, RemoteLocation):
        return _read_remote(path)
    try:
        before = path.stat()
        if not stat.S_ISREG(before.st_mode):
            raise InboxFileUnavailable(name, "is no longer a file")
        data = path.read_bytes()
        after = path.stat()
    except OSError as exc:
        raise InboxFileUnavailable(
            name, os_reason(exc, "vanished after the inbox was listed")
        ) from None
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(
        data
    ) != after.st_size:
        raise InboxFileUnavailable(name, "changed while it was read")
    return data


def _list_local(inbox: Path, quiet_seconds: float, now: float) -> InboxListing:
    listing = InboxListing()
    try:
        names = sorted(os.listdir(inbox))
        root = inbox.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return listing  # no inbox folder: nothing to do
    for name in names:
        entry = inbox / name
        if batch_format(Path(name)) is None:
            # Not a batch by its name: nothing about it is looked up (not even where
            # a link leads), so no entry of this kind can stop the listing.
            listing.ignored.append(entry)
            continue
        try:
            info = entry.stat()  # follows a link: a loop or a link to nothing fails here
            inside = entry.resolve(strict=True).parent == root
        except (OSError, RuntimeError) as exc:
            listing.not_read.append(NotRead(name, _entry_reason(exc)))
            continue
        if not stat.S_ISREG(info.st_mode) or not inside:
            listing.ignored.append(entry)  # a folder, a device, a link out of the inbox
        elif _recent(info.st_mtime, quiet_seconds, now):
            listing.not_ready.append(entry)
        else:
            listing.batches.append(entry)
    return listing


def _list_remote(inbox: RemoteLocation, quiet_seconds: float, now: float) -> InboxListing:
    """The same on an object store: the objects directly under the prefix; a
    "sub-folder" (common prefix) is not a batch. An object is visible only once its
    upload is complete, but a feed may still write its files one after another."""
    fs = inbox.fs
    # Listings are cached per filesystem instance; a long-lived process must see
    # files that arrived since it last looked.
    fs.invalidate_cache(inbox.root)
    listing = InboxListing()
    try:
        entries = fs.ls(inbox.root, detail=True)
    except FileNotFoundError:
        return listing  # a prefix with no objects: an empty inbox
    for info in sorted(entries, key=lambda e: PurePosixPath(str(e["name"])).name):
        full = str(info["name"]).rstrip("/")
        name = PurePosixPath(full).name
        if not name or full == inbox.root:
            continue  # the prefix's own "folder" marker object, if any
        child = inbox / name
        if info.get("type") != "file" or batch_format(Path(name)) is None:
            listing.ignored.append(child)
        elif _recent(_modified(info), quiet_seconds, now):
            listing.not_ready.append(child)
        else:
            listing.batches.append(child)
    return listing


def _read_remote(path: RemoteLocation) -> bytes:
    fs = path.fs
    try:
        fs.invalidate_cache(path.root)
        size = fs.info(path.root).get("size")
        data = bytes(fs.cat_file(path.root))
    except FileNotFoundError:
        raise InboxFileUnavailable(path.name, "vanished after the inbox was listed") from None
    except PermissionError:
        raise InboxFileUnavailable(path.name, "cannot be read (permission denied)") from None
    if size is not None and len(data) != int(size):
        raise InboxFileUnavailable(path.name, "changed while it was read")
    return data


def _recent(modified: float | None, quiet_seconds: float, now: float) -> bool:
    """Modified within the quiet period, either side of now: a time in the future
    beyond it is a clock that disagrees, not a copy going on, and does not hold a
    file back for ever."""
    return quiet_seconds > 0 and modified is not None and abs(now - modified) < quiet_seconds


def _modified(info: Mapping[str, Any]) -> float | None:
    """An object's modification time from a listing (each fsspec backend has its own
    key: s3fs LastModified, gcsfs updated, local/memory mtime or created)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
    return None


def _entry_reason(exc: BaseException) -> str:
    """Why an entry cannot be examined, in words (never a path of the machine)."""
    if isinstance(exc, RuntimeError):  # Path.resolve on a loop, before Python 3.13
        return "a symbolic link loop"
    return os_reason(exc, "a link to nothing")


def os_reason(exc: BaseException, missing: str) -> str:
    """Why a listed file could not be read, in the inbox's words (`missing`: when it
    is gone)."""
    code = getattr(exc, "errno", None)
    if code == errno.ELOOP:
        return "a symbolic link loop"
    if code == errno.ENOENT:
        return missing
    if code in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    if code == errno.EISDIR:
        return "is no longer a file"
    return f"cannot be read ({os.strerror(code)})" if code else "cannot be read"
