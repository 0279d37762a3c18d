"""The `adjudicate` command line.

Exit codes: 0 every batch processed or skipped; 1 some batch or row rejected;
2 usage or configuration error (one line on stderr, no traceback).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from claimsflow.settings import (
    DEFAULT_DATA,
    DEFAULT_INBOX,
    DEFAULT_LAKE,
    DEFAULT_REFERENCE,
    DEFAULT_REPORTS,
    RULES_DIR,
    configure_prefect_environment,
)

if TYPE_CHECKING:
    from claimsflow.storage import Location

app = typer.Typer(
    name="adjudicate",
    help="Nightly claims adjudication: run, query, explain, generate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide when piped (CI logs, files): an 80-column default folds every table cell.
out = Console(width=None if sys.stdout.isatty() else 160)

USAGE_ERROR = 2
#: The run itself failed (e.g. a Dask worker kept dying): see the flow run's log.
RUN_FAILED = 3


def _show_version(value: bool) -> None:
    if value:
        from claimsflow import __version__

        typer.echo(f"adjudicate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Nightly claims adjudication: run, query, explain, generate."""


class ExecutorChoice(StrEnum):
    """`--executor`: where the parts of a batch are decided (docs/scaling.md)."""

    local = "local"
    dask = "dask"


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit code 2."""


def fail(message: str) -> typer.Exit:
    # Plain echo, not Rich: an error is one line whatever the terminal width.
    typer.echo(f"adjudicate: error: {' '.join(message.split())}", err=True)
    return typer.Exit(USAGE_ERROR)


@app.command()
def run(
    inbox: Annotated[
        str, typer.Option(help="Folder of case batch files, or an object-store URL (s3://...).")
    ] = str(DEFAULT_INBOX),
    reference: Annotated[Path, typer.Option(help="Reference data folder.")] = DEFAULT_REFERENCE,
    lake: Annotated[
        str, typer.Option(help="Lake folder (event log, catalog), or an object-store URL.")
    ] = str(DEFAULT_LAKE),
    ruleset: Annotated[
        str | None, typer.Option(help="Rule-set version; default: in effect on the run date.")
    ] = None,
    run_date: Annotated[
        str | None, typer.Option(help="Run date YYYY-MM-DD (selects the rule set).")
    ] = None,
    rules_dir: Annotated[Path, typer.Option(help="Folder of rule-set files.")] = RULES_DIR,
    source_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of a staging database.")
    ] = None,
    source_table: Annotated[
        str | None, typer.Option(help="Staging table (with ingest_seq) to pull from.")
    ] = None,
    reports: Annotated[
        Path, typer.Option(help="Folder for the run report, Data Docs and metrics.")
    ] = DEFAULT_REPORTS,
    checks: Annotated[
        bool, typer.Option("--checks/--no-checks", help="Run the data-quality gate.")
    ] = True,
    executor: Annotated[
        ExecutorChoice,
        typer.Option(help="Where batches are decided: this process, or a Dask cluster."),
    ] = ExecutorChoice.local,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="Parts per batch, split by member (default: 1 locally, one per Dask worker).",
        ),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Scheduler of an existing Dask cluster, tcp://host:port."),
    ] = None,
    dask_workers: Annotated[
        int, typer.Option(min=1, max=256, help="Worker processes of a local Dask cluster.")
    ] = 2,
    dask_threads: Annotated[
        int, typer.Option(min=1, max=64, help="Threads per worker of a local Dask cluster.")
    ] = 1,
) -> None:
    """Run the nightly flow: adjudicate every new batch into the event log."""
    from claimsflow.partitioning import PartitioningError, check_partitionable
    from claimsflow.reference import ReferenceDataError, load_reference
    from claimsflow.rules.ruleset import RuleSetError, load_rulesets, select_ruleset

    if (source_url is None) != (source_table is None):
        raise fail("--source-url and --source-table go together")
    parts = _partitions(executor, partitions, dask_address, dask_workers)
    lake_at = _location(lake)
    inbox_at = _location(inbox)
    if source_url is None and isinstance(inbox_at, Path) and not inbox_at.is_dir():
        raise fail(f"{inbox}: inbox folder not found")
    for remote in (lake_at, inbox_at) if source_url is None else (lake_at,):
        _check_remote(remote)
    chosen_date = _parse_date(run_date, "--run-date") or dt.datetime.now(dt.UTC).date()
    # Check configuration before starting Prefect, so a mistake is one clear line.
    try:
        load_reference(reference)
        chosen = select_ruleset(load_rulesets(rules_dir), chosen_date, ruleset)
        if parts > 1:
            check_partitionable(chosen)
    except (ReferenceDataError, RuleSetError, PartitioningError) as exc:
        raise fail(str(exc)) from None
    if source_url is not None:
        # The password goes to the flow through the environment, never as a
        # parameter that Prefect would store and show.
        from claimsflow.sql_source import PASSWORD_ENV, split_password

        source_url, password = split_password(source_url)
        if password is not None:
            os.environ[PASSWORD_ENV] = password
    configure_prefect_environment()
    from flows.nightly import nightly_adjudication

    try:
        summary = nightly_adjudication(
            inbox=str(inbox),
            reference=str(reference),
            lake=str(lake),
            ruleset=ruleset,
            run_date=chosen_date,
            rules_dir=str(rules_dir),
            source_url=source_url,
            source_table=source_table,
            reports=str(reports),
            quality_checks=checks,
            executor=executor.value,
            partitions=parts,
            dask_address=dask_address,
            dask_workers=dask_workers,
            dask_threads_per_worker=dask_threads,
        )
    except Exception as exc:  # the flow failed: Prefect has logged its traceback
        typer.echo(f"adjudicate: run failed: {_first_line(exc)}", err=True)
        typer.echo(
            "adjudicate: no batch was half-recorded; batches recorded before the failure "
            "stay, and the next run goes on from there",
            err=True,
        )
        raise typer.Exit(RUN_FAILED) from None
    _print_summary(summary.batch_table(), summary.lines(), lake_at)
    raise typer.Exit(summary.exit_code)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _partitions(
    executor: ExecutorChoice, partitions: int | None, address: str | None, workers: int
) -> int:
    """The number of parts per batch, after checking the Dask options go together."""
    if executor is ExecutorChoice.local and address is not None:
        raise fail("--dask-address needs --executor dask")
    if address is not None and not re.fullmatch(r"(tcp|tls|ws|wss)://[^\s/:]+:\d+", address):
        raise fail(f"--dask-address {address!r}: expected a scheduler address, tcp://host:port")
    if partitions is not None:
        return partitions
    return 1 if executor is ExecutorChoice.local else workers


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="Read-only SQL on the catalog's views.")],
    lake: Annotated[str, typer.Option(help="Lake folder, or an object-store URL.")] = str(
        DEFAULT_LAKE
    ),
    output: Annotated[
        str, typer.Option("--format", help="Output format: table, csv or json.")
    ] = "table",
) -> None:
    """Run read-only SQL on the analyst catalog."""
    from claimsflow.catalog import CatalogError, run_query

    if output not in ("table", "csv", "json"):
        raise fail(f"--format must be table, csv or json, not {output!r}")
    try:
        result = run_query(_location(lake), sql)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    _print_rows(result.columns, result.rows, output)


@app.command()
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for reference/ and inbox/.")] = (
        DEFAULT_DATA
    ),
    cases: Annotated[int, typer.Option(min=1, help="Number of cases.")] = 2000,
    batches: Annotated[int, typer.Option(min=1, help="Number of batch files.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 7,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when the inbox already has files.")
    ] = False,
) -> None:
    """Write deterministic sample reference data and case batches."""
    from claimsflow.generate import write_sample

    inbox = out_dir / "inbox"
    if if_empty and inbox.is_dir() and any(inbox.iterdir()):
        out.print(f"{inbox} is not empty: nothing generated")
        return
    written = write_sample(out_dir, cases=cases, batches=batches, seed=seed)
    out.print(f"wrote {len(written)} file(s) under {out_dir}")


@app.command()
def explain(
    case_id: Annotated[str, typer.Argument(help="The case to explain.")],
    lake: Annotated[str, typer.Option(help="Lake folder, or an object-store URL.")] = str(
        DEFAULT_LAKE
    ),
) -> None:
    """Why a case was decided as it was: inputs, rules that fired, pricing."""
    from claimsflow.catalog import CatalogError
    from claimsflow.explain import explain_case

    try:
        text = explain_case(_location(lake), case_id)
    except CatalogError as exc:
        raise fail(str(exc)) from None
    typer.echo(text)


@app.command("what-if")
def what_if(
    date_from: Annotated[
        str, typer.Option("--from", help="First received_date to replay (YYYY-MM-DD).")
    ],
    date_to: Annotated[
        str, typer.Option("--to", help="Last received_date to replay (YYYY-MM-DD).")
    ],
    ruleset: Annotated[str, typer.Option(help="Candidate rule-set version (e.g. 2).")],
    lake: Annotated[str, typer.Option(help="Lake folder or object-store URL (read only).")] = str(
        DEFAULT_LAKE
    ),
    reference: Annotated[Path, typer.Option(help="Reference data folder.")] = DEFAULT_REFERENCE,
    rules_dir: Annotated[Path, typer.Option(help="Folder of rule-set files.")] = RULES_DIR,
    reports: Annotated[
        Path, typer.Option(help="Folder for the what-if-<timestamp>.parquet report.")
    ] = DEFAULT_REPORTS,
    sample: Annotated[int, typer.Option(min=0, help="Changed cases to show.")] = 10,
) -> None:
    """Replay a received-date range through a candidate rule set; record nothing."""
    from claimsflow.reference import ReferenceDataError, load_reference
    from claimsflow.rules.ruleset import RuleSetError, load_rulesets, select_ruleset
    from claimsflow.whatif import WhatIfError, simulate, write_report

    first = _parse_date(date_from, "--from")
    last = _parse_date(date_to, "--to")
    if first is None or last is None:  # pragma: no cover - both options are required
        raise fail("--from and --to are required")
    try:
        candidate = select_ruleset(load_rulesets(rules_dir), last, ruleset)
        result = simulate(_location(lake), load_reference(reference), candidate, first, last)
    except (ReferenceDataError, RuleSetError, WhatIfError) as exc:
        raise fail(str(exc)) from None
    path = write_report(result, reports)
    for line in result.summary_lines():
        typer.echo(line)
    for title, frame in (
        ("status changes (old -> new)", result.transitions),
        ("reason codes", result.reason_codes),
        (f"sample of changed cases (first {sample})", result.sample(sample)),
    ):
        if frame.height:
            typer.echo(title + ":")
            _print_rows(frame.columns, frame.rows(), "table")
    typer.echo(f"report: {path}")


@app.command()
def report(
    lake: Annotated[str, typer.Option(help="Lake folder or object-store URL (read only).")] = str(
        DEFAULT_LAKE
    ),
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the latest run).")
    ] = None,
    reports: Annotated[
        Path, typer.Option(help="Folder for runs/run-<id>.html and gx-data-docs/.")
    ] = DEFAULT_REPORTS,
    checks: Annotated[
        bool,
        typer.Option(
            "--checks/--no-checks", help="Run the Great Expectations data-quality checkpoint."
        ),
    ] = True,
) -> None:
    """Write a run's HTML report from the event log (exit 1 if a quality check failed)."""
    from claimsflow.quality import DriftBand
    from claimsflow.reporting.outputs import regenerate_report
    from claimsflow.reporting.runlog import RunLogError

    try:
        band = DriftBand.from_env()
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        outputs = regenerate_report(_location(lake), run_id, reports, checks=checks, band=band)
    except RunLogError as exc:
        raise fail(str(exc)) from None
    for warning in outputs.warnings:
        typer.echo(f"warning: {warning}")
    typer.echo(f"report: {outputs.report}")
    if outputs.data_docs is not None:
        typer.echo(f"data docs: {outputs.data_docs}")
    raise typer.Exit(1 if outputs.warnings else 0)


def _parse_date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} must be a date YYYY-MM-DD, not {text!r}") from None


def _location(text: str) -> Location:
    """A lake or inbox option as a local Path or an object-store location (one-line error)."""
    from claimsflow.storage import StorageError, parse_location

    try:
        return parse_location(text)
    except StorageError as exc:
        raise fail(str(exc)) from None


def _check_remote(location: Location) -> None:
    """An object-store location that cannot be listed (credentials, endpoint, bucket)
    stops the run here with one line, not with a traceback from inside the flow."""
    from claimsflow.storage import RemoteLocation, StorageError, check_reachable

    if isinstance(location, RemoteLocation):
        try:
            check_reachable(location)
        except StorageError as exc:
            raise fail(str(exc)) from None


def _print_summary(table: list[dict[str, Any]], lines: list[str], lake: Location) -> None:
    if table:
        columns = list(table[0])
        _print_rows(columns, [tuple(row[c] for c in columns) for row in table], "table")
    for line in lines:
        typer.echo(line)
    from claimsflow.catalog import catalog_path

    typer.echo(f"catalog: {catalog_path(lake)}")


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return value


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, prefixed with `'` to keep it text."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _print_rows(columns: list[str], rows: Sequence[tuple[Any, ...]], output: str) -> None:
    if output == "json":
        records = [
            {
                c: (_cell(v) if isinstance(v, dt.date) else v)
                for c, v in zip(columns, row, strict=True)
            }
            for row in rows
        ]
        sys.stdout.write(json.dumps(records, default=str, indent=None) + "\n")
        return
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(_cell(v)) for v in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(_cell(v)) for v in row])
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
