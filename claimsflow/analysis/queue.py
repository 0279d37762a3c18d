"""`adjudicate pended`: the examiners' work queue (spec §8), cases whose latest decision
is PENDED, read from the catalog.

A case's age is today - received_date in days: how long the claim has waited since the
payer received it (its service date can be a year older; the decision that pended it
is usually the night after receipt). Today is the local calendar date where the query
runs, as DuckDB's current_date in the catalog's `pended_queue` view.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from claimsflow.lake.catalog import QueryResult, connect_read_only, pended_queue_sql
from claimsflow.lake.storage import Location

#: What the queue shows, in order (the view has a few more columns).
QUEUE_COLUMNS: Final = (
    "case_id",
    "age_days",
    "billed",
    "member_id",
    "provider_id",
    "reason_codes",
    "received_batch_id",
    "received_date",
)

# Built from constants only; the date and the threshold are bound as parameters.
_QUEUE_QUERY = (
    f"SELECT {', '.join(QUEUE_COLUMNS)} "  # noqa: S608
    f"FROM ({pended_queue_sql('$today::DATE')}) "
    "WHERE $older_than IS NULL OR age_days > $older_than "
    "ORDER BY received_date, case_id"
)


def pended_cases(
    lake: Location, *, older_than: int | None = None, today: dt.date | None = None
) -> QueryResult:
    """The PENDED cases, oldest received first (then by case_id), with their age on
    `today` (default: the local date); only those older than `older_than` days (age
    strictly above it) when given."""
    day = today or dt.date.today()
    con = connect_read_only(lake)
    try:
        relation = con.execute(_QUEUE_QUERY, {"today": day, "older_than": older_than})
        columns = [d[0] for d in relation.description or []]
        rows = relation.fetchall()
    finally:
        con.close()
    return QueryResult(columns, rows)
