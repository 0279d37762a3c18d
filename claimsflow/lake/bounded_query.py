"""An analyst's query with bounds (issue 18.11): a time limit and a memory limit, each
with a message that says which bound was hit, and rows read as they are wanted.

DuckDB produces a query's rows as they are fetched, so the first rows of a large
result reach the terminal at once, and the rest can be counted (for a table's
footer) through Arrow without turning each row into Python objects.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from claimsflow.lake.catalog import (
    CatalogError,
    check_read_only,
    connect_read_only,
    duckdb_problem,
)
from claimsflow.lake.storage import Location

#: `--timeout`: a query that runs longer is stopped (0: no limit).
DEFAULT_TIMEOUT_SECONDS = 300.0
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
#: Below this DuckDB cannot run even a small query.
MIN_MEMORY_BYTES = 16 * 1024**2


def default_memory_limit() -> int:
    """A quarter of this machine's RAM in bytes: a query cannot starve the nightly run
    or the other users of the machine (DuckDB's own default is 80 %)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (not POSIX): 1 GiB
        return 1024**3
    return max(MIN_MEMORY_BYTES, total // 4)


def parse_size(text: str) -> int:
    """`"512MB"`, `"2GiB"`, `"1.5 GB"` -> bytes; ValueError with a message otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 512MB or 2GiB")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < MIN_MEMORY_BYTES:
        raise ValueError(f"{text!r} is below the least a query needs, 16MiB")
    return size


def size_text(size: int) -> str:
    """Bytes as the largest binary unit that keeps one decimal: 2147483648 -> "2.0 GiB"."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit.lower()]
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class QueryLimits:
    #: Seconds before the query is stopped; None or 0: no limit.
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS
    #: Bytes DuckDB may use for the query; None: a quarter of RAM.
    memory_bytes: int | None = None

    @property
    def memory(self) -> int:
        return self.memory_bytes if self.memory_bytes is not None else default_memory_limit()


class BoundedQuery:
    """One running query: its columns, then its rows, fetched a few at a time."""

    def __init__(
        self, result: duckdb.DuckDBPyConnection, limits: QueryLimits, timed_out: threading.Event
    ) -> None:
        self._result = result
        self._limits = limits
        self._timed_out = timed_out
        self.columns: list[str] = [d[0] for d in result.description or []]

    def fetch(self, size: int) -> list[tuple[object, ...]]:
        """Up to `size` further rows (none left: an empty list)."""
        with _translated(self._limits, self._timed_out):
            return self._result.fetchmany(size)

    def chunks(self, size: int = 10_000) -> Iterator[list[tuple[object, ...]]]:
        while rows := self.fetch(size):
            yield rows

    def count_rest(self) -> int:
        """How many rows are left, counted without converting them to Python."""
        with _translated(self._limits, self._timed_out), warnings.catch_warnings():
            # DuckDB warns that Arrow from a DB-API result copies the rows: a copy is
            # what counting needs anyway, batch by batch.
            warnings.simplefilter("ignore")
            reader = self._result.to_arrow_reader(100_000)
            if reader is None:  # no result set (nothing was left)
                return 0
            return sum(batch.num_rows for batch in reader)


@contextmanager
def _translated(limits: QueryLimits, timed_out: threading.Event) -> Iterator[None]:
    """DuckDB's errors as one-line CatalogErrors; a bound that was hit named as such."""
    try:
        yield
    except duckdb.InterruptException as exc:
        if timed_out.is_set():
            raise CatalogError(
                f"query stopped after {limits.timeout_seconds:g} s (--timeout); "
                "narrow it (WHERE, LIMIT, fewer columns) or give a larger --timeout"
            ) from exc
        raise KeyboardInterrupt from exc
    except duckdb.OutOfMemoryException as exc:
        raise CatalogError(
            f"query needs more memory than its limit, {size_text(limits.memory)} "
            "(--memory-limit); narrow it or give a larger --memory-limit"
        ) from exc
    except duckdb.Error as exc:
        raise CatalogError(duckdb_problem(exc)) from exc


@contextmanager
def bounded_query(lake: Location, sql: str, limits: QueryLimits) -> Iterator[BoundedQuery]:
    """Start one read-only query on the catalog, within `limits`, until the block ends."""
    con = connect_read_only(lake, memory_bytes=limits.memory)
    timer: threading.Timer | None = None
    try:
        check_read_only(con, sql)
        timed_out = threading.Event()
        if limits.timeout_seconds:
            # DuckDB has no statement timeout: interrupting the connection stops the
            # query wherever it is, in execution or between fetches.
            def stop() -> None:
                timed_out.set()
                con.interrupt()

            timer = threading.Timer(limits.timeout_seconds, stop)
            timer.daemon = True
            timer.start()
        with _translated(limits, timed_out):
            result = con.execute(sql)
        query = BoundedQuery(result, limits, timed_out)
        yield query
    finally:
        if timer is not None:
            timer.cancel()
        con.close()
