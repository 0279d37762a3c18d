"""The `adjudicate` Typer application and what every command shares: one-line usage
errors (exit 2) and the console."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from typer._click.core import Context  # Typer bundles its own Click: not click's classes
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

import adjudicate.help_types  # noqa: F401  (--help shows real value types)


class _OneLineUsageErrors(TyperGroup):
    """Click's own usage errors (an option value out of its range or choices, a missing
    argument, an unknown option) as the one line every other usage error is, rather
    than Rich's framed usage block: a script's log or a narrow terminal shows it whole."""

    def invoke(self, ctx: Context) -> object:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise  # a command given no arguments that shows its help for them, as asked
        except UsageError as exc:
            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            message = exc.format_message().replace("Value error, ", "")
            raise fail(f"{message} (see `{path} --help`)") from None


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="adjudicate",
    help="Nightly claims adjudication: run the nightly flow, review pended cases, query "
    "the lake, explain a case, replay rules (what-if), list runs, rebuild a report, "
    "generate sample data.",
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
    """Nightly claims adjudication: run the nightly flow, review pended cases, query the
    lake, explain a case, replay rules (what-if), list runs, rebuild a report, generate
    sample data."""


def fail(message: str) -> typer.Exit:
    """A user's mistake as one line on stderr; raise the result (exit code 2)."""
    # Plain echo, not Rich: an error is one line whatever the terminal width.
    typer.echo(f"adjudicate: error: {' '.join(message.split())}", err=True)
    return typer.Exit(USAGE_ERROR)
