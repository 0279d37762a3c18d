"""The `remit` flow: the X12 835 remittance advice of one batch (spec §11).

Thin: one task (tasks/remit.py) calls claimsflow/analysis/remittance.py. The 835
reads the lake only (latest decisions), so the flow takes no writer lock. A batch
with no APPROVED or DENIED case completes with that message and no file; an unknown
batch fails the run with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from claimsflow.analysis.remittance import RemitOutcome
from claimsflow.lake.storage import parse_location
from claimsflow.settings import DEFAULT_LAKE, DEFAULT_REPORTS
from claimsflow.text import money
from flows.common import completed
from tasks.remit import write_remit

#: Where the 835s go unless the form names another folder (the nightly run's too).
DEFAULT_REMITS = str(DEFAULT_REPORTS / "remits")


@flow(name="remit", log_prints=True)
def remit(
    batch_id: Annotated[str, Field(min_length=6, max_length=64)],
    lake: str = str(DEFAULT_LAKE),
    out_dir: str = DEFAULT_REMITS,
) -> RemitOutcome:
    """Write the 835 remittance advice of one batch: its APPROVED and DENIED cases.

    Args:
        batch_id: The batch: its id (the SHA-256 of the file, as in the catalog's
            batches view), or a prefix of at least 6 characters naming one batch.
        lake: Lake folder: event log and catalog.duckdb; or an object-store URL.
        out_dir: Folder for the file, named <batch_id>.835 (relative paths are from
            the project folder).
    """
    outcome = write_remit(parse_location(lake), batch_id, None, Path(out_dir))
    create_markdown_artifact(
        markdown=remit_markdown(outcome), key="remit", description="835 remittance advice"
    )
    return completed(outcome, remit_message(outcome))


def remit_message(outcome: RemitOutcome) -> str:
    if outcome.path is None:
        return f"batch {outcome.batch_id}: no APPROVED or DENIED case, no 835 written"
    return (
        f"835 of batch {outcome.batch_id}: {outcome.cases} case(s), "
        f"{outcome.providers} provider(s), paid {money(outcome.paid_cents)}"
    )


def remit_markdown(outcome: RemitOutcome) -> str:
    lines = ["# 835 remittance advice", "", remit_message(outcome)]
    if outcome.path is not None:
        lines += ["", f"- file: `{outcome.path}`"]
        lines += [f"- {status}: {n}" for status, n in sorted(outcome.by_status.items())]
    return "\n".join(lines) + "\n"
