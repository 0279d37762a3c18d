"""What earlier batches decided, as the rules and pricing need it.

Rebuilt from the event log at the start of a run, then advanced batch by batch
in memory, so every batch of a run sees every decision before it (spec §6).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from claimsflow.eventlog import TABLE_SCHEMAS, scan_table
from claimsflow.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.rules.engine import APPROVED, PENDED
from claimsflow.storage import Location

CASE_KEY_COLUMNS = list(CASE_PAYLOAD_COLUMNS)


@dataclass(frozen=True)
class History:
    """decided_case_ids: every case_id with a decision.
    prior_claims: cases decided APPROVED or PENDED (their case columns), for duplicates.
    deductible_used: member_id, service_year, used_cents (APPROVED cases' deductible).
    """

    decided_case_ids: pl.Series
    prior_claims: pl.DataFrame
    deductible_used: pl.DataFrame

    @classmethod
    def empty(cls) -> History:
        return cls.from_decided_cases(_empty_decided())

    @classmethod
    def from_lake(cls, lake: Location) -> History:
        decisions = scan_table(lake, "decisions").select(
            "batch_id", "case_id", "status", "deductible_cents", "decided_at"
        )
        cases = scan_table(lake, "cases").select("batch_id", *CASE_KEY_COLUMNS)
        latest = decisions.sort("decided_at").group_by("case_id").last()
        decided = latest.join(cases, on=["batch_id", "case_id"], how="left").collect()
        return cls.from_decided_cases(decided)

    @classmethod
    def from_decided_cases(cls, decided: pl.DataFrame) -> History:
        return cls(
            decided_case_ids=decided["case_id"],
            prior_claims=_prior_claims(decided),
            deductible_used=_deductible_used(decided),
        )

    def advanced_by(self, decided: pl.DataFrame) -> History:
        """The history after a batch whose decided cases (with case columns) are given."""
        claims = _prior_claims(decided)
        used = pl.concat([self.deductible_used, _deductible_used(decided)])
        return History(
            decided_case_ids=pl.concat([self.decided_case_ids, decided["case_id"]]),
            prior_claims=pl.concat([self.prior_claims, claims]),
            deductible_used=used.group_by("member_id", "service_year").agg(
                pl.col("used_cents").sum()
            ),
        )


def _prior_claims(decided: pl.DataFrame) -> pl.DataFrame:
    return decided.filter(pl.col("status").is_in([APPROVED, PENDED])).select(
        c for c in CASE_KEY_COLUMNS if c != "case_id"
    )


def _deductible_used(decided: pl.DataFrame) -> pl.DataFrame:
    return (
        decided.filter(pl.col("status") == APPROVED)
        .group_by(
            "member_id", pl.col("service_date").dt.year().cast(pl.Int32).alias("service_year")
        )
        .agg(pl.col("deductible_cents").sum().cast(pl.Int64).alias("used_cents"))
    )


def _empty_decided() -> pl.DataFrame:
    cases = TABLE_SCHEMAS["cases"]
    return pl.DataFrame(
        schema={
            "status": pl.String(),
            "deductible_cents": pl.Int64(),
            **{c: cases[c] for c in CASE_KEY_COLUMNS},
        }
    )
