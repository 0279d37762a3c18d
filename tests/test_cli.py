"""The `adjudicate` command line, end to end in a temporary folder (subprocesses).

Every command is launched once, by a module-scoped fixture (a few at a time), and
the tests only look at the results. The two `adjudicate run` invocations that reach
Prefect talk to the session's Prefect server (PREFECT_API_URL), each with a Prefect
home of its own, rather than starting a temporary server each.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from adjudicate.serving import Stack
from tests.batch_helpers import (
    MEMBERS_CSV,
    case_row,
    csv_bytes,
    write_csv,
    write_reference,
)

pytestmark = [pytest.mark.prefect, pytest.mark.e2e]

ADJUDICATE = str(Path(sys.executable).with_name("adjudicate"))
TIMEOUT = 420
DECISIONS_SQL = (
    "SELECT case_id, status, reason_codes, allowed_cents, paid_cents, decided_at "
    "FROM case_decisions ORDER BY case_id"
)


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class World:
    root: Path
    results: dict[str, Result]

    def __getitem__(self, name: str) -> Result:
        return self.results[name]


def _executable() -> str:
    return ADJUDICATE if Path(ADJUDICATE).exists() else "adjudicate"


def _run(
    root: Path,
    args: Sequence[str],
    prefect_home: Path | None = None,
    api_url: str | None = None,
) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(prefect_home or root / ".prefect-unused")
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    env["COLUMNS"] = "200"
    completed = subprocess.run(
        [_executable(), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(tuple(args), completed.returncode, completed.stdout, completed.stderr)


def _prepare(root: Path) -> None:
    write_reference(root / "ref")
    write_reference(root / "bad-ref", members=MEMBERS_CSV.replace(",500.00,20", ",500.00,101"))
    inbox = root / "inbox"
    write_csv(
        inbox / "a.csv",
        [
            case_row("C1"),  # APPROVED
            case_row("C2", units="0"),  # rejected row
            case_row("C3", member_id="NOBODY"),  # DENIED CO-31
        ],
    )
    (inbox / "b.jsonl").write_text(
        json.dumps(case_row("B1", member_id="M002", procedure_code="J1100")) + "\n",
        encoding="utf-8",
    )
    (inbox / "c.parquet").write_bytes(csv_bytes([case_row("X1")]))  # unreadable
    (inbox / "notes.txt").write_text("not a batch\n", encoding="utf-8")
    (inbox / ".hidden.csv").write_bytes(csv_bytes([case_row("H1")]))
    clean = root / "clean-inbox"
    write_csv(clean / "d.csv", [case_row("D1"), case_row("D2", member_id="NOBODY")])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, prefect_server: Stack) -> World:
    root = tmp_path_factory.mktemp("cli")
    _prepare(root)
    # The inbox files were written just now: take them all (no quiet period).
    run_common = ["--reference", "ref", "--ruleset", "1", "--quiet-seconds", "0"]
    first: dict[str, tuple[list[str], Path | None]] = {
        # The two Prefect runs first: each has its own Prefect home, on the session's
        # server (the other commands stop before Prefect is reached).
        "run_mixed": (["run", "--inbox", "inbox", "--lake", "lake", *run_common], root / "ph1"),
        "run_clean": (
            # The gate is exercised by run_mixed; skipping it here saves ~15 s of GX import.
            ["run", "--inbox", "clean-inbox", "--lake", "clean-lake", "--no-checks", *run_common],
            root / "ph2",
        ),
        "bad_reference": (
            ["run", "--inbox", "inbox", "--reference", "bad-ref", "--lake", "bad-lake"],
            None,
        ),
        "bad_ruleset": (
            [
                "run",
                "--inbox",
                "inbox",
                "--reference",
                "ref",
                "--lake",
                "x-lake",
                "--ruleset",
                "99",
            ],
            None,
        ),
        "missing_inbox": (
            ["run", "--inbox", "no-such-inbox", "--reference", "ref", "--lake", "y-lake"],
            None,
        ),
        "generate_1": (["generate", "--out", "gen1", "--cases", "60", "--seed", "5"], None),
        "generate_2": (["generate", "--out", "gen2", "--cases", "60", "--seed", "5"], None),
    }
    results: dict[str, Result] = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            name: pool.submit(_run, root, args, home, prefect_server.api_url if home else None)
            for name, (args, home) in first.items()
        }
        results.update({name: future.result() for name, future in futures.items()})
    second: dict[str, list[str]] = {
        "query_csv": ["query", DECISIONS_SQL, "--lake", "lake", "--format", "csv"],
        "query_json": ["query", DECISIONS_SQL, "--lake", "lake", "--format", "json"],
        "bad_format": ["query", "SELECT 1", "--lake", "lake", "--format", "xml"],
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        later = {name: pool.submit(_run, root, args) for name, args in second.items()}
        results.update({name: future.result() for name, future in later.items()})
    return World(root, results)


def _describe(result: Result) -> str:
    return (
        f"{result.args}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


#: What `run` prints at once when it starts its own Prefect server (a progress line,
#: before the flow checks the reference data and the rule set): not part of the error.
STARTING = "starting local Prefect server…"


def _assert_usage_error(result: Result, *needles: str) -> None:
    assert result.returncode == 2, _describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip() and line != STARTING]
    assert len(lines) == 1, _describe(result)
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("adjudicate: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


def _catalog_rows(lake: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(lake / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# --- run ----------------------------------------------------------------------------------


def test_run_with_rejections_exits_1_and_prints_a_summary(world: World) -> None:
    result = world["run_mixed"]
    assert result.returncode == 1, _describe(result)
    assert "Traceback" not in result.stderr
    out = result.stdout
    for name in ("a.csv", "b.jsonl", "c.parquet"):
        assert name in out, out
    assert "rows rejected: 1" in out
    assert "2 approved, 1 denied, 0 pended" in out
    assert "2 processed, 0 skipped, 1 rejected" in out
    assert "rejected batch c.parquet" in out
    assert "notes.txt" in out and ".hidden.csv" in out


def test_run_writes_the_catalog(world: World) -> None:
    lake = world.root / "lake"
    assert _catalog_rows(lake, "SELECT case_id, status FROM case_decisions ORDER BY 1") == [
        ("B1", "APPROVED"),
        ("C1", "APPROVED"),
        ("C3", "DENIED"),
    ]
    assert _catalog_rows(lake, "SELECT source, status FROM batches ORDER BY 1") == [
        ("a.csv", "PROCESSED"),
        ("b.jsonl", "PROCESSED"),
        ("c.parquet", "REJECTED"),
    ]
    assert _catalog_rows(lake, "SELECT case_id, row_number FROM rejections") == [("C2", 2)]


def test_run_leaves_the_inbox_untouched(world: World) -> None:
    inbox = world.root / "inbox"
    # Processed files may be moved to an archive, but nothing is deleted.
    for name in ("a.csv", "b.jsonl", "c.parquet"):
        kept = [p for p in world.root.rglob(name) if "quarantine" not in p.parts]
        assert kept, f"{name} was deleted"
    assert (inbox / "notes.txt").read_text(encoding="utf-8") == "not a batch\n"
    assert (inbox / ".hidden.csv").read_bytes() == csv_bytes([case_row("H1")])


def test_run_on_a_clean_inbox_exits_0(world: World) -> None:
    result = world["run_clean"]
    assert result.returncode == 0, _describe(result)
    assert "rows rejected: 0" in result.stdout
    assert "1 approved, 1 denied, 0 pended" in result.stdout
    assert _catalog_rows(world.root / "clean-lake", "SELECT count(*) FROM case_decisions") == [(2,)]


# --- usage and configuration errors -------------------------------------------------------------


def test_bad_reference_file_is_one_line_exit_2_and_writes_nothing(world: World) -> None:
    _assert_usage_error(world["bad_reference"], "members.csv", "coinsurance_percent", "row 1")
    assert not (world.root / "bad-lake").exists()


def test_unknown_ruleset_version_is_one_line_exit_2(world: World) -> None:
    _assert_usage_error(world["bad_ruleset"], "99")
    assert not (world.root / "x-lake").exists()


def test_missing_inbox_is_one_line_exit_2(world: World) -> None:
    _assert_usage_error(world["missing_inbox"], "no-such-inbox")
    assert not (world.root / "y-lake").exists()


def test_bad_query_format_is_one_line_exit_2(world: World) -> None:
    _assert_usage_error(world["bad_format"], "xml")
    assert world["bad_format"].stdout == ""


# --- query --------------------------------------------------------------------------------


def test_query_csv(world: World) -> None:
    result = world["query_csv"]
    assert result.returncode == 0, _describe(result)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["case_id"] for r in rows] == ["B1", "C1", "C3"]
    assert [r["status"] for r in rows] == ["APPROVED", "APPROVED", "DENIED"]
    assert [json.loads(r["reason_codes"]) for r in rows] == [[], [], ["CO-31"]]
    assert [int(r["allowed_cents"]) for r in rows] == [1250, 8000, 0]
    for row in rows:
        assert dt.datetime.fromisoformat(row["decided_at"]).utcoffset() is not None


def test_query_json(world: World) -> None:
    result = world["query_json"]
    assert result.returncode == 0, _describe(result)
    records = json.loads(result.stdout)
    assert [r["case_id"] for r in records] == ["B1", "C1", "C3"]
    assert [r["reason_codes"] for r in records] == [[], [], ["CO-31"]]
    assert [r["allowed_cents"] for r in records] == [1250, 8000, 0]
    assert all(isinstance(r["paid_cents"], int) for r in records)
    expected = _catalog_rows(world.root / "lake", DECISIONS_SQL)
    assert [
        (r["case_id"], r["status"], r["reason_codes"], r["allowed_cents"], r["paid_cents"])
        for r in records
    ] == [row[:5] for row in expected]
    for record, row in zip(records, expected, strict=True):
        assert dt.datetime.fromisoformat(record["decided_at"]) == row[5]


# --- generate -----------------------------------------------------------------------------


def test_generate_is_deterministic(world: World) -> None:
    for name in ("generate_1", "generate_2"):
        assert world[name].returncode == 0, _describe(world[name])
    first, second = world.root / "gen1", world.root / "gen2"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files, "generate wrote nothing"
    assert sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file()) == files
    # reviews/: the sample review file, on cases the sample pends (spec §8).
    assert {str(p.parent) for p in files} == {"inbox", "reference", "reviews"}
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
