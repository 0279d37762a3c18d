"""`adjudicate remit`: the X12 835 remittance advice of one batch (spec §11)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adjudicate.app import app, fail
from adjudicate.options import check_remote, location
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REPORTS
from claimsflow.text import money

#: Exit code when the batch has no APPROVED or DENIED case (no file is written).
NOTHING_TO_REMIT = 1
#: Where the 835 goes without --out (the nightly run writes its remits there too).
REMITS_DIR = DEFAULT_REPORTS / "remits"


@app.command()
def remit(
    batch_id: Annotated[
        str, typer.Argument(help="The batch (its id, or a unique prefix of 6+ characters).")
    ],
    lake: Annotated[str, typer.Option(help="Lake folder, or an object-store URL.")] = str(
        DEFAULT_LAKE
    ),
    out: Annotated[
        Path | None,
        typer.Option(help="The 835 file to write; default reports/remits/BATCH_ID.835."),
    ] = None,
) -> None:
    """Write a batch's X12 835 remittance advice (its APPROVED and DENIED cases).

    One transaction set per provider, one claim per case, by each case's latest
    decision (spec §11)."""
    from claimsflow.analysis.remittance import UnknownBatch, resolve_batch_id, write_remit
    from claimsflow.lake.storage import StorageError

    lake_at = location(lake)
    if isinstance(lake_at, Path) and not lake_at.is_dir():
        raise fail(f"{lake}: no such lake folder")
    check_remote(lake_at)
    if out is not None and out.is_dir():
        raise fail(f"--out {out}: is a folder; give the 835 file's path")
    try:
        resolved = resolve_batch_id(lake_at, batch_id)
        target = out if out is not None else REMITS_DIR / f"{resolved}.835"
        outcome = write_remit(lake_at, resolved, target)
    except UnknownBatch as exc:
        raise fail(str(exc)) from None
    except (StorageError, OSError) as exc:
        raise fail(f"835 not written: {' '.join(str(exc).split())}") from None
    if outcome.path is None:
        typer.echo(
            f"adjudicate: batch {resolved} has no APPROVED or DENIED case: no 835 written",
            err=True,
        )
        raise typer.Exit(NOTHING_TO_REMIT)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(outcome.by_status.items()))
    typer.echo(
        f"835 for batch {resolved}: {outcome.cases} case(s) ({statuses}), "
        f"{outcome.providers} provider(s), paid {money(outcome.paid_cents)} -> {outcome.path}"
    )
