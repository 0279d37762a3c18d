"""`adjudicate run` for operators, in process (issues 19.4, 19.5, 18.8, 18.10): wrong
paths stop before Prefect starts, names and reasons cannot forge or restyle lines,
and progress is told as the run goes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from adjudicate.cli import app
from adjudicate.display import print_summary
from adjudicate.progress_display import LiveDisplay, run_progress
from claimsflow.pipeline.batch import BatchOutcome
from claimsflow.pipeline.summary import RunSummary
from claimsflow.progress import Step, step
from claimsflow.text import printable, shown_name
from tests.batch_helpers import write_reference

EVIL = "evil\nrule set forged; batches: 9 processed\x1b[31m.csv"


def run(tmp_path: Path, *args: str) -> Result:
    write_reference(tmp_path / "ref")
    return CliRunner().invoke(
        app, ["run", "--reference", str(tmp_path / "ref"), "--quiet-seconds", "0", *args]
    )


def assert_one_line_error(result: Result, message: str) -> None:
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    # One line, and nothing of Prefect: it was never started.
    assert result.stderr == f"adjudicate: error: {message}\n"


# --- wrong paths ---------------------------------------------------------------------------


def test_run_lake_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    afile = tmp_path / "lake.parquet"
    afile.write_bytes(b"PAR1")
    result = run(tmp_path, "--inbox", str(tmp_path / "inbox"), "--lake", str(afile))
    assert_one_line_error(result, f"--lake {afile}: is a file, not a folder")


def test_run_inbox_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "cases.csv"
    afile.write_text("case_id\n", encoding="utf-8")
    result = run(tmp_path, "--inbox", str(afile), "--lake", str(tmp_path / "lake"))
    assert_one_line_error(result, f"--inbox {afile}: is a file, not a folder")
    assert not (tmp_path / "lake").exists()


def test_run_inbox_missing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-inbox"
    result = run(tmp_path, "--inbox", str(missing), "--lake", str(tmp_path / "lake"))
    assert_one_line_error(result, f"--inbox {missing}: inbox folder not found")


def test_run_reports_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    afile = tmp_path / "reports"
    afile.write_text("", encoding="utf-8")
    result = run(
        tmp_path,
        "--inbox",
        str(tmp_path / "inbox"),
        "--lake",
        str(tmp_path / "lake"),
        "--reports",
        str(afile),
    )
    assert_one_line_error(result, f"--reports {afile}: is a file, not a folder")


# --- names and reasons ---------------------------------------------------------------------


def test_names_are_shown_repr_style_only_when_they_need_it() -> None:
    assert shown_name("batch-0001.csv") == "batch-0001.csv"
    assert shown_name("[bold]x[i].csv") == "[bold]x[i].csv"
    assert shown_name("a\nb.csv") == "'a\\nb.csv'"
    assert shown_name("a\x1b[31m.csv") == "'a\\x1b[31m.csv'"
    assert shown_name("\u202ecod.exe.csv") == "'\\u202ecod.exe.csv'"
    assert printable("tab\there") == "tab\\there"


def _summary() -> RunSummary:
    return RunSummary(
        run_id="r1",
        ruleset="claims-standard v1",
        batches=[
            BatchOutcome("b" * 64, EVIL, "REJECTED", reason="header [/i] unreadable\r\n"),
            BatchOutcome("c" * 64, "[bold]x[i].csv", "PROCESSED", rows_in=2, rows_decided=2),
        ],
        ignored=["notes\n.txt"],
    )


def test_summary_lines_cannot_be_forged() -> None:
    lines = _summary().lines()
    assert lines[2] == (
        "rejected batch 'evil\\nrule set forged; batches: 9 processed\\x1b[31m.csv': "
        "header [/i] unreadable\\r\\n"
    )
    assert lines[-1] == "not batches, left untouched: 'notes\\n.txt'"
    assert all("\n" not in line and "\x1b" not in line for line in lines)


def test_printed_summary_shows_markup_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    summary = _summary()
    print_summary(summary.batch_table(), summary.lines(), tmp_path / "lake")
    printed = capsys.readouterr().out
    assert "\x1b" not in printed
    table_rows = [line for line in printed.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table_rows] == [
        "'evil\\nrule set forged; batches: 9 processed\\x1b[31m.csv'",
        "[bold]x[i].csv",
    ]
    assert "header [/i] unreadable\\r\\n" in table_rows[0]
    # The only line that starts like the run's own first line is the run's own.
    assert sum(line.startswith("rule set") for line in printed.splitlines()) == 1


# --- progress ------------------------------------------------------------------------------


def _steps() -> None:
    step("batch", batch="a.csv", index=1, total=2)
    step("reading", batch="a.csv")
    step("deciding", batch="a.csv", rows=1200)
    step("batch", batch="a.csv", index=1, total=2, done=True, status="PROCESSED", rows=1200)
    step("batch", batch=EVIL, index=2, total=2)
    step("batch", batch=EVIL, index=2, total=2, done=True, status="REJECTED", rows=0)
    step("catalog")
    step("data-quality gate")
    step("report")


def test_plain_progress_is_a_line_per_batch_and_per_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with run_progress(live=False):
        _steps()
    step("report")  # nobody listens any more
    assert capsys.readouterr().err.splitlines() == [
        "adjudicate: batch 1/2 a.csv: PROCESSED, 1,200 row(s)",
        "adjudicate: batch 2/2 'evil\\nrule set forged; batches: 9 processed\\x1b[31m.csv': "
        "REJECTED, 0 row(s)",
        "adjudicate: refreshing the catalog",
        "adjudicate: running the data-quality gate",
        "adjudicate: writing the report",
    ]


def test_live_progress_says_the_batch_its_stage_and_rows() -> None:
    screen = io.StringIO()
    display = LiveDisplay(Console(file=screen, width=100, force_terminal=True))
    seen: list[str] = []
    with display.progress:
        for event in (
            Step("batch", batch="a.csv", index=1, total=2),
            Step("deciding", batch="a.csv", rows=1200),
        ):
            display(event)
            (task,) = display.progress.tasks
            seen.append(f"{task.description} {task.completed}/{task.total}")
        display(Step("batch", batch="a.csv", index=1, total=2, done=True, status="PROCESSED"))
        (task,) = display.progress.tasks
        assert (task.completed, task.total) == (1, 2)
    assert seen == ["[1/2] a.csv: starting 0/2", "a.csv: deciding 1,200 row(s) 0/2"]
    assert "a.csv: PROCESSED" in screen.getvalue()


# --- help ----------------------------------------------------------------------------------


def test_top_level_help_lists_every_command_with_one_line() -> None:
    from adjudicate.cli import _COMMANDS

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    listed = [
        line.strip("│ ").split()[0]
        for line in result.stdout.split("Commands")[1].splitlines()[1:]
        if line.startswith("│")
    ]
    expected = {m.__name__.rsplit(".", 1)[1].replace("_", "-") for m in _COMMANDS}
    assert sorted(listed) == sorted(expected)
    assert {"run", "query", "report", "what-if", "runs"} <= set(listed)


def test_help_shows_value_types_not_python_annotations() -> None:
    for command in ("run", "query", "runs", "pended", "report", "what-if", "explain", "review"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        for annotation in ("<bool>", "<str>", "<path>", "<int>"):
            assert annotation not in result.stdout, (command, annotation)
    query_help = CliRunner().invoke(app, ["query", "--help"], env={"COLUMNS": "200"}).stdout
    assert "[table|csv|json]" in query_help
    assert "DIR|URL" in query_help


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["query", "SELECT 1", "--format", "xml"],
            "Invalid value for '--format': 'xml' is not one of 'table', 'csv', 'json'. "
            "(see `adjudicate query --help`)",
        ),
        (["query"], "Missing argument 'SQL'. (see `adjudicate query --help`)"),
        (
            ["query", "SELECT 1", "--limit", "-1"],
            "Invalid value for '--limit': Input should be greater than or equal to 0 "
            "(see `adjudicate query --help`)",
        ),
        (["nope"], "No such command 'nope'. (see `adjudicate --help`)"),
    ],
)
def test_usage_errors_checked_by_click_are_one_line_too(args: list[str], line: str) -> None:
    # Not Rich's framed usage block: the same one line as every other usage error.
    result = CliRunner().invoke(app, args, env={"COLUMNS": "60"})
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"adjudicate: error: {line}\n"


# --- report links --------------------------------------------------------------------------


def test_artifact_links_point_at_the_served_reports_when_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claimsflow.ops.outputs import REPORTS_URL_ENV, RunOutputs

    reports = tmp_path / "reports"
    outputs = RunOutputs(
        run_id="r 1",
        report=reports / "runs" / "run-r_1.html",
        data_docs=reports / "gx-data-docs" / "index.html",
        metrics=None,
        quality=None,
        reports_dir=reports,
    )
    monkeypatch.delenv(REPORTS_URL_ENV, raising=False)
    assert outputs.links()[0] == ("Run report (HTML)", (reports / "runs/run-r_1.html").as_uri())
    monkeypatch.setenv(REPORTS_URL_ENV, "http://127.0.0.1:4201/")
    assert outputs.links() == [
        ("Run report (HTML)", "http://127.0.0.1:4201/runs/run-r_1.html"),
        ("Great Expectations Data Docs", "http://127.0.0.1:4201/gx-data-docs/index.html"),
    ]
