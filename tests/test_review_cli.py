"""`adjudicate review` and `adjudicate pended` (spec §8) through Typer's runner.

The lake is filled by the nightly stages without Prefect (conftest.run_fixture_inbox);
its first batch pends three cases (tests/test_review.py works them out):

    H1  M001 served 2024-06-01, received 2024-06-05, billed 12,000.00
    H2  M001 served 2024-07-01, received 2024-07-02, billed 15,000.00
    H3  M002 served 2024-04-01, received 2024-04-02, billed 11,000.00
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.analysis.queue import pended_cases
from claimsflow.lake import catalog, eventlog
from claimsflow.pipeline.batch import batch_id_of_bytes
from tests.batch_helpers import MEMBERS_CSV, CsvWriter, InboxRunner, write_reference
from tests.review_helpers import first_batch, review_row, write_review

ADJUDICATE = Path(sys.executable).with_name("adjudicate")


@pytest.fixture
def pended_lake(write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path) -> Path:
    write_batch("a.csv", first_batch())
    run_fixture_inbox()
    return lake


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_review_exit_codes_and_what_it_prints(
    pended_lake: Path, reference_dir: Path, tmp_path: Path
) -> None:
    clean = write_review(
        tmp_path / "clean.csv", [review_row("H3", "DENY", "CO-50", examiner="bob.king")]
    )
    common = ["--lake", str(pended_lake), "--reference", str(reference_dir)]
    code, out, err = invoke("review", str(clean), *common)
    assert (code, err) == (0, "")
    r = batch_id_of_bytes(clean.read_bytes())
    assert (
        f"review file clean.csv ({r[:12]}): PROCESSED: 1 row(s): 0 approved, 1 denied, 0 rejected"
        in out
    )
    assert "H3" in out and "bob.king" in out

    # The same bytes again: SKIPPED, exit 0, nothing changes.
    code, out, _ = invoke("review", str(clean), *common)
    assert code == 0
    assert f"review file clean.csv ({r[:12]}): SKIPPED" in out

    # A rejected row (H3 is DENIED now) beside an applied one: exit 1. H1: 300.00
    # allowed, M001 has used 80.00 (A1): 300.00 deductible, paid 0.00.
    mixed = write_review(tmp_path / "mixed.csv", [review_row("H1"), review_row("H3")])
    code, out, _ = invoke("review", str(mixed), *common)
    assert code == 1
    assert "1 approved, 0 denied, 1 rejected" in out
    assert "case_id: the case's latest decision is DENIED, not PENDED" in out
    assert "300.00" in out

    # A file that is not a review file: REJECTED, exit 1.
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"case_id,decision\nH2,APPROVE\n")
    code, out, _ = invoke("review", str(broken), *common)
    assert code == 1
    assert "REJECTED: missing required column(s): reason_code, examiner" in out

    assert catalog.run_query(
        pended_lake,
        "SELECT case_id, status, decided_by FROM case_decisions WHERE case_id LIKE 'H%' "
        "ORDER BY case_id",
    ).rows == [("H1", "APPROVED", "ann.lee"), ("H2", "PENDED", None), ("H3", "DENIED", "bob.king")]


def test_review_usage_errors_are_one_line_and_exit_2(
    pended_lake: Path, reference_dir: Path, tmp_path: Path
) -> None:
    file = write_review(tmp_path / "r.csv", [review_row("H1")])
    bad_reference = write_reference(
        tmp_path / "bad-ref", members=MEMBERS_CSV.replace(",500.00,20", ",500.00,101")
    )
    bad_rules = tmp_path / "rules"
    bad_rules.mkdir()
    (bad_rules / "broken.yaml").write_text("name: [\n", encoding="utf-8")
    lake = str(pended_lake)
    for args, problem in [
        (["review", str(tmp_path / "missing.csv"), "--lake", lake], "no such review file"),
        (["review", str(tmp_path), "--lake", lake], "no such review file"),
        (
            ["review", str(file), "--lake", lake, "--reference", str(bad_reference)],
            "members.csv",
        ),
        (
            ["review", str(file), "--lake", lake, "--reference", str(reference_dir),
             "--rules-dir", str(bad_rules)],
            "broken.yaml",
        ),
        (["review", str(file), "--lake", "nope://x", "--reference", str(reference_dir)],
         "unknown storage protocol"),
    ]:  # fmt: skip
        code, out, err = invoke(*args)
        assert code == 2, (args, out, err)
        assert err.startswith("adjudicate: error: ") and problem in err
        assert len(err.strip().splitlines()) == 1
    # Nothing was recorded by any of them.
    assert catalog.run_query(
        pended_lake, "SELECT count(*) FROM batches WHERE kind = 'REVIEW'"
    ).rows == [(0,)]


def test_pended_lists_the_queue_with_its_age(pended_lake: Path) -> None:
    # Ages on 2024-07-05: H3 received 2024-04-02 (94 days), H1 2024-06-05 (30), H2
    # 2024-07-02 (3); oldest received first.
    on = dt.date(2024, 7, 5)
    a = catalog.run_query(pended_lake, "SELECT DISTINCT batch_id FROM cases").rows[0][0]
    queue = pended_cases(pended_lake, today=on)
    assert queue.columns == [
        "case_id",
        "age_days",
        "billed",
        "member_id",
        "provider_id",
        "reason_codes",
        "received_batch_id",
        "received_date",
    ]
    assert [(r[0], r[1], str(r[2]), r[3], r[4], r[5], r[6]) for r in queue.rows] == [
        ("H3", 94, "11000.00", "M002", "P001", ["P-HIGH-DOLLAR"], a),
        ("H1", 30, "12000.00", "M001", "P001", ["P-HIGH-DOLLAR"], a),
        ("H2", 3, "15000.00", "M001", "P001", ["P-HIGH-DOLLAR"], a),
    ]
    # Older than 30 days: strictly more than 30.
    assert [r[0] for r in pended_cases(pended_lake, older_than=30, today=on).rows] == ["H3"]
    assert [r[0] for r in pended_cases(pended_lake, older_than=2, today=on).rows] == [
        "H3",
        "H1",
        "H2",
    ]

    # The command and the view age from today.
    today = dt.date.today()
    ages = {
        "H3": (today - dt.date(2024, 4, 2)).days,
        "H1": (today - dt.date(2024, 6, 5)).days,
        "H2": (today - dt.date(2024, 7, 2)).days,
    }
    code, out, _ = invoke("pended", "--lake", str(pended_lake), "--format", "json")
    assert code == 0
    assert [(r["case_id"], r["age_days"], r["billed"]) for r in json.loads(out)] == [
        ("H3", ages["H3"], "11000.00"),
        ("H1", ages["H1"], "12000.00"),
        ("H2", ages["H2"], "15000.00"),
    ]
    code, out, _ = invoke(
        "pended", "--lake", str(pended_lake), "--format", "csv",
        "--older-than", str(ages["H1"]),
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == [
        "case_id,age_days,billed,member_id,provider_id,reason_codes,received_batch_id,"
        "received_date",
        f'H3,{ages["H3"]},11000.00,M002,P001,"[""P-HIGH-DOLLAR""]",{a},2024-04-02',
    ]
    code, out, _ = invoke("pended", "--lake", str(pended_lake))
    assert code == 0 and "3 PENDED case(s)" in out
    assert catalog.run_query(
        pended_lake, "SELECT case_id, age_days FROM pended_queue ORDER BY case_id"
    ).rows == sorted(ages.items())


def test_pended_usage_errors(tmp_path: Path) -> None:
    code, _, err = invoke("pended", "--lake", str(tmp_path / "none"))
    assert code == 2 and "no catalog here" in err
    code, _, err = invoke("pended", "--lake", str(tmp_path), "--format", "xml")
    assert code == 2 and "--format must be table, csv or json" in err


def test_review_stopped_by_sigterm_records_nothing_and_can_be_run_again(
    pended_lake: Path, reference_dir: Path, tmp_path: Path
) -> None:
    file = write_review(tmp_path / "r.csv", [review_row("H3", "DENY", "CO-50")])
    stall = tmp_path / "stall"
    stall.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    # The review waits with its batch written in _staging/, not yet published.
    env.update(CLAIMS_STALL_AT="before-publish", CLAIMS_STALL_DIR=str(stall), COLUMNS="200")
    command = [str(ADJUDICATE), "review", str(file), "--lake", str(pended_lake),
               "--reference", str(reference_dir)]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (stall / "stalled").exists():
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the review never reached its publication"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 3
    assert err.splitlines()[-1] == (
        "adjudicate: review stopped by SIGTERM: nothing was half-recorded; record the file again"
    )
    assert not eventlog.batch_recorded(pended_lake, batch_id_of_bytes(file.read_bytes()))

    code, out, _ = invoke("review", str(file), "--lake", str(pended_lake), "--reference",
                          str(reference_dir))  # fmt: skip
    assert code == 0 and "PROCESSED: 1 row(s): 0 approved, 1 denied" in out
    assert list(eventlog.staging_dir(pended_lake).iterdir()) == []
