"""`adjudicate run`: the nightly flow on this machine's Prefect (or PREFECT_API_URL)."""

from __future__ import annotations

import atexit
import datetime as dt
import os
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adjudicate.app import RUN_FAILED, app, fail
from adjudicate.display import print_summary
from adjudicate.interrupts import Interrupted, stop_on_signals, stop_temporary_server
from adjudicate.options import check_remote, existing_folder_or_url, location, parse_date
from adjudicate.prefect_env import (
    TemporaryServer,
    TemporaryServerError,
    configure_prefect_environment,
    prefect_api,
)
from adjudicate.progress_display import run_progress
from claimsflow.settings import (
    DEFAULT_INBOX,
    DEFAULT_LAKE,
    DEFAULT_QUIET_SECONDS,
    DEFAULT_REFERENCE,
    DEFAULT_REPORTS,
    RULES_DIR,
)
from claimsflow.text import first_line, shown_name

if TYPE_CHECKING:
    from claimsflow.pipeline.summary import RunSummary


class ExecutorChoice(StrEnum):
    """`--executor`: where the parts of a batch are decided (docs/scaling.md)."""

    local = "local"
    dask = "dask"


@app.command()
def run(
    inbox: Annotated[
        str,
        typer.Option(
            metavar="DIR|URL", help="Folder of case batch files, or an object-store URL (s3://...)."
        ),
    ] = str(DEFAULT_INBOX),
    reference: Annotated[
        Path, typer.Option(metavar="DIR", help="Reference data folder.")
    ] = DEFAULT_REFERENCE,
    lake: Annotated[
        str,
        typer.Option(
            metavar="DIR|URL", help="Lake folder (event log, catalog), or an object-store URL."
        ),
    ] = str(DEFAULT_LAKE),
    ruleset: Annotated[
        str | None,
        typer.Option(
            metavar="VERSION", help="Rule-set version; default: in effect on the run date."
        ),
    ] = None,
    run_date: Annotated[
        str | None, typer.Option(metavar="DATE", help="Run date YYYY-MM-DD (selects the rule set).")
    ] = None,
    rules_dir: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder of rule-set files.")
    ] = RULES_DIR,
    source_url: Annotated[
        str | None, typer.Option(metavar="URL", help="SQLAlchemy URL of a staging database.")
    ] = None,
    source_table: Annotated[
        str | None,
        typer.Option(metavar="TABLE", help="Staging table (with ingest_seq) to pull from."),
    ] = None,
    reports: Annotated[
        Path,
        typer.Option(metavar="DIR", help="Folder for the run report, Data Docs and metrics."),
    ] = DEFAULT_REPORTS,
    checks: Annotated[
        bool, typer.Option("--checks/--no-checks", help="Run the data-quality gate.")
    ] = True,
    remits: Annotated[
        bool,
        typer.Option(
            "--remits/--no-remits",
            help="Write each processed batch's X12 835 to REPORTS/remits/BATCH_ID.835.",
        ),
    ] = True,
    quiet_seconds: Annotated[
        int,
        typer.Option(
            min=0,
            max=86400,
            help="Leave batch files modified less than this many seconds ago for the next "
            "run (they may still be being copied in); 0 takes every file.",
        ),
    ] = DEFAULT_QUIET_SECONDS,
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
        typer.Option(metavar="URL", help="Scheduler of an existing Dask cluster, tcp://host:port."),
    ] = None,
    dask_workers: Annotated[
        int, typer.Option(min=1, max=256, help="Worker processes of a local Dask cluster.")
    ] = 2,
    dask_threads: Annotated[
        int, typer.Option(min=1, max=64, help="Threads per worker of a local Dask cluster.")
    ] = 1,
    archive: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Move each batch file here (a folder per day) once its batch is recorded; "
            "default: files stay in the inbox.",
        ),
    ] = None,
) -> None:
    """Run the nightly flow: adjudicate every new batch into the event log."""
    from claimsflow.ops import timeline

    timeline.mark("command")  # the interpreter and the CLI's imports
    # Registered first, so it runs last at exit: after Prefect's exit handlers and
    # the temporary server's stop, whose time it records as the shutdown.
    atexit.register(_write_timeline)
    if (source_url is None) != (source_table is None):
        raise fail("--source-url and --source-table go together")
    parts = _partitions(executor, partitions, dask_address, dask_workers)
    lake_at = existing_folder_or_url(lake, "--lake")
    existing_folder_or_url(str(reports), "--reports")
    inbox_at = location(inbox)
    if source_url is None:
        inbox_at = existing_folder_or_url(inbox, "--inbox")
        if isinstance(inbox_at, Path) and not inbox_at.is_dir():
            raise fail(f"--inbox {shown_name(inbox)}: inbox folder not found")
    if archive is not None:
        existing_folder_or_url(str(archive), "--archive")
        if source_url is None and not isinstance(inbox_at, Path):
            raise fail(
                "--archive needs a local inbox folder (object-store inboxes stay as they are)"
            )
    for remote in (lake_at, inbox_at) if source_url is None else (lake_at,):
        check_remote(remote)
    chosen_date = parse_date(run_date, "--run-date") or dt.datetime.now(dt.UTC).date()
    # The temporary Prefect server (if no PREFECT_API_URL) starts in its own process
    # now, while this one imports the pipeline, checks the configuration and imports
    # Prefect and the flow: its start-up is the longest part of a small run.
    server = prefect_api()
    try:
        with stop_on_signals():
            from claimsflow.core.reference import ReferenceDataError, load_reference
            from claimsflow.core.rules.ruleset import RuleSetError, load_rulesets, select_ruleset
            from claimsflow.pipeline.partitioning import PartitioningError, check_partitionable

            # Check configuration before the flow starts, so a mistake is one clear line.
            try:
                load_reference(reference)
                chosen = select_ruleset(load_rulesets(rules_dir), chosen_date, ruleset)
                if parts > 1:
                    check_partitionable(chosen)
            except (ReferenceDataError, RuleSetError, PartitioningError) as exc:
                if server is not None:
                    server.stop(at_once=True)  # no flow used it: nothing to flush
                raise fail(str(exc)) from None
            timeline.mark("checks")
            if server is not None:
                # Its start-up takes seconds: say so at once (once the configuration is
                # known good, so that a mistake stays one line), not after a silence.
                typer.echo("starting local Prefect server…", err=True)
            # Before Prefect is imported: its settings, and PREFECT_API_URL of the server.
            configure_prefect_environment()
            if server is not None:
                server.activate()
            # Imported now, while the server starts: counted as imports, not as the flow.
            import flows.nightly  # noqa: F401

            timeline.mark("imports")
            if server is not None:
                try:
                    server.wait_until_ready()
                except TemporaryServerError as exc:
                    typer.echo(f"adjudicate: run failed: {exc}", err=True)
                    raise typer.Exit(RUN_FAILED) from None
            timeline.mark("prefect-server")
            if source_url is not None:
                # The password goes to the flow through the environment, never as a
                # parameter that Prefect would store and show.
                from claimsflow.ingest.sql_source import PASSWORD_ENV, split_password

                source_url, password = split_password(source_url)
                if password is not None:
                    os.environ[PASSWORD_ENV] = password
            try:
                with run_progress():
                    summary = _run_flow(
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
                        remits=remits,
                        quiet_seconds=quiet_seconds,
                        executor=executor.value,
                        partitions=parts,
                        dask_address=dask_address,
                        dask_workers=dask_workers,
                        dask_threads_per_worker=dask_threads,
                        archive=None if archive is None else str(archive),
                    )
            except Exception as exc:  # the flow failed: Prefect has logged its traceback
                problem = first_line(exc, with_type=True)
                typer.echo(f"adjudicate: run failed: {problem}", err=True)
                typer.echo(
                    "adjudicate: no batch was half-recorded; batches recorded before the "
                    "failure stay, and the next run goes on from there",
                    err=True,
                )
                raise typer.Exit(RUN_FAILED) from None
    except (Interrupted, KeyboardInterrupt) as exc:
        _stop_servers(server)
        name = exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
        typer.echo(
            f"adjudicate: run stopped by {name}: no batch was half-recorded; batches "
            "recorded before it stay, and the next run goes on from there",
            err=True,
        )
        raise typer.Exit(RUN_FAILED) from None
    timeline.mark("flow-returned")
    print_summary(summary.batch_table(), summary.lines(), lake_at)
    timeline.mark("summary")
    raise typer.Exit(summary.exit_code)


def _write_timeline() -> None:
    from claimsflow.ops import timeline

    timeline.mark("shutdown")
    timeline.write()


def _run_flow(**parameters: Any) -> RunSummary:
    """The nightly flow on this machine's Prefect (the temporary server unless
    PREFECT_API_URL names one)."""
    from prefect.exceptions import TerminationSignal

    from flows.nightly import nightly_adjudication

    try:
        summary: RunSummary = nightly_adjudication(**parameters)
    except TerminationSignal as exc:
        # Prefect turns a SIGTERM inside the flow into its own exception, then sends
        # the signal again (to our handler, which raises Interrupted): either way the
        # run was asked to stop.
        raise Interrupted(exc.signal) from None
    return summary


def _stop_servers(server: TemporaryServer | None) -> None:
    """After a signal: the run's last log lines sent, then the temporary server(s)
    stopped before the command says it stopped."""
    stop_temporary_server()  # Prefect's own ephemeral server, if this process has one
    if server is not None:
        if "prefect.logging.handlers" in sys.modules:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
        server.stop()


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
