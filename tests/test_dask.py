"""`adjudicate run --executor dask` (issue 9): the same event log and catalog as the
local run, and a Dask worker killed mid-run never leaves a partial batch.

Two runs of the real command share this test (each costs tens of seconds: a
cluster start and the workers' imports): a run whose workers all die, then its
rerun, in which one worker dies once and its part is retried.

Each run is the real command on a local Dask cluster (two worker processes, three
partitions per batch) reporting to the session's Prefect server. The local run
it is compared with is the one-piece pipeline on the same inbox and reference.
"""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from adjudicate.serving import Stack
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.ingest.inbox import discover_inbox
from claimsflow.lake import catalog, eventlog
from claimsflow.pipeline.batch import RunContext, process_batch
from claimsflow.tools.generate import write_sample
from tests.conftest import RULESET_V1
from tests.prefect_support import adjudicate_run_command, cli_environment

pytestmark = [pytest.mark.prefect, pytest.mark.e2e, pytest.mark.slow]

#: Columns that say when or by which run an event was written: they differ
#: between any two runs and are left out of the comparison.
RUN_STAMPS = {
    "received_at",
    "decided_at",
    "rejected_at",
    "processed_at",
    "run_id",
}
TIMEOUT = 600


@dataclass(frozen=True)
class World:
    inbox: Path
    reference: Path
    local_lake: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A generated inbox (three batches: CSV, JSON Lines, Parquet; a few percent of
    invalid rows; repeated members, so later batches meet earlier ones' history;
    then a CSV file that is not UTF-8) and its one-piece local run.

    The dask runs prepare the CSV, JSON Lines and Parquet batches a chunk at a time
    (claimsflow/pipeline/chunked.py); the unreadable one is then read whole, and
    rejected with the one-piece run's reason."""
    root = tmp_path_factory.mktemp("dask-world")
    write_sample(root, 2400, 3, seed=9)
    first = sorted((root / "inbox").glob("*.csv"))[0].read_bytes()
    (root / "inbox" / "batch-9999.csv").write_bytes(first.replace(b"\n", b"\n\xff", 1))
    lake = root / "local-lake"
    # A clock that moves with each batch, as a real one does: the sample's later
    # batches void and replace cases of earlier ones, and the latest decision of a
    # case is the last by decided_at (a frozen clock would tie them).
    seconds = itertools.count()
    run = RunContext(
        lake,
        load_reference(root / "reference"),
        load_ruleset(RULESET_V1),
        "local",
        lambda: dt.datetime(2026, 11, 25, tzinfo=dt.UTC) + dt.timedelta(seconds=next(seconds)),
    )
    eventlog.ensure_lake(lake)
    for path in discover_inbox(root / "inbox")[0]:
        _ = process_batch(path, run)
    catalog.refresh_catalog(lake)
    return World(root / "inbox", root / "reference", lake)


def run_dask(
    world: World,
    lake: Path,
    tmp_path: Path,
    server: Stack,
    env: Mapping[str, str] = {},
    cluster: tuple[str, ...] = ("--dask-workers", "2"),
) -> subprocess.CompletedProcess[str]:
    environment = cli_environment(server, tmp_path / "prefect-home", env)
    command = adjudicate_run_command(
        world.inbox,
        world.reference,
        lake,
        tmp_path / "reports",
        "--executor",
        "dask",
        "--partitions",
        "3",
        *cluster,
    )
    return subprocess.run(
        command,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=tmp_path,
    )


def event_tables(lake: Path) -> dict[str, pl.DataFrame]:
    """Every event table, without run stamps, in a fixed row order."""
    tables = {}
    for name in eventlog.BATCH_TABLES:
        frame = eventlog.scan_table(lake, name).collect()
        frame = frame.drop(c for c in frame.columns if c in RUN_STAMPS)
        keys = [c for c in frame.columns if frame.schema[c] != pl.List(pl.String())]
        tables[name] = frame.sort(keys, nulls_last=True)
    return tables


def catalog_rows(lake: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(catalog.catalog_path(lake)), read_only=True) as con:
        return con.execute(sql).fetchall()


DECISIONS_SQL = (
    "SELECT case_id, status, reason_codes, allowed_cents, deductible_cents, "
    "coinsurance_cents, paid_cents FROM case_decisions ORDER BY case_id"
)
HITS_SQL = "SELECT case_id, rule_id, reason_code FROM rule_hits ORDER BY case_id, rule_id"


def assert_same_as_local(lake: Path, world: World) -> None:
    expected, got = event_tables(world.local_lake), event_tables(lake)
    for name in eventlog.BATCH_TABLES:
        assert got[name].equals(expected[name]), name
    for sql in (DECISIONS_SQL, HITS_SQL):
        assert catalog_rows(lake, sql) == catalog_rows(world.local_lake, sql)


def test_a_dask_run_fails_whole_on_a_killed_worker_then_records_what_the_local_run_does(
    world: World, tmp_path: Path, prefect_server: Stack
) -> None:
    lake = tmp_path / "lake"
    # Every worker that starts a part dies at once; with no retry allowed, the
    # first death fails the part, then the run.
    killed = run_dask(
        world,
        lake,
        tmp_path,
        prefect_server,
        {
            "CLAIMS_CRASH_AT": "in-partition",
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        },
    )

    assert killed.returncode == 3, killed.stderr[-3000:]
    assert "adjudicate: run failed: KilledWorker" in killed.stderr
    recorded = [p.name for p in eventlog.batches_dir(lake).iterdir()]
    assert recorded == [eventlog.EMPTY_BATCH]  # no batch, not even part of one
    assert eventlog.scan_table(lake, "decisions").collect().height == 0

    # The rerun (three batches, three parts each, on two worker processes) loses
    # one worker once: Dask retries that part on another worker, and the run ends
    # with exactly the local run's event log and catalog.
    marker = tmp_path / "crashed-once"
    rerun = run_dask(
        world,
        lake,
        tmp_path,
        prefect_server,
        {"CLAIMS_CRASH_AT": "in-partition", "CLAIMS_CRASH_ONCE": str(marker)},
    )

    assert marker.exists()  # a worker did die during the rerun
    assert rerun.returncode == 1, rerun.stderr[-3000:]  # the sample has invalid rows
    assert "batches: 3 processed, 0 skipped, 1 rejected" in rerun.stdout
    read_whole = "batch batch-9999.csv is read whole: is not valid UTF-8"
    assert read_whole in rerun.stdout + rerun.stderr
    decided = catalog_rows(world.local_lake, "SELECT count(*) FROM case_decisions")[0][0]
    assert decided > 2000  # most of the 2,400 generated rows are valid
    assert_same_as_local(lake, world)
    assert list(eventlog.staging_dir(lake).iterdir()) == []


def test_a_run_on_an_existing_scheduler_records_what_the_local_run_does(
    world: World, tmp_path: Path, prefect_server: Stack
) -> None:
    import distributed

    lake = tmp_path / "lake"
    # A cluster that is not the run's: started here, with its own worker process,
    # which reports task runs to the session's Prefect server as a deployed
    # cluster's workers would (PREFECT_API_URL in their environment).
    with distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        env={"PREFECT_API_URL": prefect_server.api_url},
    ) as cluster:
        address = cluster.scheduler_address
        result = run_dask(
            world, lake, tmp_path, prefect_server, cluster=("--dask-address", address)
        )
        with distributed.Client(address) as client:  # type: ignore[no-untyped-call]
            executed = client.run(_executed_count)

    assert result.returncode == 1, result.stderr[-3000:]
    assert f"dask on {address}, 3 partition(s)" in result.stderr + result.stdout
    # Its one worker decided every part: 3 batches x 3 parts (a member-poor part
    # can be empty, and an empty part is not sent).
    assert 7 <= sum(executed.values()) <= 9
    assert_same_as_local(lake, world)


def _executed_count(dask_worker: Any) -> int:
    return int(dask_worker.state.executed_count)
