"""Secrets and personal data (issue #7).

A SQL source URL's password is never printed, logged, stored in events, the
catalog, Prefect's database or artifacts: the command line moves it into
CLAIMS_SOURCE_PASSWORD, the flow gets the URL without it, and batch records name
the source by its URL without the password. Credentials come from that variable
or a Prefect Secret block. Log lines carry file names, case ids and counts, never
member ids or diagnosis codes, and a rejected batch's reason never quotes a cell.

PostgreSQL at 127.0.0.1:5432 (trust authentication: the password in the URL is
accepted and ignored) plays the staging database.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from adjudicate.serving import Stack
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.ingest.reading import UnreadableBatch, read_batch_bytes
from claimsflow.ingest.sql_source import (
    PASSWORD_ENV,
    SqlSourceError,
    pull_increment,
    source_label,
    split_password,
    with_password,
)
from claimsflow.lake import catalog, eventlog
from claimsflow.pipeline.batch import RunContext, process_batch
from claimsflow.vocabulary import PROCESSED, REJECTED
from tests.batch_helpers import CASE_HEADER, MEMBERS_CSV, case_row, csv_bytes, write_reference
from tests.lake_runner import RULESET_V1, run_in_own_session
from tests.prefect_support import Api, adjudicate_run_command, cli_environment, settled

CANARY = "Zq7@hunter2-CANARY"  # the fake password; "%40" in a URL
ENCODED = CANARY.replace("@", "%40")
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Personal data that must stay out of logs and output (it is in the event log).
MEMBER = "MBR-ALICE-SMITH"
DIAGNOSES = ("E11.65", "Z76.89", "F32.A")


def leaks(text: str) -> list[str]:
    """The secret or personal values found in `text`."""
    return [value for value in (CANARY, ENCODED, "hunter2", MEMBER, *DIAGNOSES) if value in text]


def test_split_password_takes_the_password_out_of_the_url() -> None:
    url = f"postgresql+psycopg://analyst:{ENCODED}@db.internal:5432/claims?sslmode=require"
    without, password = split_password(url)
    assert without == "postgresql+psycopg://analyst@db.internal:5432/claims?sslmode=require"
    assert password == CANARY
    assert with_password(without, password) == url
    assert split_password(without) == (without, None)


def test_the_source_label_is_the_url_without_its_password() -> None:
    with_secret = f"postgresql+psycopg://analyst:{ENCODED}@db.internal:5432/claims"
    label = "sql:staging@postgresql+psycopg://analyst@db.internal:5432/claims"
    # Same label (so same batch ids and high-water mark) however the password comes.
    assert source_label(with_secret, "staging") == label
    assert source_label(split_password(with_secret)[0], "staging") == label


def test_the_password_comes_from_the_environment_or_a_secret_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    import tasks.adjudication as adjudication

    pulled: list[str] = []

    def fake_pull(url: str, table: str, lake: Path, up_to: int | None = None) -> object:
        pulled.append(url)
        return object()

    monkeypatch.setattr(adjudication, "pull_increment", fake_pull)
    url = "postgresql+psycopg://analyst@db.internal:5432/claims"
    monkeypatch.setenv(PASSWORD_ENV, CANARY)
    adjudication.pull_sql_increment.fn(url, "staging", tmp_path)

    class FakeSecret:
        def get(self) -> str:
            return "from-the-block"

    monkeypatch.setattr(Secret, "load", lambda *args, **kwargs: FakeSecret())
    block = "claims-source"
    adjudication.pull_sql_increment.fn(url, "staging", tmp_path, secret_block=block)

    from_block = "from-the-block"
    assert pulled == [
        f"postgresql+psycopg://analyst:{ENCODED}@db.internal:5432/claims",
        f"postgresql+psycopg://analyst:{from_block}@db.internal:5432/claims",
    ]


def test_a_rejected_batch_reason_never_quotes_a_cell() -> None:
    header = ",".join(CASE_HEADER).encode()
    cases = [
        header + b'\nC1,"' + MEMBER.encode() + b'"x,P001,2024-05-01\n',
        header + b'\n"C1,' + MEMBER.encode() + b",P001\n",
    ]
    reasons = []
    for data in cases:
        with pytest.raises(UnreadableBatch) as raised:
            read_batch_bytes(data, "csv")
        reasons.append(str(raised.value))
    assert reasons == [
        "cannot be read as csv: a field of column 'member_id' is not properly quoted",
        "cannot be read as csv: a field of column 'case_id' is not properly quoted",
    ]


# Through the pipeline, with PostgreSQL as the staging database.


@pytest.fixture
def staging_table() -> Iterator[str]:
    engine = sa.create_engine(POSTGRES, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES} does not answer: {type(exc).__name__}")
    name = f"secrets_{uuid.uuid4().hex[:12]}"
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("ingest_seq", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.Text) for c in CASE_HEADER),
    )
    rows = [
        case_row("S1", member_id=MEMBER, diagnosis_code=DIAGNOSES[0]),
        case_row("S2", member_id=MEMBER, diagnosis_code=DIAGNOSES[1], units="0"),
    ]
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), [{"ingest_seq": i, **r} for i, r in enumerate(rows, 1)])
    yield name
    with engine.begin() as connection:
        table.drop(connection)
    engine.dispose()


def secret_url() -> str:
    return POSTGRES.replace("postgres@", f"postgres:{ENCODED}@")


def lake_text(lake: Path) -> str:
    """Everything the lake holds, as text: raw bytes of every file, and every cell of
    every Parquet file (compressed on disk) rendered as text."""
    parts = []
    for path in sorted(lake.rglob("*")):
        if not path.is_file():
            continue
        parts.append(path.read_bytes().decode("utf-8", errors="replace"))
        if path.suffix == ".parquet":
            parts.append(pl.read_parquet(path).write_ndjson())
    return "\n".join(parts)


@pytest.mark.postgres
def test_the_password_stays_out_of_the_event_log_and_catalog(
    staging_table: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    reference = load_reference(write_reference(tmp_path / "reference", members=members_csv()))
    run = RunContext(lake, reference, load_ruleset(RULESET_V1), "secret-run")
    increment = pull_increment(secret_url(), staging_table, lake)
    assert increment is not None
    outcome = process_batch(increment, run)
    catalog.refresh_catalog(lake)

    assert (outcome.status, outcome.rows_decided, outcome.rows_rejected) == (PROCESSED, 1, 1)
    assert outcome.source == f"sql:{staging_table}@{POSTGRES}"
    assert [v for v in leaks(lake_text(lake)) if v not in (MEMBER, *DIAGNOSES)] == []
    # The personal data is where it belongs: in the event log, for analysts.
    assert catalog.run_query(lake, "SELECT member_id FROM cases").rows == [(MEMBER,)]


@pytest.mark.postgres
def test_a_failing_source_does_not_show_the_password(tmp_path: Path) -> None:
    missing = f"no_such_db_{uuid.uuid4().hex[:8]}"
    url = secret_url().removesuffix("/postgres") + f"/{missing}"
    with pytest.raises(sa.exc.OperationalError) as raised:
        pull_increment(url, "staging", tmp_path / "lake")
    message = str(raised.value)
    assert f'database "{missing}" does not exist' in message
    assert leaks(message) == []
    with pytest.raises(SqlSourceError) as no_table:
        pull_increment(secret_url(), "no_such_table", tmp_path / "lake")
    assert str(no_table.value) == (f"sql:no_such_table@{POSTGRES}: no such table 'no_such_table'")


def members_csv() -> str:
    return MEMBERS_CSV + f"{MEMBER},2024-01-01,,100.00,10\n"


# The real command: output, lake and Prefect's own database (the session's server).


def recorded_by_prefect(api: Api, lake: Path) -> str:
    """All that the Prefect server holds about the run on `lake`, as JSON text: the
    flow run, its task runs, logs, artifacts and events, once the server's services
    have finished recording them."""
    [run] = [r for r in api.flow_runs() if r["parameters"].get("lake") == str(lake)]

    def recorded() -> tuple[object, ...]:
        tasks = sorted((t["name"], t["state_type"]) for t in api.task_runs(run["id"]))
        return (tasks, len(api.logs(run["id"])), len(api.events(run["id"])))

    settled(recorded)
    parts: list[object] = [
        api.flow_run(run["id"]),
        api.task_runs(run["id"]),
        api.logs(run["id"]),
        api.artifacts(run["id"]),
        api.events(run["id"]),
    ]
    return "\n".join(json.dumps(part) for part in parts)


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.postgres
def test_adjudicate_run_keeps_the_password_and_personal_data_out_of_everything(
    staging_table: str, tmp_path: Path, prefect_server: Stack
) -> None:
    inbox, lake, home = tmp_path / "inbox", tmp_path / "lake", tmp_path / "prefect-home"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(
        csv_bytes(
            [
                case_row("F1", member_id=MEMBER, diagnosis_code=DIAGNOSES[2]),
                case_row("F2", member_id=MEMBER, diagnosis_code=DIAGNOSES[0], units="0"),
            ]
        )
    )
    # A badly quoted member id: the batch is rejected, its reason names no value.
    (inbox / "b.csv").write_bytes(
        ",".join(CASE_HEADER).encode() + b'\nB1,"' + MEMBER.encode() + b'"x,P001\n'
    )
    reference = write_reference(tmp_path / "reference", members=members_csv())
    env = cli_environment(prefect_server, home, {"PREFECT_LOGGING_LEVEL": "DEBUG"})
    command = adjudicate_run_command(
        inbox,
        reference,
        lake,
        tmp_path / "reports",
        "--source-url",
        secret_url(),
        "--source-table",
        staging_table,
        gate=True,
    )
    result = run_in_own_session(command, env, tmp_path)

    assert result.returncode == 1, result.stderr[-3000:]  # rows and a batch rejected
    rows = catalog.run_query(lake, "SELECT source, status FROM batches ORDER BY source").rows
    assert rows == [
        ("a.csv", PROCESSED),
        ("b.csv", REJECTED),
        (f"sql:{staging_table}@{POSTGRES}", PROCESSED),
    ]
    assert leaks(result.stdout) == []
    assert leaks(result.stderr) == []
    assert [v for v in leaks(lake_text(lake)) if v not in (MEMBER, *DIAGNOSES)] == []
    api = Api(prefect_server.api_url)
    try:
        recorded = recorded_by_prefect(api, lake)
    finally:
        api.close()
    assert "nightly-adjudication" in recorded
    assert leaks(recorded) == []
    # And byte for byte: the client's Prefect home, the server's home (its SQLite
    # database, write-ahead log and log file).
    prefect_state = "\n".join(
        p.read_bytes().decode("utf-8", errors="replace")
        for folder in (home, prefect_server.home)
        for p in folder.rglob("*")
        if p.is_file()
    )
    assert "nightly-adjudication" in prefect_state  # the flow run is recorded there
    assert leaks(prefect_state) == []


def test_logs_name_counts_not_people(tmp_path: Path) -> None:
    """What a batch's log line and the run summary say (tasks/adjudication.py and
    claimsflow/pipeline/summary.py): the file, batch id, counts, reason."""
    from claimsflow.pipeline.summary import RunSummary

    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    reference = load_reference(write_reference(tmp_path / "reference", members=members_csv()))
    run = RunContext(lake, reference, load_ruleset(RULESET_V1), "log-run")
    path = tmp_path / "a.csv"
    path.write_bytes(
        csv_bytes([case_row("L1", member_id=MEMBER, diagnosis_code=DIAGNOSES[1], units="0")])
    )
    bad = tmp_path / "b.csv"
    bad.write_bytes(",".join(CASE_HEADER).encode() + b'\nB1,"' + MEMBER.encode() + b'"x,P001\n')
    outcomes = [process_batch(p, run) for p in (path, bad)]
    summary = RunSummary(run_id="log-run", ruleset="claims-standard v1", batches=outcomes)
    text = "\n".join([*summary.lines(), *(str(row) for row in summary.batch_table())])
    assert leaks(text) == []
    assert "rejected batch b.csv: cannot be read as csv: a field of column 'member_id'" in text
