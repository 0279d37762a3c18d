"""`adjudicate runs`: the recent runs, read from the lake's batch records (issue 19.4).

A run is every batch record with its run_id: nightly runs (inbox files, SQL pulls)
and examiners' review files alike. Its exit status is the one `adjudicate run`
gave (docs/operations.md): 1 when a batch or a row was REJECTED, else 0. A run
that found nothing to process recorded nothing, so it is not listed.
"""

from __future__ import annotations

from claimsflow.lake.catalog import CatalogError, QueryResult, connect_read_only, duckdb_problem
from claimsflow.lake.storage import Location

_RUNS_QUERY = """
    SELECT run_id,
           strftime(timezone('UTC', min(processed_at)), '%Y-%m-%d %H:%M:%S UTC') AS started,
           string_agg(DISTINCT kind, ', ' ORDER BY kind) AS kind,
           count(*) AS batches,
           count(*) FILTER (WHERE status = 'PROCESSED') AS processed,
           count(*) FILTER (WHERE status = 'SKIPPED') AS skipped,
           count(*) FILTER (WHERE status = 'REJECTED') AS rejected,
           coalesce(sum(rows_decided), 0)::BIGINT AS decided,
           coalesce(sum(rows_rejected), 0)::BIGINT AS rows_rejected,
           CASE WHEN count(*) FILTER (WHERE status = 'REJECTED') > 0
                  OR coalesce(sum(rows_rejected), 0) > 0 THEN 1 ELSE 0 END AS exit
    FROM batches
    WHERE run_id IS NOT NULL
    GROUP BY run_id
    ORDER BY min(processed_at) DESC, run_id
    LIMIT $limit"""


def recent_runs(lake: Location, limit: int = 20) -> QueryResult:
    """The `limit` most recent runs, newest first."""
    import duckdb

    con = connect_read_only(lake)
    try:
        relation = con.execute(_RUNS_QUERY, {"limit": limit})
        columns = [d[0] for d in relation.description or []]
        return QueryResult(columns, relation.fetchall())
    except duckdb.Error as exc:
        raise CatalogError(duckdb_problem(exc)) from exc
    finally:
        con.close()
