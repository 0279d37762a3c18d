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

import contextlib
import io
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from adjudicate.interrupts import Interrupted, stop_on_signals
from adjudicate.serving import Stack
from claimsflow.ingest.inbox import NotRead
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.lock import writer_lock
from claimsflow.pipeline.batch import batch_id_of_bytes
from tests.batch_helpers import case_row, csv_bytes, write_csv, write_reference
from tests.lake_runner import (
    crash_review,
    crash_run,
    lake_snapshot,
    open_views,
    review_lake,
    run_in_own_session,
    run_lake,
    start_process,
)
from tests.prefect_support import UNMEASURED, adjudicate_run_command, cli_environment
from tests.review_helpers import first_batch, review_row, write_review

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


# A file that vanishes (or is replaced) between the inbox's listing and its reading
# (issue 18, item 6): no batch this run, nothing recorded for it, the run goes on.


@pytest.mark.parametrize(
    ("how", "reason"),
    [("vanished", "vanished after the inbox was listed"), ("folder", "is no longer a file")],
)
def test_a_file_gone_after_the_listing_is_no_batch_and_the_run_goes_on(
    world: World, tmp_path: Path, how: str, reason: str
) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(world.inbox, inbox)
    lake = tmp_path / "lake"
    second = inbox / "c_second.jsonl"

    def take_it_away() -> None:
        second.unlink()
        if how == "folder":
            second.mkdir()

    not_read: list[NotRead] = []
    outcomes = run_lake(inbox, world.reference, lake, after_listing=take_it_away, not_read=not_read)

    assert [(o.source, o.status) for o in outcomes] == [
        ("a_first.csv", "PROCESSED"),
        ("b_broken.parquet", "REJECTED"),
        ("d_third.csv", "PROCESSED"),  # the batches after it are decided
        ("e_copy.csv", "SKIPPED"),
    ]
    assert [str(n) for n in not_read] == [f"c_second.jsonl ({reason})"]
    c = world.batch_id("c_second.jsonl")
    assert not eventlog.batch_recorded(lake, c)  # no record for bytes never read
    assert sorted(p.name for p in eventlog.quarantine_dir(lake).iterdir()) == [
        world.batch_id("b_broken.parquet")
    ]
    assert list(eventlog.staging_dir(lake).iterdir()) == []
    # Back in the inbox, it is decided by the next run.
    if how == "folder":
        second.rmdir()
    second.write_bytes(world.files["c_second.jsonl"])
    again = run_lake(inbox, world.reference, lake)
    assert [(o.source, o.status) for o in again if o.status != "SKIPPED"] == [
        ("c_second.jsonl", "PROCESSED")
    ]


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


# SIGTERM and SIGINT (issue 18, item 7): `adjudicate run` on its own temporary Prefect
# server, stopped while a batch is written but not yet published.

STOPPED = (
    "adjudicate: run stopped by SIGTERM: no batch was half-recorded; batches recorded "
    "before it stay, and the next run goes on from there"
)


@pytest.mark.slow
@pytest.mark.prefect
def test_adjudicate_run_stopped_by_sigterm_leaves_no_server_and_a_consistent_lake(
    world: World, tmp_path: Path
) -> None:
    lake, stall = tmp_path / "lake", tmp_path / "stall"
    stall.mkdir()
    # No PREFECT_API_URL: the command starts (and must stop) a temporary server. The
    # 2nd publication of a fresh lake is a's (after _empty): the run waits there with
    # a's tables complete in _staging/, not yet renamed into place.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMS_", "PREFECT_"))}
    env.update(
        UNMEASURED,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        CLAIMS_STALL_AT="before-publish",
        CLAIMS_STALL_AFTER="2",
        CLAIMS_STALL_DIR=str(stall),
        COLUMNS="200",
    )
    command = adjudicate_run_command(world.inbox, world.reference, lake, tmp_path / "reports")
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 300
            while not (stall / "stalled").exists():
                assert process.poll() is None, err.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never reached the stall point"
                time.sleep(0.2)
            [aside] = eventlog.staging_dir(lake).iterdir()
            assert sorted(p.name for p in aside.iterdir()) == TABLE_FILES

            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=120)
            survivors = _alive_in_group(process.pid)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    errors = err.read_text(encoding="utf-8", errors="replace")
    assert returncode == 3, errors[-3000:]
    assert errors.splitlines()[-1] == STOPPED
    assert survivors is False  # the temporary Prefect server stopped with the command
    # Nothing half-published: only the empty pseudo-batch, _staging/ cleaned up.
    assert [p.name for p in eventlog.batches_dir(lake).iterdir()] == [eventlog.EMPTY_BATCH]
    assert list(eventlog.staging_dir(lake).iterdir()) == []
    with writer_lock(lake, timeout=1):  # released
        pass

    run_lake(world.inbox, world.reference, lake)

    assert_same_as_uninterrupted(world, lake)


def _alive_in_group(group: int) -> bool:
    """Whether any process of the process group (the command's session) is alive."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_and_sigint_raise_interrupted_until_the_block_ends() -> None:
    for number, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        before = signal.getsignal(number)
        with pytest.raises(Interrupted) as raised, stop_on_signals():
            os.kill(os.getpid(), number)
            time.sleep(5)  # interrupted at once
        assert raised.value.signal_name == name
        assert signal.getsignal(number) == before


# Reviews (spec §8): a review killed anywhere, then recorded again, leaves the lake as
# an uninterrupted review does; it never half-applies.


@dataclass(frozen=True)
class ReviewWorld:
    base: Path  # a lake whose one batch pended H1, H2 and H3 (A1 approved)
    reference: Path
    review: Path
    broken: Path  # not a review file: a REJECTED batch, quarantined
    before: dict[str, list[tuple[Any, ...]]]  # the base lake's catalog
    expected: dict[str, list[tuple[Any, ...]]]  # after the review, uninterrupted

    def fresh_lake(self, lake: Path) -> Path:
        """A copy of the base lake (without its catalog: its views name the base's files)."""
        shutil.copytree(self.base, lake, ignore=shutil.ignore_patterns(catalog.CATALOG_FILE))
        return lake


@pytest.fixture(scope="module")
def review_world(tmp_path_factory: pytest.TempPathFactory) -> ReviewWorld:
    root = tmp_path_factory.mktemp("crash-review")
    write_csv(root / "inbox" / "a.csv", first_batch())
    reference = write_reference(root / "reference")
    base = root / "base-lake"
    run_lake(root / "inbox", reference, base)
    review = write_review(
        root / "r.csv",
        [
            review_row("H2", note="records received"),
            review_row("H1"),
            review_row("H3", "DENY", "CO-50", examiner="bob.king"),
            review_row("A1"),
        ],
    )
    broken = root / "broken.csv"
    broken.write_bytes(b"case_id,decision\nH1,APPROVE\n")
    baseline = root / "baseline-lake"
    shutil.copytree(base, baseline, ignore=shutil.ignore_patterns(catalog.CATALOG_FILE))
    review_lake(review, reference, baseline)
    return ReviewWorld(
        base, reference, review, broken, catalog_snapshot(base), catalog_snapshot(baseline)
    )


def test_uninterrupted_review_decides_as_worked_out_by_hand(review_world: ReviewWorld) -> None:
    r = batch_id_of_bytes(review_world.review.read_bytes())
    reviewed = [row[:8] for row in review_world.expected["case_decisions"] if row[1] == r]
    assert reviewed == [
        # H1, after H2 in the file: used 480.00 -> deductible 20.00; (280.00 x 20 %) =
        # 56.00 coinsurance; paid 224.00.
        ("H1", r, "APPROVED", [], 30_000, 2_000, 5_600, 22_400),
        # H2: 400.00 allowed; M001 used 80.00 (A1): deductible 400.00, paid 0.
        ("H2", r, "APPROVED", [], 40_000, 40_000, 0, 0),
        ("H3", r, "DENIED", ["CO-50"], 0, 0, 0, 0),
    ]
    assert [row[:3] for row in review_world.expected["rejections"] if row[0] == r] == [(r, 4, "A1")]
    assert [row[:7] for row in review_world.expected["batches"] if row[0] == r] == [
        (r, "r.csv", "PROCESSED", 4, 3, 1, None)
    ]


# (crash point, visit, whether the killed review leaves work in _staging/). The base
# lake exists: the review's only Parquet writes are its own batch's five tables.
REVIEW_CRASHES = [
    pytest.param("after-read", 1, False, id="after-reading"),
    pytest.param("after-validation", 1, False, id="decided-not-written"),
    pytest.param("while-writing-parquet", 3, True, id="writing-the-decisions"),
    pytest.param("before-publish", 1, True, id="written-not-renamed"),
    pytest.param("after-publish", 1, False, id="published-catalog-not-refreshed"),
    pytest.param("while-refreshing-catalog", 1, True, id="catalog-built-not-renamed"),
]


@pytest.mark.parametrize(("point", "visit", "leaves_staging"), REVIEW_CRASHES)
def test_killed_review_then_rerun_equals_an_uninterrupted_review(
    review_world: ReviewWorld, tmp_path: Path, point: str, visit: int, leaves_staging: bool
) -> None:
    lake = review_world.fresh_lake(tmp_path / "lake")
    kill_review(review_world, review_world.review, lake, point, visit)
    staging = eventlog.staging_dir(lake)
    assert (staging.is_dir() and any(staging.iterdir())) is leaves_staging
    # A reader sees the review whole or not at all.
    con = open_views(lake)
    try:
        seen = lake_snapshot(con)
    finally:
        con.close()
    assert seen in (review_world.before, review_world.expected)
    for folder in eventlog.batches_dir(lake).iterdir():
        assert sorted(p.name for p in folder.iterdir()) == TABLE_FILES

    outcome = review_lake(review_world.review, review_world.reference, lake)

    assert outcome.batch.status == ("SKIPPED" if seen == review_world.expected else "PROCESSED")
    assert catalog_snapshot(lake) == review_world.expected
    assert list(eventlog.staging_dir(lake).iterdir()) == []
    counts = catalog.run_query(
        lake, "SELECT count(*) FROM decision_events WHERE decision_source = 'REVIEW'"
    ).rows
    assert counts == [(3,)]  # no decision recorded twice


def test_a_review_file_killed_after_its_quarantine_is_rejected_once(
    review_world: ReviewWorld, tmp_path: Path
) -> None:
    lake = review_world.fresh_lake(tmp_path / "lake")
    broken = batch_id_of_bytes(review_world.broken.read_bytes())
    kill_review(review_world, review_world.broken, lake, "after-quarantine", 1)
    assert not eventlog.batch_recorded(lake, broken)

    outcome = review_lake(review_world.broken, review_world.reference, lake)

    assert (outcome.batch.status, outcome.batch.reason) == (
        "REJECTED",
        "missing required column(s): reason_code, examiner",
    )
    kept = eventlog.quarantine_dir(lake) / broken
    assert sorted(p.name for p in kept.iterdir()) == ["broken.csv", "reason.txt"]
    assert catalog_snapshot(lake)["case_decisions"] == review_world.before["case_decisions"]


def kill_review(world: ReviewWorld, review: Path, lake: Path, point: str, visit: int) -> None:
    process = start_process(crash_review, review, world.reference, lake, point, visit)
    process.join(timeout=180)
    if process.is_alive():
        process.kill()
    assert process.exitcode == -signal.SIGKILL, f"{point}#{visit} did not kill the review"
