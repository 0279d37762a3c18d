"""What earlier batches decided, read from the event log for one batch: an I/O step
that returns frames (`claimsflow/core/history.py` says what they mean).

The state stays in the Parquet event log. For each batch, `LakeHistory` reads only
the rows that can change that batch's decisions, so a run's memory grows with its
batches, not with the log (docs/benchmarks.md, "Memory and the size of the log"):

- the latest status of the batch's case_ids and of the originals its corrections
  name (resubmissions, spec §3; corrections, spec §9);
- earlier cases sharing a duplicate key with a case of the batch, with their latest
  decision (spec §4): no other earlier claim can make a case a duplicate;
- per member-year of the batch, the deductible (`used`) and deductible + coinsurance
  (`spent`) that cases whose latest decision is APPROVED applied (spec §5).

A case's latest decision is its last by `decided_at`. Most cases have one decision,
their adjudication; reviews (spec §8) and corrections (spec §9) add later ones, so
the latest of a case is its adjudication unless it has a later decision, and only
those few later decisions are ever sorted.

Every batch sees every decision before it (spec §6): the pipeline records a batch
before it reads the history of the next, and each read sees the log as it is then.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final

import polars as pl

from claimsflow.core.history import (
    DECIDED_SCHEMA,
    SERVICE_YEAR,
    BatchHistory,
    batch_history_from,
    duplicate_keys,
)
from claimsflow.core.pricing import ACCUMULATED_SCHEMA, MEMBER_YEAR
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import DECIDED_STATUS_SCHEMA, no_decisions
from claimsflow.lake.eventlog import HistorySnapshot, has_event_log
from claimsflow.lake.storage import Location
from claimsflow.vocabulary import ADJUDICATION, APPROVED

# Reads of the log run on the streaming engine: a filter over many recorded batches
# then holds a few row groups at a time, not the columns it reads.
_STREAMING: Final = "streaming"
_DECISION_COLUMNS = ("case_id", "status", "deductible_cents", "coinsurance_cents", "decided_at")


@dataclass(frozen=True)
class LakeHistory:
    """Every decision recorded in `lake`'s event log, read for one batch at a time: an
    instance serves the reads of one batch (its files are listed at the first read)."""

    lake: Location

    @cached_property
    def _log(self) -> HistorySnapshot:
        return HistorySnapshot(self.lake)

    def decided_among(self, case_ids: pl.Series) -> pl.DataFrame:
        """The latest status of those of `case_ids` that an earlier batch decided."""
        if case_ids.is_empty() or not has_event_log(self.lake):
            return no_decisions()
        return (
            _latest_decisions(self._log, _frame(case_ids, "case_id"))
            .select(list(DECIDED_STATUS_SCHEMA))
            .collect(engine=_STREAMING)
        )

    def for_batch(self, cases: pl.DataFrame, ruleset: RuleSet) -> BatchHistory:
        """What earlier batches decided that the batch of `cases` (typed, as validated)
        can see when decided with `ruleset` (its duplicate rules' keys)."""
        if cases.is_empty() or not has_event_log(self.lake):
            return BatchHistory()
        # Cases sharing a key with the batch, and the originals it corrects: few.
        payload = self._log.scan("cases").select(list(CASE_PAYLOAD_COLUMNS))
        # A semi join needs no unique right side: deduplicating 10M keys first took
        # 2.8 s, the join without it 0.9 s (issue 15).
        wanted = [
            payload.join(cases.lazy().select(key), on=list(key), how="semi")
            for key in duplicate_keys(ruleset)
        ]
        originals = cases.select(pl.col("original_case_id").alias("case_id")).drop_nulls()
        if originals.height:
            wanted.append(payload.join(originals.lazy(), on="case_id", how="semi"))
        found = BatchHistory()
        if wanted:
            candidates = pl.concat(wanted).unique("case_id").collect(engine=_STREAMING)
            latest = _latest_decisions(self._log, candidates.lazy().select("case_id"))
            decided = candidates.join(latest.collect(engine=_STREAMING), on="case_id")
            found = batch_history_from(decided.select(list(DECIDED_SCHEMA)), cases, ruleset)
        return BatchHistory(
            prior_claims=found.prior_claims,
            accumulated=self.accumulated(cases),
            originals=found.originals,
        )

    def accumulated(self, cases: pl.DataFrame) -> pl.DataFrame:
        """Spec §5: per member-year of `cases`, the deductible (`used_cents`) and the
        deductible + coinsurance (`spent_cents`) of every case whose latest decision is
        APPROVED, summed in one streaming pass over the log."""
        member_years = cases.lazy().select("member_id", SERVICE_YEAR)
        in_years = (
            self._log.scan("cases")
            .select("case_id", "member_id", SERVICE_YEAR)
            .join(member_years, on=MEMBER_YEAR, how="semi")
        )
        return (
            in_years.join(_latest_approved(self._log), on="case_id")
            .group_by(MEMBER_YEAR)
            .agg(
                pl.col("deductible_cents").sum().cast(pl.Int64).alias("used_cents"),
                (pl.col("deductible_cents") + pl.col("coinsurance_cents"))
                .sum()
                .cast(pl.Int64)
                .alias("spent_cents"),
            )
            .select(list(ACCUMULATED_SCHEMA))
            .collect(engine=_STREAMING)
        )

    def decision_count(self) -> int:
        """Decisions the log holds (rows of its decisions table), from the Parquet
        footers: a figure for the logs, without reading the decisions."""
        if not has_event_log(self.lake):
            return 0
        return int(self._log.scan("decisions").select(pl.len()).collect().item())


def _adjudications(log: HistorySnapshot) -> pl.LazyFrame:
    """Decisions of the batch that received their case (null source: a log written
    before reviews and corrections existed, where every decision was one)."""
    source = pl.col("decision_source")
    return log.scan("decisions").filter(source.is_null() | (source == ADJUDICATION))


def _later(log: HistorySnapshot) -> pl.LazyFrame:
    """Reviews and corrections: decisions that come after a case's adjudication."""
    source = pl.col("decision_source")
    return log.scan("decisions").filter(source.is_not_null() & (source != ADJUDICATION))


def _latest_decisions(log: HistorySnapshot, case_ids: pl.LazyFrame) -> pl.LazyFrame:
    """The latest decision (DECISION columns) of each of `case_ids` that has one."""
    first = _adjudications(log).select(_DECISION_COLUMNS).join(case_ids, on="case_id", how="semi")
    later = _later(log).select(_DECISION_COLUMNS).join(case_ids, on="case_id", how="semi")
    return (
        pl.concat([first, later])
        .sort("decided_at", maintain_order=True)
        .group_by("case_id", maintain_order=True)
        .last()
        .drop("decided_at")
    )


def _latest_approved(log: HistorySnapshot) -> pl.LazyFrame:
    """case_id, deductible and coinsurance of every case whose latest decision is
    APPROVED: the adjudications of cases with no later decision, and, for the few with
    one, their latest decision by decided_at (as `_latest_decisions` defines it)."""
    corrected = _later(log).select("case_id").unique()
    amounts = ["case_id", "deductible_cents", "coinsurance_cents"]
    adjudicated = (
        _adjudications(log)
        .filter(pl.col("status") == APPROVED)
        .select(amounts)
        .join(corrected, on="case_id", how="anti")
    )
    decided_again = _latest_decisions(log, corrected)
    return pl.concat(
        [adjudicated, decided_again.filter(pl.col("status") == APPROVED).select(amounts)]
    )


def _frame(values: pl.Series, name: str) -> pl.LazyFrame:
    """Values to match by a semi join, as column `name`. `is_in` of a list of millions
    (a batch's ids) is several times slower than a semi join on them."""
    return values.alias(name).to_frame().lazy()
