"""The `adjudicate` command line: every command, registered on one Typer app.

Exit codes (every command that records: run, review): 0 everything processed,
applied or skipped; 1 some batch or row rejected; 2 usage or configuration error
(one line on stderr, no traceback); 3 the run itself failed (nothing half-recorded;
details in the flow run's log). `remit`: 0 the 835 written, 1 nothing to remit (no
file), 2 usage error (an unknown batch among them).
"""

from __future__ import annotations

# Importing a command's module registers it on `app` (in --help order).
from adjudicate.app import app
from adjudicate.commands import (
    explain,
    generate,
    pended,
    query,
    remit,
    report,
    review,
    run,
    runs,
    what_if,
)

__all__ = ["app", "main"]
_COMMANDS = (run, review, pended, query, explain, what_if, report, remit, generate, runs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
