"""Spec §7 SQL source: incremental pulls above the high-water mark, one batch per pull.

Runs against SQLite (a file in tmp_path) and the local PostgreSQL server (skipped
when it does not answer). Each test stages rows in its own table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from claimsflow.ingest.sql_source import SqlSourceError, pull_increment, source_label
from claimsflow.lake.catalog import refresh_catalog
from claimsflow.pipeline.batch import RunContext, process_batch, sql_batch_id
from claimsflow.vocabulary import PROCESSED, REJECTED
from tests.batch_helpers import RunFactory, case_row

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Staging:
    """A staging table with typed columns (date, integer, numeric) and ingest_seq."""

    url: str
    table: str
    engine: sa.Engine
    columns: tuple[str, ...]

    def insert(self, seq: int, row: dict[str, str]) -> None:
        values: dict[str, object] = {"ingest_seq": seq}
        for name in self.columns:
            text = row.get(name, "")
            if name in ("service_date", "received_date"):
                values[name] = dt.date.fromisoformat(text)
            elif name == "units":
                values[name] = int(text)
            elif name == "billed_amount":
                values[name] = Decimal(text)
            else:
                values[name] = text or None
        table = sa.Table(self.table, sa.MetaData(), autoload_with=self.engine)
        with self.engine.begin() as connection:
            connection.execute(table.insert().values(**values))

    def insert_all(self, first_seq: int, rows: Sequence[dict[str, str]]) -> None:
        for offset, row in enumerate(rows):
            self.insert(first_seq + offset, row)


def _postgres_engine() -> sa.Engine:
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} does not answer: {type(exc).__name__}: {exc}")
    return engine


def _create_table(engine: sa.Engine, name: str, columns: Sequence[str]) -> None:
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "service_date": sa.Date(),
        "received_date": sa.Date(),
        "units": sa.Integer(),
        "billed_amount": sa.Numeric(12, 2),
    }
    metadata = sa.MetaData()
    sa.Table(
        name,
        metadata,
        sa.Column("ingest_seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        *(sa.Column(c, types.get(c, sa.String(80))) for c in columns),
    )
    metadata.create_all(engine)


ALL_COLUMNS = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
    "prior_auth_id",
)


StagingFactory = Callable[..., Staging]


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.integration]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = str(request.param)
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'staging.db'}"
    else:
        _postgres_engine().dispose()
        yield POSTGRES_URL


@pytest.fixture
def make_staging(backend: str) -> Iterator[StagingFactory]:
    created: list[Staging] = []

    def make(columns: Sequence[str] = ALL_COLUMNS) -> Staging:
        name = f"staging_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(backend)
        _create_table(engine, name, columns)
        staging = Staging(backend, name, engine, tuple(columns))
        created.append(staging)
        return staging

    yield make
    for staging in created:
        with staging.engine.begin() as connection:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{staging.table}"'))
        staging.engine.dispose()


def _pull_and_process(staging: Staging, run: RunContext) -> tuple[str, str] | None:
    increment = pull_increment(staging.url, staging.table, run.lake)
    if increment is None:
        return None
    outcome = process_batch(increment, run)
    return outcome.batch_id, outcome.status


def _batches(lake: Path) -> list[tuple[object, ...]]:
    path = refresh_catalog(lake)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT batch_id, source, status, rows_in, rows_decided, rows_rejected, "
            "seq_from, seq_to FROM batches ORDER BY seq_from"
        ).fetchall()
    finally:
        con.close()


def _decisions(lake: Path) -> list[tuple[object, ...]]:
    path = refresh_catalog(lake)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT case_id, batch_id, status, allowed_cents FROM case_decisions ORDER BY case_id"
        ).fetchall()
    finally:
        con.close()


def test_incremental_pulls(make_staging: StagingFactory, make_run: RunFactory, lake: Path) -> None:
    staging = make_staging()
    staging.insert_all(
        1, [case_row("S1"), case_row("S2", units="0"), case_row("S3", member_id="X")]
    )
    label = source_label(staging.url, staging.table)

    # First pull: every row, one batch.
    run1 = make_run("sql-run-1")
    increment = pull_increment(staging.url, staging.table, lake)
    assert increment is not None
    assert increment.source == label
    assert increment.seq_range == (1, 3)
    assert increment.raw.height == 3
    assert increment.raw["case_id"].to_list() == ["S1", "S2", "S3"]
    assert increment.raw["service_date"].to_list() == ["2024-05-01"] * 3
    assert increment.raw["billed_amount"].to_list() == ["80.00"] * 3
    assert increment.raw["units"].to_list() == ["1", "0", "1"]
    outcome = process_batch(increment, run1)
    # Validation takes the columns out of the frame it is given: not the increment's
    # own, which a retried task would read again.
    assert increment.raw["case_id"].to_list() == ["S1", "S2", "S3"]
    assert increment.raw["units"].to_list() == ["1", "0", "1"]
    first_id = outcome.batch_id
    assert first_id == sql_batch_id(label, (1, 3))
    assert (outcome.status, outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (
        PROCESSED,
        3,
        2,
        1,
    )

    # Second pull, nothing new: nothing happens.
    assert pull_increment(staging.url, staging.table, lake) is None
    assert len(_batches(lake)) == 1

    # New rows above the high-water mark form the next batch.
    staging.insert_all(4, [case_row("S4", procedure_code="J1100"), case_row("S1", units="2")])
    run2 = make_run("sql-run-2")
    result = _pull_and_process(staging, run2)
    assert result is not None
    second_id, status = result
    assert status == PROCESSED
    assert second_id != first_id
    assert second_id == sql_batch_id(label, (4, 5))
    assert pull_increment(staging.url, staging.table, lake) is None

    assert _batches(lake) == [
        (first_id, label, PROCESSED, 3, 2, 1, 1, 3),
        (second_id, label, PROCESSED, 2, 1, 1, 4, 5),
    ]
    # S1 of the second pull is a resubmission; S4 is decided in the second batch.
    assert _decisions(lake) == [
        ("S1", first_id, "APPROVED", 8000),
        ("S3", first_id, "DENIED", 0),
        ("S4", second_id, "APPROVED", 1250),
    ]


def test_high_water_mark_survives_a_fresh_history(
    make_staging: StagingFactory, make_run: RunFactory, lake: Path
) -> None:
    staging = make_staging()
    staging.insert_all(10, [case_row("S1")])
    assert _pull_and_process(staging, make_run("a")) is not None
    # Rows may arrive with gaps in ingest_seq; only the ones above the mark are new.
    staging.insert_all(20, [case_row("S2", procedure_code="J1100")])
    increment = pull_increment(staging.url, staging.table, lake)
    assert increment is not None
    assert increment.seq_range == (20, 20)
    assert increment.raw["case_id"].to_list() == ["S2"]


def test_rows_with_missing_required_column_form_a_rejected_batch(
    make_staging: StagingFactory, make_run: RunFactory, lake: Path
) -> None:
    columns = tuple(c for c in ALL_COLUMNS if c != "billed_amount")
    staging = make_staging(columns)
    staging.insert_all(1, [case_row("S1"), case_row("S2")])
    increment = pull_increment(staging.url, staging.table, lake)
    assert increment is not None
    assert increment.problem is not None and "billed_amount" in increment.problem
    outcome = process_batch(increment, make_run("r"))
    assert outcome.status == REJECTED
    assert outcome.reason is not None and "billed_amount" in outcome.reason
    [record] = _batches(lake)
    assert record[2:] == (REJECTED, 0, 0, 0, 1, 2)
    assert _decisions(lake) == []
    # The rejected range is not pulled again.
    assert pull_increment(staging.url, staging.table, lake) is None


def test_table_without_ingest_seq_is_an_error(backend: str, lake: Path) -> None:
    engine = sa.create_engine(backend)
    name = f"noseq_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE TABLE "{name}" (case_id VARCHAR(10))'))
        with pytest.raises(SqlSourceError, match="ingest_seq"):
            pull_increment(backend, name, lake)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        engine.dispose()


def test_missing_table_is_an_error(backend: str, lake: Path) -> None:
    name = f"absent_{uuid.uuid4().hex[:12]}"
    with pytest.raises(SqlSourceError, match=name):
        pull_increment(backend, name, lake)


def test_source_label_hides_the_password() -> None:
    label = source_label("postgresql+psycopg://user:secret@db.example:5432/claims", "staging")
    assert "secret" not in label
    assert label.startswith("sql:staging@")
