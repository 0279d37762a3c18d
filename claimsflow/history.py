"""What earlier batches decided, as each batch's validation, rules and pricing need it.

The state stays in the Parquet event log. A `History` over a lake holds no decisions:
`for_batch` reads, for one batch, only the rows that can change that batch's
decisions, so a run's memory grows with its batches, not with the log
(docs/benchmarks.md, "Memory and the size of the log"):

- which of the batch's case_ids already have a decision (resubmissions, spec §3);
- earlier cases decided APPROVED or PENDED that share a duplicate key with a case of
  the batch: the duplicate rules only look an earlier claim up by its key, so no
  other earlier claim can change a decision (this also holds for a key without
  member_id, which a restriction to the batch's members would get wrong);
- the deductible used so far in each (member_id, service_year) of the batch.

Every batch sees every decision before it (spec §6): the pipeline records a batch
before it reads the history of the next, and each read sees the log as it is then.
A case decided more than once counts with its latest decision (by decided_at; on a
tie, the one read last), as the whole-log history always did.

A history without a lake (`empty`, `from_decided_cases`) keeps decided cases in
memory and `advanced_by` adds to them: the what-if replays and the tests use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import polars as pl

from claimsflow.eventlog import (
    EMPTY_BATCH,
    TABLE_SCHEMAS,
    recorded_batch_ids,
    scan_batches,
    scan_table,
)
from claimsflow.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.rules.engine import APPROVED, PENDED
from claimsflow.rules.ruleset import RuleSet
from claimsflow.storage import Location

CASE_KEY_COLUMNS = list(CASE_PAYLOAD_COLUMNS)
#: A decided case as a history holds it: its received columns, status and deductible.
DECIDED_SCHEMA: dict[str, pl.DataType] = {
    **{c: TABLE_SCHEMAS["cases"][c] for c in CASE_KEY_COLUMNS},
    "status": pl.String(),
    "deductible_cents": pl.Int64(),
}
MEMBER_YEAR = ["member_id", "service_year"]
_CASE_SCHEMA = {c: DECIDED_SCHEMA[c] for c in CASE_KEY_COLUMNS}
_HASH = "_case_hash"
_KEY_HASH = "_key_hash"
_SERVICE_YEAR = pl.col("service_date").dt.year().cast(pl.Int32).alias("service_year")
# Reads of the log run on the streaming engine: a filter over many recorded batches
# then holds a few row groups at a time, not the columns it reads.
_STREAMING: Final = "streaming"
#: Recorded batches are read in groups of about the batch's size in decided cases,
#: and at least this many (few small batches in one read: less time per batch read).
MIN_READ_ROWS = 100_000


@dataclass(frozen=True)
class BatchHistory:
    """What earlier batches decided that one batch can see.

    decided_case_ids: the batch's case_ids that already have a decision.
    prior_claims: earlier cases decided APPROVED or PENDED (their case columns but
        case_id) whose duplicate key is the key of a case of the batch.
    deductible_used: member_id, service_year, used_cents: the deductible earlier
        APPROVED cases took in the batch's member-years (no row: nothing used).
    """

    decided_case_ids: pl.Series
    prior_claims: pl.DataFrame
    deductible_used: pl.DataFrame


@dataclass(frozen=True)
class History:
    """Every decision before the next batch: those in `lake`'s event log, read batch by
    batch with `for_batch`, and those in `decided` (a history without a lake)."""

    lake: Location | None = None
    decided: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DECIDED_SCHEMA))

    @classmethod
    def empty(cls) -> History:
        return cls()

    @classmethod
    def from_lake(cls, lake: Location) -> History:
        """The history of the decisions in `lake`'s event log (nothing is read yet)."""
        return cls(lake=lake)

    @classmethod
    def from_decided_cases(cls, decided: pl.DataFrame) -> History:
        """A history in memory of the given decided cases (case columns, status and
        deductible_cents; a column it lacks is taken as null), in the order decided."""
        return cls(decided=_conform(decided))

    def advanced_by(self, decided: pl.DataFrame) -> History:
        """The history after a batch whose decided cases (with case columns) are given.

        A history over a lake is unchanged: the pipeline records a batch before it
        advances the history, so the batch is in the log already and the next read
        sees it. Only a history in memory adds the cases.
        """
        if self.lake is not None:
            return self
        return History(decided=pl.concat([self.decided, _conform(decided)]))

    def decided_among(self, case_ids: pl.Series) -> pl.Series:
        """Those of `case_ids` that already have a decision (for validation, which runs
        on the text batch before there are typed cases to call `for_batch` with)."""
        # No unique() of the batch's ids first: `is_in` does not need it, and on a
        # 10M-case batch it costs seconds; an empty history costs nothing at all.
        found = [pl.Series("case_id", [], dtype=pl.String)]
        if not self.decided.is_empty():
            found.append(
                self.decided.join(case_ids.alias("case_id").to_frame(), on="case_id", how="semi")[
                    "case_id"
                ]
            )
        if self.lake is not None:
            reads = _reads(self.lake, case_ids.len())
            found += [_decided_ids(self.lake, batches, case_ids) for batches in reads]
        return pl.concat(found).unique(maintain_order=True)

    def for_batch(self, cases: pl.DataFrame, ruleset: RuleSet) -> BatchHistory:
        """What earlier batches decided that the batch of `cases` (typed, as validated)
        can see when decided with `ruleset` (its duplicate rules' keys)."""
        reads = _reads(self.lake, cases.height) if self.lake is not None else []
        if cases.is_empty() or (self.decided.is_empty() and not reads):
            # Nothing decided before: nothing to look up (and no batch keys to build).
            return _batch_history([], [], [])
        batch = _Batch.of(cases, ruleset)
        ids, claims, used = _from_memory(self.decided, batch)
        if self.lake is not None and reads:
            log_ids, log_claims, log_used = _from_log(self.lake, batch, reads)
            ids, claims, used = ids + log_ids, claims + log_claims, used + log_used
        return _batch_history(ids, claims, used)

    def decision_count(self) -> int:
        """Decisions the history holds (rows of the log's decisions table), read from
        the Parquet footers: a figure for the logs, without reading the decisions."""
        count = self.decided.height
        if self.lake is not None:
            count += int(scan_table(self.lake, "decisions").select(pl.len()).collect().item())
        return count

    # The whole history at once: what-if plans and tests. It reads every decision,
    # so a run reads per batch with `for_batch` instead.

    @property
    def decided_case_ids(self) -> pl.Series:
        """Every case_id with a decision (the whole history, read in full)."""
        return self._whole()["case_id"]

    @property
    def prior_claims(self) -> pl.DataFrame:
        """Every case decided APPROVED or PENDED (the whole history, read in full)."""
        return _prior_claims(self._whole())

    @property
    def deductible_used(self) -> pl.DataFrame:
        """Deductible used per member-year (the whole history, read in full)."""
        return _deductible_used(self._whole())

    def _whole(self) -> pl.DataFrame:
        decided = [self.decided]
        if self.lake is not None:
            decided.insert(0, _latest_decided(self.lake, None))
        return _latest(pl.concat(decided))


@dataclass(frozen=True)
class _Batch:
    """What a batch looks the history up by: its case_ids, its duplicate keys' values
    (typed as in the log, and hashed for a cheap first filter over the log), its
    members and member-years."""

    case_ids: pl.Series
    keys: tuple[tuple[str, ...], ...]
    key_values: tuple[pl.DataFrame, ...]
    key_hashes: tuple[pl.Series, ...]
    members: pl.Series
    member_years: pl.DataFrame

    @classmethod
    def of(cls, cases: pl.DataFrame, ruleset: RuleSet) -> _Batch:
        keys = tuple(dict.fromkeys(r.key for r in ruleset.rules if r.kind == "duplicate"))
        # Not made unique: every use is `is_in` or a semi join, which need no unique
        # side, and unique() of a 10M-case batch's text columns costs seconds.
        values = tuple(cases.select(pl.col(c).cast(DECIDED_SCHEMA[c]) for c in key) for key in keys)
        return cls(
            case_ids=cases["case_id"],
            keys=keys,
            key_values=values,
            key_hashes=tuple(v.select(pl.struct(v.columns).hash()).to_series() for v in values),
            members=cases["member_id"],
            member_years=cases.select("member_id", _SERVICE_YEAR),
        )

    def may_share_a_key(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """The rows that share a key with the batch (and, rarely, a row whose key only
        hashes alike: `sharing_a_key` then compares the keys)."""
        matches = [
            rows.with_columns(pl.struct(list(key)).hash().alias(_KEY_HASH))
            .join(_frame(hashes, _KEY_HASH), on=_KEY_HASH, how="semi")
            .drop(_KEY_HASH)
            for key, hashes in zip(self.keys, self.key_hashes, strict=True)
        ]
        return matches[0] if len(matches) == 1 else pl.concat(matches).unique()

    def sharing_a_key(self, decided: pl.LazyFrame) -> pl.LazyFrame:
        """The rows of `decided` whose key is the key of a batch case."""
        matches = [
            decided.join(values.lazy(), on=list(key), how="semi")
            for key, values in zip(self.keys, self.key_values, strict=True)
        ]
        if len(matches) == 1:
            return matches[0]
        # A row sharing several keys once (rows are distinct: by case_id, or batch_id).
        return pl.concat(matches).unique(maintain_order=True)

    def used_by(self, decided: pl.LazyFrame) -> pl.LazyFrame:
        """The APPROVED rows of `decided` that took deductible in a member-year of the
        batch: a hash of their case_id, member_id, service_year, deductible_cents."""
        return (
            decided.filter(pl.col("status") == APPROVED, pl.col("deductible_cents") > 0)
            .select(_case_hash(), "member_id", _SERVICE_YEAR, "deductible_cents")
            .join(self.member_years.lazy(), on=MEMBER_YEAR, how="semi")
        )


# What a source of decisions found for a batch: case_ids that have a decision, decided
# cases sharing a key (DECIDED_SCHEMA), deductible rows (`_Batch.used_by`).
_Found = tuple[list[pl.Series], list[pl.DataFrame], list[pl.DataFrame]]


def _from_memory(decided: pl.DataFrame, batch: _Batch) -> _Found:
    if decided.is_empty():
        return [], [], []
    latest = _latest(decided).lazy()
    ids = decided.join(batch.case_ids.alias("case_id").to_frame(), on="case_id", how="semi")[
        "case_id"
    ]
    claims = [batch.sharing_a_key(latest).collect()] if batch.keys else []
    return [ids], claims, [batch.used_by(latest).collect()]


def _from_log(lake: Location, batch: _Batch, reads: list[list[str]]) -> _Found:
    """The batch's rows of the log, read a group of recorded batches at a time.

    The deductible rows need the cases and decisions tables joined: joined over the
    whole log at once, the join would hold one side of it in memory. Joined group by
    group (a decision's case row is in its own recorded batch), it holds one group,
    about the size of the batch. The other reads are filters. Each read keeps only
    rows the batch can see; only the deductible rows are more than a few: one per
    APPROVED case that took deductible in a member-year of the batch (a handful per
    member-year, as the deductible is soon met).
    """
    ids: list[pl.Series] = []
    keyed = [pl.DataFrame(schema={"batch_id": pl.String(), **_CASE_SCHEMA})]
    used: list[pl.DataFrame] = []
    for batches in reads:
        ids.append(_decided_ids(lake, batches, batch.case_ids))
        cases = scan_batches(lake, "cases", batches)
        decisions = scan_batches(lake, "decisions", batches)
        # Separate reads: collected together, the engine keeps more of each in flight.
        deductible_rows = (
            cases.select("batch_id", "case_id", "member_id", "service_date")
            .join(_frame(batch.members, "member_id"), on="member_id", how="semi")
            .join(
                decisions.select("batch_id", "case_id", "status", "deductible_cents"),
                on=["batch_id", "case_id"],
            )
        )
        used.append(batch.used_by(deductible_rows).collect(engine=_STREAMING))
        if batch.keys:
            # Hashes first: a cheap filter that leaves a few rows for the exact match.
            keyed.append(
                batch.may_share_a_key(cases.select("batch_id", *CASE_KEY_COLUMNS)).collect(
                    engine=_STREAMING
                )
            )
    claims = _sharing_a_key(lake, batch, pl.concat(keyed)) if batch.keys else []
    return ids, claims, _latest_used(lake, batch, used)


def _reads(lake: Location, rows: int) -> list[list[str]]:
    """The recorded batches in groups of about `rows` decided cases (MIN_READ_ROWS at
    least; a bigger recorded batch alone), in the order `scan_table` reads them."""
    budget = max(rows, MIN_READ_ROWS)
    # One row per recorded batch: how many cases it decided (none: REJECTED).
    sizes = dict(scan_table(lake, "batch").select("batch_id", "rows_decided").collect().iter_rows())
    groups: list[list[str]] = []
    total = 0
    # The empty pseudo-batch has no rows: an empty log is no read at all.
    for batch_id in (b for b in recorded_batch_ids(lake) if b != EMPTY_BATCH):
        size = int(sizes.get(batch_id) or 0)
        if not groups or (total + size > budget and total > 0):
            groups.append([])
            total = 0
        groups[-1].append(batch_id)
        total += size
    return groups


def _decided_ids(lake: Location, batches: list[str], case_ids: pl.Series) -> pl.Series:
    """Those of `case_ids` that the given recorded batches decided."""
    return (
        scan_batches(lake, "decisions", batches)
        .select("case_id")
        .join(_frame(case_ids, "case_id"), on="case_id", how="semi")
        .collect(engine=_STREAMING)["case_id"]
    )


def _sharing_a_key(lake: Location, batch: _Batch, keyed: pl.DataFrame) -> list[pl.DataFrame]:
    """The decided cases whose key is a key of the batch, each with its latest decision.

    `keyed` holds the case rows (with batch_id) that passed the hash filter: the
    exact match leaves the cases that share a key, and their latest decisions are
    read by case_id (one of them may be in another recorded batch, whose case row
    has another key: then the case no longer shares it).
    """
    cases = batch.sharing_a_key(keyed.lazy()).collect()
    if cases.is_empty():
        return []
    where = pl.col("case_id").is_in(cases["case_id"].unique().implode())
    latest = _latest_decisions(lake, where).collect(engine=_STREAMING)
    return [latest.join(cases, on=["batch_id", "case_id"]).select(list(DECIDED_SCHEMA))]


def _latest_used(lake: Location, batch: _Batch, used: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """The deductible rows, each case with its latest decision only.

    A case_id decided in one recorded batch only (always, in a log this pipeline
    wrote: validation rejects a resubmission) keeps its row. One decided more than
    once is read again, with its latest decision, in place of its rows (a case_id
    whose hash only collides with one is read again too, and found the same).
    """
    if not used:
        return used
    seen = pl.concat([u[_HASH] for u in used]).unique()
    found = (
        scan_table(lake, "decisions")
        .select(_case_hash())
        .filter(pl.col(_HASH).is_in(seen.implode()))
        .collect(engine=_STREAMING)[_HASH]
    )
    if found.len() == seen.len():  # one decision each: nothing to replace
        return used
    twice = found.filter(found.is_duplicated()).unique().implode()
    latest = _latest_decided(lake, _case_hash().is_in(twice))
    kept = [u.filter(~pl.col(_HASH).is_in(twice)) for u in used]
    return [*kept, batch.used_by(latest.lazy()).collect()]


def _latest_decisions(lake: Location, where: pl.Expr | None) -> pl.LazyFrame:
    """The latest decision of each case_id of the log (of those `where` selects):
    sorted by decided_at (ties in the order read), the last per case_id."""
    decisions = scan_table(lake, "decisions").select(
        "batch_id", "case_id", "status", "deductible_cents", "decided_at"
    )
    if where is not None:
        decisions = decisions.filter(where)
    return (
        decisions.sort("decided_at", maintain_order=True)
        .group_by("case_id", maintain_order=True)
        .last()
    )


def _latest_decided(lake: Location, where: pl.Expr | None) -> pl.DataFrame:
    """The latest decision of each case_id of the log (of those `where` selects), with
    its case columns."""
    cases = scan_table(lake, "cases").select("batch_id", *CASE_KEY_COLUMNS)
    if where is not None:
        cases = cases.filter(where)
    return (
        _latest_decisions(lake, where)
        .join(cases, on=["batch_id", "case_id"], how="left")
        .select(list(DECIDED_SCHEMA))
        .collect(engine=_STREAMING)
    )


def _batch_history(
    ids: list[pl.Series], claims: list[pl.DataFrame], used: list[pl.DataFrame]
) -> BatchHistory:
    empty_ids = pl.Series("case_id", [], dtype=pl.String)
    decided = pl.concat([pl.DataFrame(schema=DECIDED_SCHEMA), *claims])
    none_used = pl.DataFrame(
        schema={
            "member_id": pl.String(),
            "service_year": pl.Int32(),
            "deductible_cents": pl.Int64(),
        }
    )
    deductible = pl.concat([none_used, *(u.select(none_used.columns) for u in used)])
    return BatchHistory(
        decided_case_ids=pl.concat([empty_ids, *ids]).unique(maintain_order=True),
        prior_claims=_prior_claims(decided),
        deductible_used=deductible.group_by(MEMBER_YEAR, maintain_order=True).agg(
            pl.col("deductible_cents").sum().cast(pl.Int64).alias("used_cents")
        ),
    )


def _latest(decided: pl.DataFrame) -> pl.DataFrame:
    """The last row of each case_id (rows in the order decided)."""
    return decided.unique("case_id", keep="last", maintain_order=True)


def _frame(values: pl.Series, name: str) -> pl.LazyFrame:
    """Values to match by a semi join, as column `name`. `is_in` of a list of millions
    (a batch's ids or members) is several times slower than a semi join on them."""
    return values.alias(name).to_frame().lazy()


def _case_hash() -> pl.Expr:
    return pl.col("case_id").hash().alias(_HASH)


def _conform(decided: pl.DataFrame) -> pl.DataFrame:
    missing = [
        pl.lit(None, dtype=t).alias(c) for c, t in DECIDED_SCHEMA.items() if c not in decided
    ]
    return decided.with_columns(missing).select(
        pl.col(c).cast(t) for c, t in DECIDED_SCHEMA.items()
    )


def _prior_claims(decided: pl.DataFrame) -> pl.DataFrame:
    return decided.filter(pl.col("status").is_in([APPROVED, PENDED])).select(
        c for c in CASE_KEY_COLUMNS if c != "case_id"
    )


def _deductible_used(decided: pl.DataFrame) -> pl.DataFrame:
    return (
        decided.filter(pl.col("status") == APPROVED)
        .group_by("member_id", _SERVICE_YEAR)
        .agg(pl.col("deductible_cents").sum().cast(pl.Int64).alias("used_cents"))
    )
