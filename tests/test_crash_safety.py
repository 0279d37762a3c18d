"""Crash safety (issue #7): a run killed with SIGKILL anywhere, then re-run, leaves
the catalog exactly as an uninterrupted run does.

Each scenario starts a run in a child process with CLAIMS_CRASH_AT naming a crash
point (claimsflow/faults.py): the process SIGKILLs itself there. The test then
checks what a reader would see in the half-done lake (only whole batches, in
order, nothing recorded twice), re-runs the inbox and compares the catalog with
that of an uninterrupted run: case_decisions without decided_at/run_id,
rejections without rejected_at, PROCESSED/REJECTED batch records without
timestamps. One scenario goes through the real `adjudicate run` command.
"""

from __future__ import annotations

import io
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from claimsflow import catalog, eventlog
from claimsflow.lake_lock import writer_lock
from claimsflow.pipeline import batch_id_of_bytes
from flows.serving import Stack
from tests.batch_helpers import case_row, csv_bytes, write_reference
from tests.lake_runner import (
    crash_run,
    lake_snapshot,
    open_views,
    run_in_own_session,
    run_lake,
    start_process,
)
from tests.prefect_support import adjudicate_run_command, cli_environment

BATCH_FILES = ("a_first.csv", "b_broken.parquet", "c_second.jsonl", "d_third.csv", "e_copy.csv")
TABLE_FILES = sorted(f"{table}.parquet" for table in eventlog.BATCH_TABLES)


def crash_inbox_files() -> dict[str, bytes]:
    """Five batch files whose decisions depend on the batches before them.

    a: two approved M001 cases (deductible consumed), an unknown member, a bad amount.
    b: a truncated Parquet file (a rejected batch, quarantined).
    c: the deductible carries over from a; C006 duplicates C001 (CO-18); C001 again
       (resubmission).
    d: M002 approved, M002 in its coverage gap (CO-27), M001 past the deductible.
    e: the bytes of a again (SKIPPED).
    """
    first = csv_bytes(
        [
            case_row("C001"),
            case_row(
                "C002",
                service_date="2024-05-02",
                received_date="2024-05-10",
                units="2",
                billed_amount="250.00",
            ),
            case_row("C003", member_id="M999"),
            case_row("C004", billed_amount="12.345"),
        ]
    )
    whole = io.BytesIO()
    pl.DataFrame([case_row("B001"), case_row("B002")]).write_parquet(whole)
    second = b"".join(
        pl.DataFrame([row]).write_ndjson().encode()
        for row in (
            case_row(
                "C005",
                service_date="2024-06-01",
                received_date="2024-06-05",
                units="4",
                billed_amount="400.00",
            ),
            case_row("C006", received_date="2024-05-20"),
            case_row("C001"),
        )
    )
    third = csv_bytes(
        [
            case_row(
                "C007",
                member_id="M002",
                service_date="2024-03-05",
                received_date="2024-03-06",
                procedure_code="J1100",
                units="10",
                billed_amount="200.00",
            ),
            case_row(
                "C008",
                member_id="M002",
                service_date="2024-02-01",
                received_date="2024-02-02",
                billed_amount="50.00",
            ),
            case_row(
                "C009",
                service_date="2024-07-01",
                received_date="2024-07-02",
                billed_amount="100.00",
            ),
        ]
    )
    return dict(
        zip(
            BATCH_FILES,
            (first, whole.getvalue()[: len(whole.getvalue()) // 2], second, third, first),
            strict=True,
        )
    )


@dataclass(frozen=True)
class World:
    inbox: Path
    reference: Path
    files: dict[str, bytes]
    expected: dict[str, list[tuple[Any, ...]]]

    def batch_id(self, name: str) -> str:
        return batch_id_of_bytes(self.files[name])

    @property
    def recorded_order(self) -> list[str]:
        """Batch ids in the order an uninterrupted run records them (e is a skip)."""
        return [self.batch_id(name) for name in BATCH_FILES[:4]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("crash")
    inbox = root / "inbox"
    inbox.mkdir()
    files = crash_inbox_files()
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    reference = write_reference(root / "reference")
    baseline = root / "baseline-lake"
    run_lake(inbox, reference, baseline)
    return World(inbox, reference, files, catalog_snapshot(baseline))


def catalog_snapshot(lake: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = catalog.connect_read_only(lake)
    try:
        return lake_snapshot(con)
    finally:
        con.close()


def test_uninterrupted_run_decides_as_worked_out_by_hand(world: World) -> None:
    decisions = [
        (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in world.expected["case_decisions"]
    ]
    a, b, c, d = world.recorded_order
    assert decisions == [
        # case, batch, status, reason codes, allowed, deductible, coinsurance, paid
        ("C001", a, "APPROVED", [], 8000, 8000, 0, 0),
        ("C002", a, "APPROVED", [], 20000, 20000, 0, 0),
        ("C003", a, "DENIED", ["CO-31"], 0, 0, 0, 0),
        ("C005", c, "APPROVED", [], 40000, 22000, 3600, 14400),
        ("C006", c, "DENIED", ["CO-18"], 0, 0, 0, 0),
        ("C007", d, "APPROVED", [], 12500, 12500, 0, 0),
        ("C008", d, "DENIED", ["CO-27"], 0, 0, 0, 0),
        ("C009", d, "APPROVED", [], 10000, 0, 2000, 8000),
    ]
    rejections = [(r[0], r[1], r[2], r[3]) for r in world.expected["rejections"]]
    assert sorted(rejections) == sorted(
        [
            (
                a,
                4,
                "C004",
                ["billed_amount: must be a decimal amount with at most 2 decimal places"],
            ),
            (
                c,
                3,
                "C001",
                ["case_id: already has a decision from an earlier batch (resubmission)"],
            ),
        ]
    )
    batches = {r[0]: r[1:7] for r in world.expected["batches"]}
    reason = batches[b][5]
    assert reason is not None
    assert reason.startswith("cannot be read as parquet")
    assert batches == {
        a: ("a_first.csv", "PROCESSED", 4, 3, 1, None),
        b: ("b_broken.parquet", "REJECTED", 0, 0, 0, reason),
        c: ("c_second.jsonl", "PROCESSED", 3, 2, 1, None),
        d: ("d_third.csv", "PROCESSED", 3, 3, 0, None),
    }


# (crash point, visit, whether the killed run leaves work in _staging/).
# On a fresh lake the first five Parquet writes and the first publication are
# the empty pseudo-batch's; then each batch writes its five tables.
CRASHES = [
    pytest.param("while-writing-parquet", 3, True, id="creating-the-empty-pseudo-batch"),
    pytest.param("after-read", 1, False, id="after-reading-a"),
    pytest.param("after-validation", 1, False, id="after-validating-a"),
    pytest.param("while-writing-parquet", 8, True, id="writing-a-third-table-of-a"),
    pytest.param("before-publish", 2, True, id="a-written-not-yet-renamed"),
    pytest.param("after-publish", 1, False, id="a-published"),
    pytest.param("after-quarantine", 1, False, id="b-quarantined-not-recorded"),
    pytest.param("before-publish", 3, True, id="b-record-written-not-renamed"),
    pytest.param("after-validation", 2, False, id="after-validating-c"),
    pytest.param("while-writing-parquet", 18, True, id="writing-a-third-table-of-c"),
    pytest.param("after-publish", 3, False, id="d-published-catalog-not-refreshed"),
    pytest.param("while-refreshing-catalog", 1, True, id="catalog-built-not-renamed"),
]


@pytest.mark.parametrize(("point", "visit", "leaves_staging"), CRASHES)
def test_killed_run_then_rerun_equals_an_uninterrupted_run(
    world: World, tmp_path: Path, point: str, visit: int, leaves_staging: bool
) -> None:
    lake = tmp_path / "lake"
    kill(world, lake, point, visit)
    staging = eventlog.staging_dir(lake)
    assert (staging.is_dir() and any(staging.iterdir())) is leaves_staging
    assert_only_whole_batches_visible(world, lake)

    run_lake(world.inbox, world.reference, lake)

    assert_same_as_uninterrupted(world, lake)


def test_killed_again_and_again_still_converges(world: World, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    # Killed after a is published; the re-run is killed writing c's third table (the
    # 8th Parquet write of that run: a is skipped, b writes 5); the next one while
    # renaming the catalog into place.
    for point, visit in [
        ("after-publish", 1),
        ("while-writing-parquet", 8),
        ("while-refreshing-catalog", 1),
    ]:
        kill(world, lake, point, visit)
        assert_only_whole_batches_visible(world, lake)
    run_lake(world.inbox, world.reference, lake)
    assert_same_as_uninterrupted(world, lake)


def test_a_dead_runs_lock_does_not_block_the_next_run(world: World, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    kill(world, lake, "after-validation", 1)  # killed while holding the writer lock
    with writer_lock(lake, timeout=5):  # the kernel released it with the process
        pass


def kill(world: World, lake: Path, point: str, visit: int) -> None:
    process = start_process(crash_run, world.inbox, world.reference, lake, point, visit)
    process.join(timeout=180)
    if process.is_alive():
        process.kill()
    assert process.exitcode == -signal.SIGKILL, f"{point}#{visit} did not kill the run"


def assert_only_whole_batches_visible(world: World, lake: Path) -> None:
    """What a reader sees in a killed run's lake: whole batches, a prefix of the run."""
    folders = sorted(p.name for p in eventlog.batches_dir(lake).iterdir())
    visible = [name for name in folders if name != eventlog.EMPTY_BATCH]
    if eventlog.EMPTY_BATCH not in folders:  # killed before the lake was first set up
        assert visible == []
        return
    for name in folders:
        assert sorted(p.name for p in (eventlog.batches_dir(lake) / name).iterdir()) == TABLE_FILES
    assert world.recorded_order[: len(visible)] == [
        batch for batch in world.recorded_order if batch in visible
    ]
    assert set(visible) <= set(world.recorded_order)
    con = open_views(lake)
    try:
        seen = lake_snapshot(con)
    finally:
        con.close()
    assert seen == {
        table: [row for row in rows if row[batch_column(table)] in visible]
        for table, rows in world.expected.items()
    }


def batch_column(table: str) -> int:
    return {"case_decisions": 1, "rejections": 0, "batches": 0}[table]


def assert_same_as_uninterrupted(world: World, lake: Path) -> None:
    assert catalog_snapshot(lake) == world.expected
    con = catalog.connect_read_only(lake)
    try:
        twice = con.execute(
            "SELECT batch_id FROM batches WHERE status <> 'SKIPPED' "
            "GROUP BY batch_id HAVING count(*) > 1"
        ).fetchall()
        events = con.execute(
            "SELECT (SELECT count(*) FROM decision_events), (SELECT count(*) FROM case_payloads),"
            " (SELECT count(*) FROM rejection_events)"
        ).fetchone()
    finally:
        con.close()
    assert twice == []  # no batch recorded twice
    assert events == (8, 8, 2)  # no decision, case or rejection recorded twice
    assert list(eventlog.staging_dir(lake).iterdir()) == []  # leftovers cleaned up
    broken = world.batch_id("b_broken.parquet")
    kept = eventlog.quarantine_dir(lake) / broken
    assert sorted(p.name for p in eventlog.quarantine_dir(lake).iterdir()) == [broken]
    assert sorted(p.name for p in kept.iterdir()) == ["b_broken.parquet", "reason.txt"]
    assert (kept / "b_broken.parquet").read_bytes() == world.files["b_broken.parquet"]


# One real `adjudicate run`, killed and re-run through the command line.


@pytest.mark.slow
@pytest.mark.prefect
def test_adjudicate_run_sigkilled_mid_run_then_rerun(
    world: World, tmp_path: Path, prefect_server: Stack
) -> None:
    lake = tmp_path / "lake"
    # The 4th publication of a fresh lake is c's (after _empty, a and b's record):
    # killed with c's folder complete in _staging/, not yet renamed into place.
    crash = {"CLAIMS_CRASH_AT": "before-publish", "CLAIMS_CRASH_AFTER": "4"}
    killed = run_cli(world, lake, tmp_path, prefect_server, crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    a, b, _c, _d = world.recorded_order
    batches = sorted(p.name for p in eventlog.batches_dir(lake).iterdir())
    assert batches == sorted([a, b, eventlog.EMPTY_BATCH])
    [leftover] = eventlog.staging_dir(lake).iterdir()
    assert sorted(p.name for p in leftover.iterdir()) == TABLE_FILES
    assert not catalog.catalog_path(lake).exists()
    assert_only_whole_batches_visible(world, lake)

    rerun = run_cli(world, lake, tmp_path, prefect_server, {})

    assert rerun.returncode == 1, rerun.stderr[-2000:]  # c has a rejected row
    assert "batches: 2 processed, 3 skipped, 0 rejected" in rerun.stdout
    assert_same_as_uninterrupted(world, lake)


def run_cli(
    world: World, lake: Path, tmp_path: Path, server: Stack, crash: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`adjudicate run` on the world's inbox, with its own Prefect home, on the
    session's Prefect server (a killed run's flow run stays Running there)."""
    env = cli_environment(server, tmp_path / "prefect-home", crash)
    command = adjudicate_run_command(world.inbox, world.reference, lake, tmp_path / "reports")
    return run_in_own_session(command, env, tmp_path)
