"""Where the lake and the inbox live: a local folder, or an object store (fsspec URL).

A location text is either

* a plain path or a `file://` URL: a local `Path`. Every local code path (rename-
  based atomic publication, hard-linked skips, flock writer lock, `catalog.duckdb`
  inside the lake) stays exactly as it is; this is the tested default; or
* any other `protocol://` URL that fsspec knows (s3://, gs://, az://, memory://, ...):
  a `RemoteLocation`. The event log then publishes by writing each object once under
  its final name, the batch record last (claimsflow/lake/objectstore.py, docs/object-storage.md).

Credentials and endpoints come from the environment, as the fsspec implementation
reads them (AWS_* variables or `FSSPEC_S3_ENDPOINT_URL` for s3fs, and so on), never
from the URL or a flow parameter, so they are not stored or shown by Prefect.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import fsspec
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from claimsflow.settings import DEFAULT_DATA
from claimsflow.text import first_line

#: Local folder for what a remote lake cannot hold: its writer lock, its DuckDB catalog
#: and the partitions' work folders (one sub-folder per lake URL).
STATE_DIR_ENV = "CLAIMS_REMOTE_STATE_DIR"
DEFAULT_STATE_DIR = DEFAULT_DATA / "remote-lakes"


class StorageError(Exception):
    """A location that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class RemoteLocation:
    """A folder-like prefix on an fsspec filesystem, e.g. `s3://claims/lake`.

    Only text is kept (the URL and the filesystem's own path), so a location pickles
    to Dask workers and Prefect tasks; the filesystem instance comes from fsspec's
    cache of instances, built from the URL and the environment.
    """

    url: str
    root: str

    @property
    def fs(self) -> AbstractFileSystem:
        fs, _root = url_to_fs(self.url)
        return fs

    @property
    def name(self) -> str:
        return PurePosixPath(self.root).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.root).suffix

    @property
    def slug(self) -> str:
        """A file name that tells which lake it is for, unique per URL."""
        readable = re.sub(r"[^A-Za-z0-9]+", "-", self.url).strip("-")[:80]
        return f"{readable}-{hashlib.sha256(self.url.encode()).hexdigest()[:12]}"

    def path(self, *parts: str) -> str:
        """The filesystem path of an object under this prefix."""
        return "/".join(p for p in (self.root, *parts) if p)

    def full_url(self, *parts: str) -> str:
        """The protocol-qualified URL of an object, as DuckDB's registered filesystem and
        fsspec's own listings spell it (e.g. memory:///bucket/... with three slashes)."""
        return str(self.fs.unstrip_protocol(self.path(*parts)))

    def __truediv__(self, name: str) -> RemoteLocation:
        return RemoteLocation(f"{self.url}/{name}", self.path(name))

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.root))

    def __str__(self) -> str:
        return self.url


#: A lake, an inbox or a batch file: local or remote.
Location = Path | RemoteLocation


def parse_location(text: str | Path) -> Location:
    """A local Path for plain paths and file:// URLs, else a RemoteLocation.

    Raises StorageError (one line) for an unknown protocol, a protocol whose fsspec
    implementation is not installed (e.g. s3:// without s3fs), or a chained URL.
    """
    if isinstance(text, Path):
        return text
    if "://" not in text:
        return Path(text)
    if "::" in text:
        # A chained URL (simplecache::s3://...) names two filesystems; DuckDB's registered
        # filesystem and the object names of the event log need one.
        raise StorageError(f"{text}: chained fsspec URLs are not supported; give one protocol")
    protocol = text.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
        fs, root = url_to_fs(text)
    except ValueError as exc:
        if "Protocol not known" not in str(exc):
            raise StorageError(f"{text}: {first_line(exc)}") from None
        raise StorageError(
            f"{text}: unknown storage protocol {protocol!r} "
            "(give a folder, a file:// URL, or an fsspec URL such as s3:// or gs://)"
        ) from None
    except ImportError as exc:
        raise StorageError(
            f"{text}: {protocol}:// needs a package that is not installed ({first_line(exc)})"
        ) from None
    if isinstance(fs, LocalFileSystem):
        return Path(root)
    root = root.rstrip("/")
    return RemoteLocation(f"{protocol}://{_without_protocol(text)}", root)


def describe(location: Location) -> str:
    """The location as one stable text: an absolute path, or the URL."""
    return str(location.resolve()) if isinstance(location, Path) else location.url


def local_state(lake: RemoteLocation) -> Path:
    """The local folder of a remote lake's lock, catalog and work in progress."""
    base = os.environ.get(STATE_DIR_ENV, "").strip()
    return (Path(base) if base else DEFAULT_STATE_DIR) / lake.slug


def check_reachable(location: Location) -> None:
    """Fail with one line when a remote prefix cannot be listed (credentials, endpoint,
    bucket); a prefix with no objects yet is fine (an empty inbox, a new lake). A local
    folder is checked where it is used."""
    if not isinstance(location, RemoteLocation):
        return
    try:
        location.fs.ls(location.root, detail=False)
    except FileNotFoundError:
        return
    except Exception as exc:  # every backend has its own errors; the user gets one line
        raise StorageError(f"{location.url}: cannot be listed: {first_line(exc)}") from None


def write_object(fs: AbstractFileSystem, path: str, data: bytes, *, exclusive: bool) -> bool:
    """Write one whole object; with `exclusive`, only if no object has that name yet.

    Object stores make an object visible whole at the end of its upload, so a reader
    never sees part of one. Exclusive writes use the store's create-if-absent (fsspec
    mode "xb": S3's `If-None-Match: *`); a filesystem without that mode falls back to
    a check then a write, which the lake's writer lock keeps from racing. Returns
    False (and writes nothing) when an exclusive write finds the name taken.
    """
    if not exclusive:
        fs.pipe_file(path, data)
        return True
    try:
        handle = fs.open(path, "xb")
    except FileExistsError:  # refused at once (local, memory)
        return False
    except (NotImplementedError, ValueError):  # no exclusive mode on this filesystem
        if object_exists(fs, path):
            return False
        fs.pipe_file(path, data)
        return True
    try:
        with handle:
            handle.write(data)
    except FileExistsError:  # refused when the upload completes (S3: 412)
        return False
    return True


def object_exists(fs: AbstractFileSystem, path: str) -> bool:
    """Whether an object exists now (not as a cached listing remembers it)."""
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def list_objects(fs: AbstractFileSystem, prefix: str) -> Sequence[str]:
    """Every object under a prefix (recursively), fresh from the store."""
    # The whole listing cache: invalidating a prefix forgets it and its parents, but
    # not the listings of the folders below it.
    fs.invalidate_cache()
    try:
        return [str(p) for p in fs.find(prefix)]
    except FileNotFoundError:
        return []


#: Characters that DuckDB's and fsspec's globs read as patterns.
_GLOB_CHARACTERS = frozenset("[]?*")


def glob_escape(text: str) -> str:
    """`text` as a glob that matches exactly itself: each pattern character in a
    bracket class of its own (`lake[1]` -> `lake[[]1[]]`), which DuckDB's and fsspec's
    globs both read as that one character. `{` is no pattern for either."""
    return "".join(f"[{c}]" if c in _GLOB_CHARACTERS else c for c in text)


def sql_text(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _without_protocol(text: str) -> str:
    return text.split("://", 1)[1].rstrip("/")
