"""Prefect tasks that write 835 remittance advice (spec §11): thin wrappers around
claimsflow/analysis/remittance.py, which holds the logic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from claimsflow.analysis import remittance
from claimsflow.analysis.remittance import RemitOutcome
from claimsflow.lake.storage import Location
from claimsflow.pipeline.batch import BatchOutcome
from claimsflow.text import money
from claimsflow.vocabulary import PROCESSED


@task(name="write-remit", cache_policy=NONE, task_run_name="remit-{batch_id}")
def write_remit(lake: Location, batch_id: str, out: Path | None, out_dir: Path) -> RemitOutcome:
    """The 835 of one batch (`batch_id` resolved: an id or a unique prefix), to `out`
    or else `<out_dir>/<batch_id>.835`; raises UnknownBatch."""
    resolved = remittance.resolve_batch_id(lake, batch_id)
    target = out if out is not None else remittance.remit_path(out_dir, resolved)
    outcome = remittance.write_remit(lake, resolved, target)
    _log(outcome)
    return outcome


@task(name="write-run-remits", cache_policy=NONE)
def write_run_remits(
    lake: Location, outcomes: Sequence[BatchOutcome], out_dir: Path
) -> list[RemitOutcome]:
    """The 835 of each batch a run processed that has an APPROVED or DENIED case."""
    written = []
    for batch in outcomes:
        if batch.status == PROCESSED and remittance.remittable(batch.by_status):
            path = remittance.remit_path(out_dir, batch.batch_id)
            outcome = remittance.write_remit(lake, batch.batch_id, path)
            _log(outcome)
            written.append(outcome)
    return written


def _log(outcome: RemitOutcome) -> None:
    logger = get_run_logger()
    if outcome.path is None:
        logger.warning("batch %s: no APPROVED or DENIED case, no 835 written", outcome.batch_id)
    else:
        logger.info(
            "835 of batch %s: %d case(s), %d provider(s), paid %s -> %s",
            outcome.batch_id,
            outcome.cases,
            outcome.providers,
            money(outcome.paid_cents),
            outcome.path,
        )
