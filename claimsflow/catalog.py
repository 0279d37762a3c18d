"""The analyst catalog (spec §7): `catalog.duckdb` in the lake, views over the Parquet.

The views read the event log's files through globs with stock DuckDB (no
extension, no network), so a batch recorded after the catalog was built is
visible at once. The catalog file is rebuilt aside and renamed into place.

A remote lake (s3://, gs://, ...; docs/object-storage.md) cannot hold a DuckDB
database file, and stock DuckDB cannot read it without the httpfs extension, which
is never downloaded here. Instead the lake's fsspec filesystem is registered with
DuckDB (`register_filesystem`), the catalog file lives in the lake's local state
folder (`storage.local_state`), and the views keep to committed batches: a table's
rows count only when their batch's record object exists. Opening the catalog
registers the filesystem again (a DuckDB file cannot remember a Python object);
where no catalog file exists on this machine, the same views are built in memory.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from claimsflow import eventlog
from claimsflow.faults import crash_point
from claimsflow.storage import Location, RemoteLocation, local_state

CATALOG_FILE = "catalog.duckdb"


def catalog_path(lake: Location) -> Path:
    if isinstance(lake, RemoteLocation):
        return local_state(lake) / CATALOG_FILE
    return lake / CATALOG_FILE


def _files(lake: Location, table: str) -> str:
    if isinstance(lake, RemoteLocation):
        return _committed_files(lake, table)
    pattern = eventlog.batches_dir(lake.resolve()) / "*" / f"{table}.parquet"
    return f"read_parquet('{_quote(str(pattern))}', union_by_name = true)"


def _committed_files(lake: RemoteLocation, table: str) -> str:
    """A table's objects, restricted to batches whose record object exists.

    Table objects are written before their batch's record (the commit marker), so a
    publish that was cut short leaves objects whose batch_id has no record: the
    semi-join hides them, and a batch counts from the moment its record exists.
    """
    records = lake.full_url("events", "batches", "*", f"{eventlog.RECORD_TABLE}.parquet")
    read_records = f"read_parquet('{_quote(records)}', union_by_name = true)"
    if table == eventlog.RECORD_TABLE:
        return read_records
    pattern = lake.full_url("events", "batches", "*", f"{table}.parquet")
    return (
        f"(SELECT * FROM read_parquet('{_quote(pattern)}', union_by_name = true) "
        f"WHERE batch_id IN (SELECT batch_id FROM {read_records}))"
    )


def _quote(text: str) -> str:
    return text.replace("'", "''")


def view_definitions(lake: Location) -> dict[str, str]:
    """View name -> SELECT, in creation order."""
    skips = (
        lake.full_url("events", "skips", "*.parquet")
        if isinstance(lake, RemoteLocation)
        else eventlog.skips_dir(lake.resolve()) / "*.parquet"
    )
    batch_columns = (
        "batch_id, source, status, rows_in, rows_decided, rows_rejected, reason, processed_at"
    )
    views = {
        "decision_events": f"SELECT * FROM {_files(lake, 'decisions')}",
        "case_payloads": f"SELECT * FROM {_files(lake, 'cases')}",
        "rule_hit_events": f"SELECT * FROM {_files(lake, 'rule_hits')}",
        "rejection_events": f"SELECT * FROM {_files(lake, 'rejections')}",
        "batch_events": (
            f"SELECT * FROM {_files(lake, 'batch')} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet('{_quote(str(skips))}', union_by_name = true)"
        ),
        "case_decisions": """
            SELECT case_id, batch_id, status, reason_codes,
                   allowed_cents, deductible_cents, coinsurance_cents, paid_cents,
                   ruleset_version, decided_at, ruleset_name, ruleset_parameters_hash,
                   deductible_used_before_cents, run_id
            FROM decision_events
            QUALIFY row_number() OVER (
                PARTITION BY case_id ORDER BY decided_at DESC, batch_id DESC) = 1""",
        "rejections": """
            SELECT batch_id, row_number, case_id, errors, raw, rejected_at
            FROM rejection_events""",
        "batches": f"""
            SELECT {batch_columns}, source_kind, run_id, ruleset_name, ruleset_version,
                   seq_from, seq_to, pipeline_version
            FROM batch_events""",
        "rule_hits": """
            SELECT case_id, rule_id, outcome, reason_code, ruleset_version,
                   rule_order, rule_description, ruleset_name, batch_id, decided_at
            FROM rule_hit_events""",
        "cases": "SELECT * EXCLUDE (received_at), received_at FROM case_payloads",
        "events": """
            SELECT 'batch_' || lower(status) AS event_type, batch_id, NULL::VARCHAR AS case_id,
                   processed_at AS recorded_at, to_json(b)::VARCHAR AS payload
            FROM batch_events b
            UNION ALL
            SELECT 'case_received', batch_id, case_id, received_at, to_json(c)::VARCHAR
            FROM case_payloads c
            UNION ALL
            SELECT 'case_decided', batch_id, case_id, decided_at, to_json(d)::VARCHAR
            FROM decision_events d
            UNION ALL
            SELECT 'rule_hit', batch_id, case_id, decided_at, to_json(h)::VARCHAR
            FROM rule_hit_events h
            UNION ALL
            SELECT 'row_rejected', batch_id, case_id, rejected_at, to_json(r)::VARCHAR
            FROM rejection_events r""",
    }
    return views


def refresh_catalog(lake: Location) -> Path:
    """(Re)build catalog.duckdb with the spec's views; atomic for readers."""
    eventlog.ensure_lake(lake)
    target = catalog_path(lake)
    aside = eventlog.staging_dir(lake) / f"catalog.{uuid.uuid4().hex}.duckdb"
    aside.parent.mkdir(parents=True, exist_ok=True)  # a remote lake's local folder
    con = duckdb.connect(str(aside), config=_offline_config())
    try:
        register_lake(con, lake)  # views are bound (their files read) when created
        for name, select in view_definitions(lake).items():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    crash_point("while-refreshing-catalog")
    os.replace(aside, target)
    return target


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[object, ...]]


class CatalogError(Exception):
    """The catalog is missing or a query failed; the message is for the user."""


#: Statement types an analyst may run; everything else is refused before it runs.
READ_ONLY_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s*(?:\([^)]*\)\s*)?(?:ANALY[SZ]E\s+)?", re.IGNORECASE)


def connect_read_only(lake: Location) -> duckdb.DuckDBPyConnection:
    """A connection that can read the lake and nothing else, and cannot be unlocked.

    The database is opened read-only; file access is limited to the lake's folder
    (no other file, no extension install or load, no ATTACH elsewhere) and the
    configuration is locked so a query cannot lift these limits.
    """
    if isinstance(lake, RemoteLocation):
        con = _connect_remote(lake)
    else:
        path = catalog_path(lake)
        if not path.is_file():
            raise CatalogError(f"{path}: no catalog here (run `adjudicate run` first)")
        try:
            con = duckdb.connect(str(path), read_only=True, config=_offline_config())
        except duckdb.Error as exc:
            raise CatalogError(f"{path}: cannot be opened: {_first_line(exc)}") from exc
    restrict_to_lake(con, lake)
    con.execute("SET lock_configuration = true")
    return con


def _connect_remote(lake: RemoteLocation) -> duckdb.DuckDBPyConnection:
    """The remote lake's local catalog file, or (none on this machine) the same views
    built in memory; its filesystem registered either way."""
    if not eventlog.has_event_log(lake):
        raise CatalogError(f"{lake}: no event log here (run `adjudicate run` first)")
    path = catalog_path(lake)
    try:
        if path.is_file():
            con = duckdb.connect(str(path), read_only=True, config=_offline_config())
            register_lake(con, lake)
            return con
        con = duckdb.connect(":memory:", config=_offline_config())
        register_lake(con, lake)
        for name, select in view_definitions(lake).items():
            con.execute(f"CREATE VIEW {name} AS {select}")
    except duckdb.Error as exc:
        raise CatalogError(f"{lake}: cannot be opened: {_first_line(exc)}") from exc
    return con


def register_lake(con: duckdb.DuckDBPyConnection, lake: Location) -> None:
    """Let DuckDB read a remote lake through its fsspec filesystem (nothing for a local one)."""
    if isinstance(lake, RemoteLocation):
        fs = lake.fs
        fs.invalidate_cache()  # DuckDB's globs list through it: see what is there now
        con.register_filesystem(fs)


def restrict_to_lake(con: duckdb.DuckDBPyConnection, lake: Location) -> None:
    """Limit file access to the lake (its folder, or its URL prefix) and turn off the rest."""
    if isinstance(lake, RemoteLocation):
        # fsspec's listings spell some URLs with three slashes (memory:///bucket/...),
        # the user's text with two: both name the lake.
        roots = sorted({lake.url, lake.full_url()})
    else:
        roots = [str(lake.resolve())]
    allowed = ", ".join(f"'{_quote(root.rstrip('/'))}/'" for root in roots)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN) statement, with a clear message."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise CatalogError(_first_line(exc)) from exc
    if len(statements) != 1:
        raise CatalogError(f"give exactly one SQL statement (got {len(statements)})")
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs the statement it explains: that one must be a query too.
        inner = _EXPLAIN_PREFIX.sub("", statement.query, count=1)
        if inner == statement.query:
            raise CatalogError("refused: write EXPLAIN [ANALYZE] followed by a SELECT query")
        check_read_only(con, inner)
        return
    if statement.type not in READ_ONLY_STATEMENTS:
        words = statement.query.split(maxsplit=1)
        keyword = words[0].upper() if words else ""
        kind = keyword if keyword.isalpha() and keyword != "WITH" else statement.type.name
        raise CatalogError(
            f"refused: the catalog is read-only; {kind} statements are not allowed "
            "(only SELECT queries)"
        )


def run_query(lake: Location, sql: str) -> QueryResult:
    """Run one read-only SQL statement on the catalog."""
    con = connect_read_only(lake)
    try:
        check_read_only(con, sql)
        try:
            relation = con.execute(sql)
            columns = [d[0] for d in relation.description or []]
            rows = relation.fetchall()
        except duckdb.Error as exc:
            raise CatalogError(_first_line(exc)) from exc
    finally:
        con.close()
    return QueryResult(columns, rows)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _offline_config() -> dict[str, str | bool | int | float | list[str]]:
    # Stock DuckDB only: never fetch or load an extension at run time.
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
