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
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from claimsflow.faults import crash_point
from claimsflow.lake import eventlog
from claimsflow.lake.backend import lake_at
from claimsflow.lake.storage import Location, RemoteLocation, sql_text
from claimsflow.text import first_line

CATALOG_FILE = "catalog.duckdb"
#: The columns of case_decisions and decision_history (spec §7), then the extras.
_DECISION_COLUMNS = """
                   d.case_id, d.batch_id, status, reason_codes,
                   allowed_cents, deductible_cents, coinsurance_cents, paid_cents,
                   ruleset_version, decided_at,
                   coalesce(decision_source, 'ADJUDICATION') AS decision_source, decided_by,
                   note, received_batch_id, ruleset_name, ruleset_parameters_hash,
                   deductible_used_before_cents, oop_spent_before_cents, oop_max_cents,
                   run_id"""


def decision_order(alias: str, *, latest_first: bool) -> str:
    """The order of a case's decisions (spec §7), as an SQL ORDER BY list over the
    decision events `alias`: by decided_at; at the same instant a review or correction
    comes after the adjudication (it can only follow one); then by batch_id. The lake's
    history (claimsflow/lake/history.py) and the 835 (analysis/remittance.py) take the
    same latest decision."""
    way = " DESC" if latest_first else ""
    later = f"(coalesce({alias}.decision_source, 'ADJUDICATION') <> 'ADJUDICATION')"
    return f"{alias}.decided_at{way}, {later}{way}, {alias}.batch_id{way}"


#: The PENDED cases (the latest decisions and case_payloads), aged from `{today}`: see
#: `pended_queue_sql`.
_PENDED_QUEUE_SQL = """
            WITH ever_pended AS (
                SELECT DISTINCT case_id FROM decision_events WHERE status = 'PENDED'),
            latest AS (
                -- The latest decision of the few cases ever PENDED (case_decisions ranks
                -- every case's).
                SELECT e.case_id, e.status, e.reason_codes, e.decided_at
                FROM decision_events e SEMI JOIN ever_pended USING (case_id)
                QUALIFY row_number() OVER (
                    PARTITION BY e.case_id ORDER BY {latest_first}) = 1)
            SELECT d.case_id,
                   ({today} - c.received_date)::BIGINT AS age_days,
                   printf('%d.%02d', c.billed_cents // 100, c.billed_cents % 100)
                       ::DECIMAL(18, 2) AS billed,
                   c.member_id, c.provider_id, d.reason_codes,
                   c.batch_id AS received_batch_id,
                   c.received_date, c.service_date, c.procedure_code, c.billed_cents,
                   d.decided_at AS pended_at
            FROM latest d JOIN case_payloads c ON c.case_id = d.case_id
            WHERE d.status = 'PENDED'
            ORDER BY c.received_date, d.case_id"""


def pended_queue_sql(today: str) -> str:
    """The PENDED cases aged from `today` (an SQL date expression): the `pended_queue`
    view with current_date, `adjudicate pended` with a given date. billed is exact
    (text to DECIMAL, never through a float)."""
    return _PENDED_QUEUE_SQL.format(
        today=today, latest_first=decision_order("e", latest_first=True)
    )


def catalog_path(lake: Location) -> Path:
    """The catalog file: in a local lake, or in a remote lake's local state folder."""
    return lake_at(lake).state_dir / CATALOG_FILE


def view_definitions(lake: Location) -> dict[str, str]:
    """View name -> SELECT, in creation order."""
    log = lake_at(lake)
    batch_columns = (
        "batch_id, source, status, rows_in, rows_decided, rows_rejected, reason, processed_at"
    )
    views = {
        "decision_events": f"SELECT * FROM {log.sql_table('decisions')}",
        "case_payloads": f"SELECT * FROM {log.sql_table('cases')}",
        "rule_hit_events": f"SELECT * FROM {log.sql_table('rule_hits')}",
        "rejection_events": f"SELECT * FROM {log.sql_table('rejections')}",
        "batch_events": (
            f"SELECT * FROM {log.sql_table('batch')} UNION ALL BY NAME "
            f"SELECT * FROM {log.sql_skips()}"
        ),
        # Spec §7: every decision of a case, oldest first (decision_history), and its
        # latest one (case_decisions). A decision's batch_id is the batch (or review
        # file) that recorded it; received_batch_id is the batch the case came in.
        "decision_history": f"""
            SELECT {_DECISION_COLUMNS}
            FROM decision_events d
            LEFT JOIN (SELECT case_id AS _case, batch_id AS received_batch_id
                       FROM case_payloads) c ON c._case = d.case_id
            ORDER BY {decision_order("d", latest_first=False)}, d.case_id""",
        "case_decisions": f"""
            SELECT {_DECISION_COLUMNS}
            FROM decision_events d
            LEFT JOIN (SELECT case_id AS _case, batch_id AS received_batch_id
                       FROM case_payloads) c ON c._case = d.case_id
            QUALIFY row_number() OVER (
                PARTITION BY d.case_id ORDER BY {decision_order("d", latest_first=True)}) = 1""",
        # Spec §8: the examiners' work queue, cases whose latest decision is PENDED,
        # oldest received first; age_days = today (current_date) - received_date.
        "pended_queue": pended_queue_sql("current_date"),
        "rejections": """
            SELECT batch_id, row_number, case_id, errors, raw, rejected_at
            FROM rejection_events""",
        "batches": f"""
            SELECT {batch_columns}, coalesce(kind, 'CASES') AS kind, source_kind, run_id,
                   ruleset_name, ruleset_version, seq_from, seq_to, pipeline_version
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
    with database_built_at(aside) as usable:
        con = duckdb.connect(usable, config=_offline_config())
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


def connect_read_only(
    lake: Location, *, memory_bytes: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection that can read the lake and nothing else, and cannot be unlocked.

    The database is opened read-only; file access is limited to the lake's folder
    (no other file, no extension install or load, no ATTACH elsewhere), memory to
    `memory_bytes` when given, and the configuration is locked so a query cannot
    lift these limits.
    """
    if isinstance(lake, RemoteLocation):  # no catalog file there: see _connect_remote
        con = _connect_remote(lake)
    else:
        path = catalog_path(lake)
        if not path.is_file():
            raise CatalogError(f"{path}: no catalog here (run `adjudicate run` first)")
        try:
            con = _open_read_only(path)
        except duckdb.Error as exc:
            raise CatalogError(f"{path}: cannot be opened: {first_line(exc)}") from exc
    restrict_to_lake(con, lake)
    if memory_bytes is not None:
        con.execute(f"SET memory_limit = '{int(memory_bytes)}B'")
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
            con = _open_read_only(path)
            register_lake(con, lake)
            return con
        con = duckdb.connect(":memory:", config=_offline_config())
        register_lake(con, lake)
        for name, select in view_definitions(lake).items():
            con.execute(f"CREATE VIEW {name} AS {select}")
    except duckdb.Error as exc:
        raise CatalogError(f"{lake}: cannot be opened: {first_line(exc)}") from exc
    return con


#: What DuckDB reads in a database file's path as something else: `?` starts the
#: file's options (its write-ahead log's path is cut there), and a backslash is a
#: path separator on every platform. It resolves links, so a link does not help.
_NOT_A_DATABASE_PATH = ("?", "\\")


def _misread_by_duckdb(path: Path) -> bool:
    return any(c in str(path) for c in _NOT_A_DATABASE_PATH)


@contextmanager
def database_built_at(path: Path) -> Iterator[str]:
    """Where to build a database file that must end up at `path`.

    `path` itself, unless DuckDB would misread it: then a file in a private temporary
    folder, copied to `path` (and synced) when the block ends without an error.
    """
    if not _misread_by_duckdb(path):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="claims-duckdb-") as work:
        built = Path(work) / "catalog.duckdb"
        yield str(built)
        shutil.copyfile(built, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    if not _misread_by_duckdb(path):
        return duckdb.connect(str(path), read_only=True, config=_offline_config())
    # A private copy (the catalog holds view definitions only: a few kilobytes). Once
    # open, the connection holds the file, and the folder may go.
    with tempfile.TemporaryDirectory(prefix="claims-duckdb-") as work:
        copy = Path(work) / "catalog.duckdb"
        shutil.copyfile(path, copy)
        return duckdb.connect(str(copy), read_only=True, config=_offline_config())


def register_lake(con: duckdb.DuckDBPyConnection, lake: Location) -> None:
    """Let DuckDB read a remote lake through its fsspec filesystem (nothing for a local one)."""
    lake_at(lake).register(con)


def restrict_to_lake(con: duckdb.DuckDBPyConnection, lake: Location) -> None:
    """Limit file access to the lake (its folder, or its URL prefix) and turn off the rest."""
    roots = lake_at(lake).allowed_directories()
    allowed = ", ".join(sql_text(root.rstrip("/") + "/") for root in roots)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN) statement, with a clear message."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise CatalogError(duckdb_problem(exc)) from exc
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
            raise CatalogError(duckdb_problem(exc)) from exc
    finally:
        con.close()
    return QueryResult(columns, rows)


def duckdb_problem(exc: BaseException) -> str:
    """DuckDB's first line, and its "Did you mean ..." hint when it gives one (on a
    later line, which a first line alone would cut off)."""
    problem = first_line(exc)
    hints = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("Did you")]
    return " ".join([problem, *hints])


def _offline_config() -> dict[str, str | bool | int | float | list[str]]:
    # Stock DuckDB only: never fetch or load an extension at run time.
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
