"""Spec §7: incremental pulls from a SQL staging table through SQLAlchemy.

Rows with `ingest_seq` above the high-water mark recorded in the event log form
one batch; its identity is derived from the source and the seq range.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from claimsflow.ingest.reading import text_columns, with_row_identity
from claimsflow.lake import eventlog
from claimsflow.lake.storage import Location
from claimsflow.text import reader_problem
from schemas.case_batch import REQUIRED_COLUMNS

SEQ = "ingest_seq"


class SqlSourceError(Exception):
    """The SQL source cannot be reached or is not a case table."""


@dataclass(frozen=True)
class SqlIncrement:
    source: str
    seq_range: tuple[int, int]
    raw: pl.DataFrame
    problem: str | None = None  # set when the rows cannot form a case batch


PASSWORD_ENV = "CLAIMS_SOURCE_PASSWORD"  # noqa: S105 - the variable's name, not a password


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password, and the password (None when there is none)."""
    parsed = sa.engine.make_url(url)
    if parsed.password is None:
        return url, None
    # Not URL.set(password=None): set() takes None as "leave as it is".
    stripped = sa.engine.URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return stripped.render_as_string(hide_password=False), str(parsed.password)


def with_password(url: str, password: str | None) -> str:
    """The URL with `password` (from the environment or a secret store) filled in."""
    if not password:
        return url
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)


def source_label(url: str, table: str) -> str:
    """How the source is named in the batch records: the URL without its password, so
    the label (and the batch ids and high-water mark that derive from it) is the same
    whether the password comes in the URL, the environment or a secret block."""
    safe, _password = split_password(url)
    return f"sql:{table}@{safe}"


def high_water_mark(lake: Location, source: str) -> int:
    """The highest ingest_seq already recorded for this source (0 when none)."""
    marks = (
        eventlog.scan_table(lake, "batch")
        .filter((pl.col("source") == source) & pl.col("seq_to").is_not_null())
        .select(pl.col("seq_to").max())
        .collect()
    )
    value = marks.item()
    return int(value) if value is not None else 0


def pull_increment(
    url: str, table: str, lake: Location, up_to: int | None = None
) -> SqlIncrement | None:
    """The rows above the high-water mark, as a text batch, or None when there are none.

    `up_to` caps the pull at that ingest_seq (an ad-hoc run of a slice of the backlog);
    the lower bound is always the high-water mark, so no row is pulled twice.
    """
    source = source_label(url, table)
    mark = high_water_mark(lake, source)
    try:
        engine = sa.create_engine(url)
    except Exception as exc:
        # Whatever the driver quotes (the URL it could not parse) stays out of it.
        raise SqlSourceError(f"{source}: {reader_problem(exc)}") from exc
    try:
        with engine.connect() as connection:
            staged = sa.Table(table, sa.MetaData(), autoload_with=connection)
            if SEQ not in staged.c:
                raise SqlSourceError(f"{source}: table has no {SEQ} column")
            query = sa.select(staged).where(staged.c[SEQ] > mark).order_by(staged.c[SEQ])
            if up_to is not None:
                query = query.where(staged.c[SEQ] <= up_to)
            try:
                frame = pl.read_database(query, connection=connection, infer_schema_length=None)
            except (sa.exc.DBAPIError, sa.exc.NoSuchTableError):
                raise
            except Exception as exc:
                # A reader's error may quote a cell of the table (a member id): the
                # reason is printed and logged, so it says what, never which value.
                raise SqlSourceError(
                    f"{source}: its rows cannot be read as a table: {reader_problem(exc)}"
                ) from exc
    except sa.exc.NoSuchTableError as exc:
        raise SqlSourceError(f"{source}: no such table {table!r}") from exc
    finally:
        engine.dispose()
    if frame.height == 0:
        return None
    first_seq, last_seq = frame.select(
        pl.col(SEQ).cast(pl.Int64).min().alias("first"),
        pl.col(SEQ).cast(pl.Int64).max().alias("last"),
    ).row(0)
    raw = text_columns(frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    return SqlIncrement(
        source=source,
        seq_range=(int(first_seq), int(last_seq)),
        raw=with_row_identity(raw),
        problem=f"missing required column(s): {', '.join(missing)}" if missing else None,
    )
