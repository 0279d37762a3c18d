"""The 835 remittance advice of one batch (spec §11), read from the lake.

`remit_cases(lake, batch_id)` is the read: the cases received in the batch (the log's
`cases` of that batch) with each one's latest decision (by `decided_at`, across the
whole log: a later review (§8) or correction (§9) wins), kept when that decision is
APPROVED or DENIED. `write_remit` formats them with `claimsflow.x12.write835` and
writes the file atomically (aside, then renamed over the target).

A PENDED case is not remitted yet; a VOIDED one is not remitted at all; rejected rows
never became cases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import polars as pl

from claimsflow.lake.eventlog import has_event_log, scan_batches, scan_history, scan_table
from claimsflow.lake.storage import Location
from claimsflow.vocabulary import ADJUDICATION, APPROVED, DENIED
from claimsflow.x12.write835 import remit_order, remittance_835

__all__ = [
    "REMITTED",
    "RemitOutcome",
    "UnknownBatch",
    "remit_cases",
    "remit_path",
    "remittable",
    "resolve_batch_id",
    "write_remit",
]

#: The latest statuses §11 remits.
REMITTED: Final = (APPROVED, DENIED)
#: A batch id may be given by a prefix this long at least (ids are 64 hex digits).
MIN_PREFIX: Final = 6
_CASE_COLUMNS = (
    "case_id",
    "member_id",
    "provider_id",
    "procedure_code",
    "units",
    "service_date",
    "billed_cents",
)
_DECISION_COLUMNS = (
    "case_id",
    "status",
    "reason_codes",
    "allowed_cents",
    "deductible_cents",
    "coinsurance_cents",
    "paid_cents",
    "decided_at",
)


class UnknownBatch(ValueError):
    """No recorded batch has that id (a usage error)."""


@dataclass(frozen=True)
class RemitOutcome:
    """What `write_remit` did: the file (None when there was nothing to remit)."""

    batch_id: str
    path: Path | None
    cases: int = 0
    providers: int = 0
    paid_cents: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def resolve_batch_id(lake: Location, batch_id: str) -> str:
    """The recorded batch id `batch_id` names: itself, or the one id it is a prefix of
    (at least MIN_PREFIX characters). UnknownBatch otherwise."""
    wanted = batch_id.strip().lower()
    if not wanted:
        raise UnknownBatch("the batch id is empty")
    if not has_event_log(lake):
        raise UnknownBatch(f"no batch {batch_id!r}: the lake has no event log")
    ids = (
        scan_table(lake, "batch")
        .select("batch_id")
        .filter(pl.col("batch_id").str.starts_with(wanted))
        .unique()
        .collect()["batch_id"]
        .to_list()
    )
    if wanted in ids:
        return wanted
    if len(ids) == 1 and len(wanted) >= MIN_PREFIX:
        return str(ids[0])
    if len(ids) > 1 and len(wanted) >= MIN_PREFIX:
        raise UnknownBatch(f"batch id prefix {batch_id!r} names {len(ids)} batches")
    raise UnknownBatch(f"no batch {batch_id!r} in the lake")


def remit_cases(lake: Location, batch_id: str) -> pl.DataFrame:
    """The cases received in `batch_id` whose latest decision is APPROVED or DENIED,
    in (provider_id, case_id) order, with the columns `write_835` reads (REMIT_COLUMNS +
    member_id).

    A case's latest decision is its last by decided_at; a review or a correction
    (anywhere in the log) recorded at the same instant as the adjudication comes after
    it. Each case has one adjudication, in its own batch; the later decisions are few,
    so only they are sorted, and a batch of 10M cases is never sorted by decided_at.
    """
    source = pl.col("decision_source")
    cases = _read_whole(
        scan_batches(lake, "cases", [batch_id])
        .filter(pl.col("batch_id") == batch_id)
        .select(_CASE_COLUMNS)
    )
    decided_again = (
        scan_history(lake, "decisions")
        .filter(source.is_not_null() & (source != ADJUDICATION))
        .select(_DECISION_COLUMNS)
        .join(cases.lazy().select("case_id"), on="case_id", how="semi")
        .sort("decided_at", maintain_order=True)
        .group_by("case_id", maintain_order=True)
        .last()
        .collect()
    )
    adjudications = _read_whole(
        scan_batches(lake, "decisions", [batch_id])
        .filter(source.is_null() | (source == ADJUDICATION))
        .select(_DECISION_COLUMNS)
    )
    decided = _with_adjudication(cases, adjudications, decided_again.get_column("case_id"))
    del cases, adjudications  # `decided` holds their columns
    return _remitted_in_order(_later_decisions_win(decided, decided_again))


def _read_whole(rows: pl.LazyFrame) -> pl.DataFrame:
    """The rows in one piece: gathering from a frame in its Parquet file's ~10 pieces
    took 15x as long (4.5 s per string column at 10M cases; issue 15)."""
    return rows.collect().rechunk()


def _remitted_in_order(latest: pl.DataFrame) -> pl.DataFrame:
    """The cases whose latest status §11 remits, in the 835's order: kept and ordered
    by one gather (a filtered copy, then a sorted one, held the batch three times)."""
    kept = latest.get_column("status").is_in(REMITTED).arg_true()
    order = remit_order(latest.select("provider_id", "case_id")[kept])
    return latest[kept if order is None else kept.gather(order)]


def _with_adjudication(
    cases: pl.DataFrame, adjudications: pl.DataFrame, decided_later: pl.Series
) -> pl.DataFrame:
    """Each case with its adjudication's columns (null for a case without one: a void
    row, recorded VOIDED as a correction). A case without an adjudication is kept only
    when `decided_later` names it: nothing else could remit it.

    The batch writes its decisions in its cases' order, the void rows last and without
    an adjudication; when the two tables line up so, they are put side by side, which
    spares a join of 10M case_ids (6.5 s at 10M; issue 15). Any other order joins."""
    adjudicated = adjudications.height
    lined_up = adjudicated <= cases.height and (
        cases.get_column("case_id").head(adjudicated).equals(adjudications.get_column("case_id"))
    )
    if not lined_up:
        return cases.join(adjudications, on="case_id", how="left", maintain_order="left")
    decided = pl.concat([cases.head(adjudicated), adjudications.drop("case_id")], how="horizontal")
    # Lined up, the rest have no adjudication (a batch's case ids are unique).
    rest = cases.slice(adjudicated).filter(pl.col("case_id").is_in(decided_later.implode()))
    if rest.is_empty():
        return decided
    return pl.concat([decided, rest], how="diagonal", rechunk=True)


def _later_decisions_win(decided: pl.DataFrame, decided_again: pl.DataFrame) -> pl.DataFrame:
    """The cases with each one's latest decision: a review's or a correction's when it
    was recorded at or after the adjudication (or the case has no adjudication)."""
    columns = ("case_id", *_CASE_COLUMNS[1:], *_DECISION_COLUMNS[1:-1])
    if decided_again.is_empty():
        return decided.select(columns)
    again, first = pl.col("decided_at_again"), pl.col("decided_at")
    take_again = again.is_not_null() & (first.is_null() | (again >= first))
    return decided.join(
        decided_again, on="case_id", how="left", suffix="_again", maintain_order="left"
    ).select(
        *columns[: len(_CASE_COLUMNS)],
        *(
            pl.when(take_again).then(pl.col(f"{name}_again")).otherwise(pl.col(name)).alias(name)
            for name in _DECISION_COLUMNS[1:-1]
        ),
    )


def write_remit(
    lake: Location,
    batch_id: str,
    out: Path,
    *,
    now: dt.datetime | None = None,
    payer_name: str = "CLAIMSFLOW PAYER",
) -> RemitOutcome:
    """Write the 835 of `batch_id` (already resolved) to `out`, atomically; no file when
    no case of the batch is APPROVED or DENIED (the outcome's path is None)."""
    cases = remit_cases(lake, batch_id)
    if cases.is_empty():
        return RemitOutcome(batch_id, None)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
    remittance = remittance_835(
        cases,
        batch_id=batch_id,
        control_number=control_number(batch_id),
        created=created,
        payer_name=payer_name,
    )
    write_atomically(out, remittance.write_to)
    counts = cases["status"].value_counts()
    return RemitOutcome(
        batch_id,
        out,
        cases=cases.height,
        providers=cases["provider_id"].n_unique(),
        paid_cents=int(cases["paid_cents"].sum()),
        by_status={str(s): int(n) for s, n in counts.iter_rows()},
    )


def control_number(batch_id: str) -> int:
    """ISA13/GS06 of a batch's 835: nine digits taken from its id, the same for every
    835 of that batch (a re-sent remittance keeps its number)."""
    digest = hashlib.sha256(batch_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 999_999_999 + 1


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `data` (bytes, or a function that writes to the open file) aside in the
    target's folder, flush to disk, then rename over the target: a reader sees the old
    file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with aside.open("wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def remittable(by_status: dict[str, int]) -> bool:
    """Whether a processed batch's decisions include a case §11 remits (as decided by
    its run; a later review can only add one, and `write_remit` reads the latest)."""
    return any(by_status.get(status, 0) > 0 for status in REMITTED)


def remit_path(folder: Path, batch_id: str) -> Path:
    """Where a run writes a batch's 835: `<folder>/<batch_id>.835`."""
    return folder / f"{batch_id}.835"
