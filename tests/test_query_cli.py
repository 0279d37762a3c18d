"""`adjudicate query` as a database shell (issue 19.1, 19.5, 18.8, 18.11), in process.

A lake of 45 approved cases (C01..C45) in one batch, built without Prefect; each
test reads its output as a user would.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adjudicate.cli import app
from tests.batch_helpers import case_row, csv_bytes, write_reference
from tests.lake_runner import run_lake

CASES = [f"C{n:02d}" for n in range(1, 46)]
IDS_SQL = "SELECT case_id FROM case_decisions ORDER BY case_id"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("query-cli")
    inbox = root / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_bytes(csv_bytes([case_row(c) for c in CASES]))
    lake = root / "lake"
    run_lake(inbox, write_reference(root / "reference"), lake)
    return lake


def query(lake: Path, *args: str, columns: int = 200) -> Result:
    return CliRunner().invoke(
        app, ["query", *args, "--lake", str(lake)], env={"COLUMNS": str(columns)}
    )


def body_lines(result: Result) -> list[str]:
    """The table's data lines (between the header rule and the bottom rule)."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("┡", "├")))
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[start + 1 : end]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("│").split("│")]


def assert_one_line_error(result: Result, message: str) -> None:
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr == f"adjudicate: error: {message}\n"


# --- rows shown, and the footer ------------------------------------------------------------


def test_a_table_shows_40_rows_and_says_how_many_there_were(lake: Path) -> None:
    result = query(lake, IDS_SQL)
    assert result.exit_code == 0, result.output
    assert [cells(line)[0] for line in body_lines(result)] == CASES[:40]
    assert result.stdout.splitlines()[-1] == "40 of 45 rows; --limit N or --limit 0 for all"


def test_limit_0_shows_every_row_and_the_count(lake: Path) -> None:
    result = query(lake, IDS_SQL, "--limit", "0")
    assert [cells(line)[0] for line in body_lines(result)] == CASES
    assert result.stdout.splitlines()[-1] == "45 rows"


def test_a_smaller_limit_and_a_large_result_count(lake: Path) -> None:
    # 45 cases x 1000 = 45,000 rows, of which 3 are shown: the count has a separator.
    sql = f"SELECT case_id, x FROM ({IDS_SQL}), range(1000) t(x) ORDER BY case_id, x"
    result = query(lake, sql, "--limit", "3")
    assert [cells(line) for line in body_lines(result)] == [
        ["C01", "0"],
        ["C01", "1"],
        ["C01", "2"],
    ]
    assert result.stdout.splitlines()[-1] == "3 of 45,000 rows; --limit N or --limit 0 for all"


def test_one_row_is_one_row(lake: Path) -> None:
    result = query(lake, "SELECT count(*) AS n FROM case_decisions")
    assert [cells(line) for line in body_lines(result)] == [["45"]]
    assert result.stdout.splitlines()[-1] == "1 row"


def test_csv_and_json_stream_every_row_unless_limited(lake: Path) -> None:
    every = query(lake, IDS_SQL, "--format", "csv")
    assert [r["case_id"] for r in csv.DictReader(io.StringIO(every.stdout))] == CASES
    three = query(lake, IDS_SQL, "--format", "csv", "--limit", "3")
    assert three.stdout == "case_id\nC01\nC02\nC03\n"
    records = json.loads(query(lake, IDS_SQL, "--format", "json").stdout)
    assert [r["case_id"] for r in records] == CASES
    two = json.loads(query(lake, IDS_SQL, "--format", "json", "--limit", "2").stdout)
    assert two == [{"case_id": "C01"}, {"case_id": "C02"}]
    none = query(lake, "SELECT 1 AS x WHERE false", "--format", "json")
    assert json.loads(none.stdout) == []


# --- width ---------------------------------------------------------------------------------


def test_a_table_fits_the_terminal_by_shortening_the_long_cells(lake: Path) -> None:
    sql = "SELECT batch_id, status, rows_in FROM batches"
    result = query(lake, sql, columns=60)
    lines = result.stdout.splitlines()
    assert all(len(line) <= 60 for line in lines), result.stdout
    ((batch_id, status, rows_in),) = [cells(line) for line in body_lines(result)]
    # One line per row; the 64-digit id cut with an ellipsis, the short cells whole.
    assert (status, rows_in) == ("PROCESSED", "45")
    assert batch_id.endswith("…") and 8 <= len(batch_id) < 64
    full = query(lake, sql, columns=200)
    ((whole, _, _),) = [cells(line) for line in body_lines(full)]
    assert len(whole) == 64 and whole.startswith(batch_id[:-1])


# --- markup and control characters ---------------------------------------------------------


def test_cells_are_text_not_markup(lake: Path) -> None:
    sql = (
        "SELECT 'PA[abc]1' AS a, '[/i]' AS b, '[bold red]x[/]' AS c, 'a' || chr(27) || '[31mb' AS d"
    )
    result = query(lake, sql)
    assert result.exit_code == 0, result.output
    assert [cells(line) for line in body_lines(result)] == [
        ["PA[abc]1", "[/i]", "[bold red]x[/]", "a\\x1b[31mb"]
    ]
    assert "\x1b" not in result.stdout


# --- bounds --------------------------------------------------------------------------------


def test_a_query_over_its_time_limit_is_stopped_with_a_message(lake: Path) -> None:
    sql = "SELECT count(*) FROM range(1000000000000)"  # hours of counting
    result = query(lake, sql, "--timeout", "0.2")
    assert_one_line_error(
        result,
        "query stopped after 0.2 s (--timeout); narrow it (WHERE, LIMIT, fewer columns) "
        "or give a larger --timeout",
    )


def test_a_query_over_its_memory_limit_is_stopped_with_a_message(lake: Path) -> None:
    # One list of 100 million integers: 800 MB, which no operator can spill.
    sql = "SELECT list(range) FROM range(100000000)"
    result = query(lake, sql, "--memory-limit", "64MiB")
    assert_one_line_error(
        result,
        "query needs more memory than its limit, 64.0 MiB (--memory-limit); "
        "narrow it or give a larger --memory-limit",
    )


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ("lots", "'lots' is not a size such as 512MB or 2GiB"),
        ("1MB", "'1MB' is below the least a query needs, 16MiB"),
    ],
)
def test_a_bad_memory_limit_is_one_line(lake: Path, size: str, problem: str) -> None:
    assert_one_line_error(
        query(lake, "SELECT 1", "--memory-limit", size), f"--memory-limit: {problem}"
    )


def test_duckdb_did_you_mean_hint_is_kept_whole(lake: Path) -> None:
    result = query(lake, "SELECT * FROM case_decisoins")
    assert_one_line_error(
        result,
        "Catalog Error: Table with name case_decisoins does not exist! "
        'Did you mean "case_decisions"?',
    )


# --- wrong paths ---------------------------------------------------------------------------


def test_query_lake_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "lake.txt"
    afile.write_text("x\n", encoding="utf-8")
    assert_one_line_error(query(afile, "SELECT 1"), f"--lake {afile}: is a file, not a folder")
    under = afile / "lake"
    assert_one_line_error(
        query(under, "SELECT 1"), f"--lake {under}: is under {afile}, a file, not a folder"
    )


# --- runs ----------------------------------------------------------------------------------


def test_runs_lists_each_run_with_counts_exit_status_and_report(lake: Path, tmp_path: Path) -> None:
    args = ["runs", "--lake", str(lake), "--reports", str(tmp_path), "--format", "json"]
    (listed,) = json.loads(CliRunner().invoke(app, args).stdout)
    run_id = listed.pop("run_id")
    started = listed.pop("started")
    assert started.endswith(" UTC") and len(started) == len("2025-01-15 02:00:00 UTC")
    # One batch of 45 valid cases: processed, nothing rejected, so exit 0; no report yet.
    assert listed == {
        "kind": "CASES",
        "batches": 1,
        "processed": 1,
        "skipped": 0,
        "rejected": 0,
        "decided": 45,
        "rows_rejected": 0,
        "exit": 0,
        "report": None,
    }
    report = tmp_path / "runs" / f"run-{run_id}.html"
    report.parent.mkdir()
    report.write_text("<html></html>", encoding="utf-8")
    (again,) = json.loads(CliRunner().invoke(app, args).stdout)
    assert again["report"] == str(report)
    table = CliRunner().invoke(app, args[:-2], env={"COLUMNS": "300"})
    assert table.stdout.splitlines()[-1] == "1 run(s), newest first"
