"""A nightly run without Prefect, for the crash, concurrency and access tests.

`run_lake` does what `flows/nightly.py` does with an inbox, stage for stage:
load reference data and the rule set, take the lake's writer lock, prepare the
lake and clean `_staging/`, rebuild the history, process every batch file in
name order, refresh the catalog. It runs in a fresh process each time the tests
need a process to kill or to race (`start_process`): a child forked from a
`forkserver` that has imported the pipeline once, so a process costs a fraction
of a second instead of the imports of a new interpreter (and, unlike a plain
fork, never inherits a thread pool that Polars or DuckDB started in the tests).

`lake_snapshot` reads what an analyst would see, minus the columns that differ
between two runs of the same inbox (timestamps, run ids).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import duckdb

from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.ingest.inbox import NotRead, list_inbox
from claimsflow.lake import catalog
from claimsflow.lake.lock import writer_lock
from claimsflow.pipeline.batch import BatchOutcome, RunContext
from claimsflow.pipeline.review import ReviewContext, ReviewOutcome, run_review
from claimsflow.pipeline.run import run_batches
from claimsflow.settings import RULES_DIR

RULESET_V1 = RULES_DIR / "claims-standard-v1.yaml"
WAIT_MARK = "being written by another run"


def run_lake(
    inbox: Path,
    reference: Path,
    lake: Path,
    run_id: str | None = None,
    on_wait: Callable[[str], None] | None = None,
    *,
    after_listing: Callable[[], None] | None = None,
    not_read: list[NotRead] | None = None,
) -> list[BatchOutcome]:
    """One nightly run of `inbox` into `lake`, as flows/nightly.py does it.

    `after_listing` runs between the inbox's listing and the first read (a test takes
    a file away there); the entries left unread are added to `not_read`.
    """
    reference_data = load_reference(reference)
    ruleset = load_ruleset(RULESET_V1)
    left = not_read if not_read is not None else []
    with writer_lock(lake, on_wait=on_wait, poll=0.05):
        run = RunContext(lake, reference_data, ruleset, run_id or uuid.uuid4().hex)
        listing = list_inbox(inbox)
        left += listing.not_read
        if after_listing is not None:
            after_listing()
        return run_batches(run, listing.batches, not_read=left)


def review_lake(
    review: Path,
    reference: Path,
    lake: Path,
    run_id: str | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> ReviewOutcome:
    """One review file recorded into `lake`, as `adjudicate review` does it: the lake's
    writer lock, the lake opened, the file recorded, the catalog rebuilt."""
    reference_data = load_reference(reference)
    with writer_lock(lake, on_wait=on_wait, poll=0.05):
        context = ReviewContext(lake, reference_data, run_id or uuid.uuid4().hex)
        return run_review(context, review)


# Entry points of child processes (module level, so the forkserver can import them).


def crash_review(review: Path, reference: Path, lake: Path, point: str, visit: int) -> None:
    """A review that SIGKILLs itself on the `visit`-th pass through crash point `point`."""
    os.environ["CLAIMS_CRASH_AT"] = point
    os.environ["CLAIMS_CRASH_AFTER"] = str(visit)
    review_lake(review, reference, lake)


def logged_review(review: Path, reference: Path, lake: Path, log: Path) -> None:
    """A review that writes its waiting message and its outcome (a JSON line) to `log`."""

    def say(line: str) -> None:
        with log.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    outcome = review_lake(review, reference, lake, on_wait=say)
    say(json.dumps({"source": outcome.batch.source, "status": outcome.batch.status}))


def crash_run(inbox: Path, reference: Path, lake: Path, point: str, visit: int) -> None:
    """A run that SIGKILLs itself on the `visit`-th pass through crash point `point`."""
    os.environ["CLAIMS_CRASH_AT"] = point
    os.environ["CLAIMS_CRASH_AFTER"] = str(visit)
    run_lake(inbox, reference, lake)


def logged_run(inbox: Path, reference: Path, lake: Path, log: Path) -> None:
    """A run that writes its waiting message and its outcomes (JSON lines) to `log`."""

    def say(line: str) -> None:
        with log.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    for outcome in run_lake(inbox, reference, lake, on_wait=say):
        say(json.dumps({"source": outcome.source, "status": outcome.status}))


def _context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def start_process(target: Callable[..., object], *args: Any) -> BaseProcess:
    process = _context().Process(target=target, args=args)
    process.start()
    return process


def read_log(log: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The waiting messages and the outcomes a `logged_run` wrote."""
    if not log.exists():
        return [], []
    lines = log.read_text(encoding="utf-8").splitlines()
    waits = [line for line in lines if WAIT_MARK in line]
    outcomes = [json.loads(line) for line in lines if line.startswith("{")]
    return waits, outcomes


# What analysts see.


def open_views(lake: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the catalog's views over the lake (works before any
    catalog.duckdb exists, and reads exactly what the catalog's views read)."""
    con = duckdb.connect()
    for name, select in catalog.view_definitions(lake).items():
        con.execute(f"CREATE VIEW {name} AS {select}")
    return con


DECISIONS_SQL = """
    SELECT case_id, batch_id, status, reason_codes, allowed_cents, deductible_cents,
           coinsurance_cents, paid_cents, ruleset_version, ruleset_name,
           ruleset_parameters_hash, deductible_used_before_cents
    FROM case_decisions ORDER BY case_id"""
REJECTIONS_SQL = """
    SELECT batch_id, row_number, case_id, errors, raw FROM rejections
    ORDER BY batch_id, row_number"""
BATCHES_SQL = """
    SELECT batch_id, source, status, rows_in, rows_decided, rows_rejected, reason,
           source_kind, ruleset_name, ruleset_version
    FROM batches WHERE status <> 'SKIPPED' ORDER BY batch_id"""


def lake_snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """case_decisions, rejections and PROCESSED/REJECTED batches, minus timestamps."""
    return {
        "case_decisions": con.execute(DECISIONS_SQL).fetchall(),
        "rejections": con.execute(REJECTIONS_SQL).fetchall(),
        "batches": con.execute(BATCHES_SQL).fetchall(),
    }


def file_identities(root: Path) -> dict[str, tuple[int, int, int]]:
    """Relative path -> (inode, mtime in ns, size) of every file under `root`."""
    identities = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            info = path.stat()
            identities[str(path.relative_to(root))] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return identities


def run_in_own_session(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run a command in a session of its own, output to files (not pipes: a killed
    run's temporary Prefect server would hold them open), then end whatever it
    left running in that session."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            process.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(
        command,
        process.returncode,
        out.read_text(encoding="utf-8", errors="replace"),
        err.read_text(encoding="utf-8", errors="replace"),
    )
