"""Concurrency (issue #7): runs racing on one inbox and lake process each batch
exactly once; readers querying during a write see a batch whole or not at all.

The runs are child processes doing what the nightly flow does (tests/lake_runner.py):
the lake's writer lock, then the batches, then the catalog.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import load_ruleset
from claimsflow.lake import catalog, eventlog
from claimsflow.lake.lock import writer_lock
from claimsflow.pipeline.batch import RunContext, batch_id_of_bytes, process_batch
from claimsflow.vocabulary import PROCESSED, REJECTED, SKIPPED
from tests.batch_helpers import case_row, csv_bytes, write_csv, write_reference
from tests.lake_runner import (
    RULESET_V1,
    logged_review,
    logged_run,
    read_log,
    run_lake,
    start_process,
)
from tests.review_helpers import first_batch, review_row, write_review

RUNS = 3


def write_inbox(inbox: Path, batches: int, rows: int) -> dict[str, int]:
    """`batches` CSV files of `rows` valid cases each (plus one unreadable file);
    returns file name -> cases it decides."""
    inbox.mkdir(parents=True)
    decided = {}
    for b in range(batches):
        name = f"batch-{b:02d}.csv"
        (inbox / name).write_bytes(csv_bytes([case_row(f"B{b:02d}-{r:05d}") for r in range(rows)]))
        decided[name] = rows
    (inbox / "broken.jsonl").write_bytes(b"[1, 2, 3]\n")
    decided["broken.jsonl"] = 0
    return decided


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_runs_waiting_on_one_lake_process_each_batch_once_and_say_so(tmp_path: Path) -> None:
    inbox, lake, logs = tmp_path / "inbox", tmp_path / "lake", tmp_path / "logs"
    decided = write_inbox(inbox, batches=3, rows=20)
    reference = write_reference(tmp_path / "reference")
    logs.mkdir()
    log_files = [logs / f"run-{i}.log" for i in range(RUNS)]
    # Hold the lake while the runs start, so that every one of them has to wait.
    with writer_lock(lake):
        runs = [start_process(logged_run, inbox, reference, lake, log) for log in log_files]
        wait_until(
            lambda: all(read_log(log)[0] for log in log_files), 120, "every run to report waiting"
        )
    for run in runs:
        run.join(timeout=120)
        assert run.exitcode == 0

    statuses = {name: Counter[str]() for name in decided}
    for log in log_files:
        waits, outcomes = read_log(log)
        # The loser's clear line: which lake, who holds it, and that it waits.
        assert waits == [
            f"lake {lake} is being written by another run (pid {os.getpid()}); waiting"
        ]
        assert sorted(o["source"] for o in outcomes) == sorted(decided)
        for outcome in outcomes:
            statuses[outcome["source"]][outcome["status"]] += 1
    assert statuses == {
        "batch-00.csv": Counter({PROCESSED: 1, SKIPPED: 2}),
        "batch-01.csv": Counter({PROCESSED: 1, SKIPPED: 2}),
        "batch-02.csv": Counter({PROCESSED: 1, SKIPPED: 2}),
        "broken.jsonl": Counter({REJECTED: 1, SKIPPED: 2}),
    }
    assert_recorded_once(lake, decided)


def test_runs_started_together_without_waiting_for_each_other(tmp_path: Path) -> None:
    inbox, lake, logs = tmp_path / "inbox", tmp_path / "lake", tmp_path / "logs"
    decided = write_inbox(inbox, batches=4, rows=500)
    reference = write_reference(tmp_path / "reference")
    logs.mkdir()
    log_files = [logs / f"run-{i}.log" for i in range(RUNS)]
    runs = [start_process(logged_run, inbox, reference, lake, log) for log in log_files]
    for run in runs:
        run.join(timeout=120)
        assert run.exitcode == 0
    firsts: Counter[str] = Counter()
    for log in log_files:
        _waits, outcomes = read_log(log)
        assert sorted(o["source"] for o in outcomes) == sorted(decided)
        firsts.update(o["source"] for o in outcomes if o["status"] != SKIPPED)
    assert firsts == Counter(dict.fromkeys(decided, 1))
    assert_recorded_once(lake, decided)


def assert_recorded_once(lake: Path, decided: dict[str, int]) -> None:
    result = catalog.run_query(
        lake,
        "SELECT source, status, count(*), sum(rows_decided) FROM batches GROUP BY ALL ORDER BY ALL",
    )
    expected = []
    for name, cases in sorted(decided.items()):
        first = REJECTED if name == "broken.jsonl" else PROCESSED
        expected += [(name, first, 1, cases), (name, SKIPPED, RUNS - 1, 0)]
    assert result.rows == expected
    counts = catalog.run_query(
        lake,
        "SELECT (SELECT count(*) FROM decision_events), (SELECT count(DISTINCT case_id) "
        "FROM decision_events), (SELECT count(*) FROM case_payloads)",
    )
    total = sum(decided.values())
    assert counts.rows == [(total, total, total)]
    assert list(eventlog.staging_dir(lake).iterdir()) == []


def test_a_batch_recorded_by_another_writer_in_between_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the lock, the rename into events/batches/<id> is the last line of
    defence: the writer that loses it records a skip and publishes nothing."""
    lake = tmp_path / "lake"
    reference = load_reference(write_reference(tmp_path / "reference"))
    run = RunContext(lake, reference, load_ruleset(RULESET_V1), "run-1")
    eventlog.ensure_lake(lake)
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes([case_row("C1"), case_row("C2", member_id="M999")]))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"7\n")
    first = [process_batch(path, run) for path in (good, bad)]
    assert [o.status for o in first] == [PROCESSED, REJECTED]
    before = sorted(p.name for p in eventlog.batches_dir(lake).iterdir())

    # A second writer that checked before the first one's rename became visible.
    monkeypatch.setattr(eventlog, "batch_recorded", lambda lake, batch_id: False)
    second = [process_batch(path, run) for path in (good, bad)]

    assert [o.status for o in second] == [SKIPPED, SKIPPED]
    assert sorted(p.name for p in eventlog.batches_dir(lake).iterdir()) == before
    assert list(eventlog.staging_dir(lake).iterdir()) == []
    catalog.refresh_catalog(lake)
    rows = catalog.run_query(
        lake, "SELECT source, status, rows_decided FROM batches ORDER BY status, source"
    ).rows
    assert rows == [
        ("good.csv", PROCESSED, 2),
        ("bad.jsonl", REJECTED, 0),
        ("bad.jsonl", SKIPPED, 0),
        ("good.csv", SKIPPED, 0),
    ]


@pytest.mark.slow
def test_readers_during_a_run_see_each_batch_whole_or_not_at_all(tmp_path: Path) -> None:
    inbox, lake = tmp_path / "inbox", tmp_path / "lake"
    decided = write_inbox(inbox, batches=8, rows=3000)
    reference = write_reference(tmp_path / "reference")
    eventlog.ensure_lake(lake)
    catalog.refresh_catalog(lake)  # the catalog analysts query before the run
    names = sorted(n for n, cases in decided.items() if cases)
    sql = "SELECT batch_id, count(*) FROM case_decisions GROUP BY batch_id"
    by_id = {batch_id_of_bytes((inbox / n).read_bytes()): n for n in names}

    def per_batch() -> dict[str, int]:
        """What a reader sees: decided cases per batch, through `adjudicate query`'s path."""
        return {by_id[str(b)]: int(str(n)) for b, n in catalog.run_query(lake, sql).rows}

    writer = start_process(run_lake, inbox, reference, lake)
    observed: list[dict[str, int]] = []
    while writer.is_alive() or not observed:
        observed.append(per_batch())
    writer.join(timeout=120)
    assert writer.exitcode == 0
    observed.append(per_batch())

    for counts in observed:
        # Each batch is complete or absent, and batches appear in the run's order.
        assert counts == {name: decided[name] for name in names[: len(counts)]}
    assert observed[-1] == {name: decided[name] for name in names}
    assert len({len(counts) for counts in observed}) > 1  # the readers saw the run progress


def test_a_review_and_a_run_on_one_lake_never_interleave(tmp_path: Path) -> None:
    """Spec §8: one writer per lake. A run (B1) and a review (H2) of the same member-year
    started together end as one of the two serial orders, worked out by hand."""
    inbox, lake, logs = tmp_path / "inbox", tmp_path / "lake", tmp_path / "logs"
    reference = write_reference(tmp_path / "reference")
    write_csv(inbox / "a.csv", first_batch())
    run_lake(inbox, reference, lake)  # A1 approved (80.00 deductible); H1, H2, H3 pended
    b1 = case_row(
        "B1",
        service_date="2024-08-01",
        received_date="2024-08-02",
        units="2",
        billed_amount="200.00",
    )
    write_csv(inbox / "b.csv", [b1])
    review = write_review(tmp_path / "r.csv", [review_row("H2")])
    logs.mkdir()
    run_log, review_log = logs / "run.log", logs / "review.log"
    with writer_lock(lake):
        writers = [
            start_process(logged_run, inbox, reference, lake, run_log),
            start_process(logged_review, review, reference, lake, review_log),
        ]
        wait_until(
            lambda: all(read_log(log)[0] for log in (run_log, review_log)),
            120,
            "the run and the review to report waiting",
        )
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    assert read_log(review_log)[1] == [{"source": "r.csv", "status": PROCESSED}]
    got = {
        case: (deductible, coinsurance, paid, used)
        for case, deductible, coinsurance, paid, used in catalog.run_query(
            lake,
            "SELECT case_id, deductible_cents, coinsurance_cents, paid_cents, "
            "deductible_used_before_cents FROM case_decisions WHERE case_id IN ('B1', 'H2')",
        ).rows
    }
    # The run first: B1 200.00 after A1's 80.00 -> all deductible; then H2 (400.00) with
    # 280.00 used: 220.00 deductible, (180.00 x 20 %) = 36.00 coinsurance, paid 144.00.
    run_first = {"B1": (20_000, 0, 0, 8_000), "H2": (22_000, 3_600, 14_400, 28_000)}
    # The review first: H2 with 80.00 used: 400.00 deductible; then B1 with 480.00 used:
    # 20.00 deductible, (180.00 x 20 %) = 36.00 coinsurance, paid 144.00.
    review_first = {"H2": (40_000, 0, 0, 8_000), "B1": (2_000, 3_600, 14_400, 48_000)}
    assert got in (run_first, review_first)
    order = [
        row[0]
        for row in catalog.run_query(
            lake,
            "SELECT source FROM batches WHERE source IN ('b.csv', 'r.csv') "
            "AND status = 'PROCESSED' ORDER BY processed_at",
        ).rows
    ]
    assert order == (["b.csv", "r.csv"] if got == run_first else ["r.csv", "b.csv"])
