"""What-if simulation: replay recorded cases through a candidate rule set.

The cases received in a date range are read back from the event log (their
received payloads joined with the decisions recorded for them) and decided again
with `pipeline.decide_batch`, exactly as the nightly run decides them: batch by
batch in the order the batches were processed, each batch seeing a `History` of
every decision before it. Nothing is written to the event log; the comparison is
returned (and can be written to a report file by `write_report`).

The replay window is every batch from the first to the last that holds a case
received in the range. Those batches are replayed whole: a batch is decided as a
unit (in-batch duplicates, the deductible order of spec §5), so replaying only
part of one would change the decisions of the rest. The history starts from the
decisions recorded for the batches processed before the window. Only the cases
received in the range are compared and reported; the other cases of the window's
batches are context (they shape the history as they would under the candidate).
Replaying with the rule set that decided the cases reproduces them exactly.

Reference data are the ones given (today's files), not those of the original run.

The claim lifecycle (docs/decisions.md, "What-if and the lifecycle"): a case's
recorded decision is the one made when its batch was processed (its adjudication,
or the VOIDED record of a void row), compared with the candidate's adjudication.
The history before the window is every decision recorded before the window's first
batch, reviews and corrections included (each case by its latest decision then;
a later review or correction is not seen early). Within the window each batch sees
the candidate's decisions of the window's earlier batches, their corrections
replayed as the run did them (a correction voids its original again), and the
examiners' reviews recorded between them, kept as decided (status and amounts as
recorded) for the cases the candidate pended too: a case the candidate decided
outright would never have reached an examiner, so its review is dropped.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.lake import eventlog
from claimsflow.lake.storage import Location
from claimsflow.pipeline.batch import decide_batch
from claimsflow.text import money
from claimsflow.vocabulary import PENDED, PROCESSED, RAW, REVIEW, ROW_NUMBER

#: A case the candidate run would reject instead of deciding (e.g. a resubmission).
REJECTED = "REJECTED"
BATCH_ORDER = ["processed_at", "batch_id"]
DEFAULT_SAMPLE = 20

#: Columns of the recorded frame: where and when a case was processed, its
#: payload, and the decision the event log holds for it.
RECORDED_DECISION = {
    "status": "old_status",
    "reason_codes": "old_reason_codes",
    "deductible_cents": "old_deductible_cents",
    "paid_cents": "old_paid_cents",
    "ruleset_version": "old_ruleset_version",
}


#: A recorded decision, placed in the order of the log's batches (case batches and
#: review files alike, by processed_at then batch_id).
DECISION_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "status": pl.String(),
    "deductible_cents": pl.Int64(),
    "coinsurance_cents": pl.Int64(),
    "decided_at": pl.Datetime("us", "UTC"),
    "decision_source": pl.String(),
    "processed_at": pl.Datetime("us", "UTC"),
    "batch_id": pl.String(),
}
REVIEWED_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "status": pl.String(),
    "deductible_cents": pl.Int64(),
    "coinsurance_cents": pl.Int64(),
    "batch_seq": pl.Int64(),
}


class WhatIfError(Exception):
    """A what-if that cannot run (no event log, a bad date range); one line for the user."""


@dataclass(frozen=True)
class ReplayPlan:
    """What to replay: the window's batches in processing order and where history starts."""

    date_from: dt.date
    date_to: dt.date
    start_history: MemoryHistory
    batches: tuple[pl.DataFrame, ...]
    in_range: pl.DataFrame
    #: Examiners' decisions recorded between the window's batches, with the
    #: `batch_seq` of the case batch each follows (REVIEWED_SCHEMA).
    reviews: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REVIEWED_SCHEMA))

    def reviews_after(self, batch: pl.DataFrame) -> pl.DataFrame:
        """The review decisions recorded after this window batch and before the next."""
        seq = batch["batch_seq"][0]
        return self.reviews.filter(pl.col("batch_seq") == seq)


@dataclass(frozen=True)
class BatchReplay:
    """The candidate's decisions for one replayed batch (nothing recorded)."""

    batch_id: str
    source: str
    cases: int
    decisions: pl.DataFrame
    rule_hits: pl.DataFrame
    rejected_case_ids: pl.Series


@dataclass(frozen=True)
class WhatIfResult:
    """Recorded versus candidate decision of every case received in the range."""

    date_from: dt.date
    date_to: dt.date
    ruleset: str
    ruleset_version: str
    batches_replayed: int
    cases_replayed: int
    cases: pl.DataFrame

    @property
    def changed(self) -> pl.DataFrame:
        return self.cases.filter(pl.col("changed"))

    @property
    def transitions(self) -> pl.DataFrame:
        """Number of cases per (old status, new status), changed or not."""
        return (
            self.cases.group_by("old_status", "new_status")
            .agg(pl.len().cast(pl.Int64).alias("cases"))
            .sort("old_status", "new_status")
        )

    @property
    def reason_codes(self) -> pl.DataFrame:
        """Per reason code: cases carrying it as recorded, under the candidate, difference."""
        old = _code_counts(self.cases, "old_reason_codes", "old_cases")
        new = _code_counts(self.cases, "new_reason_codes", "new_cases")
        return (
            old.join(new, on="reason_code", how="full", coalesce=True)
            .with_columns(pl.col("old_cases", "new_cases").fill_null(0))
            .with_columns((pl.col("new_cases") - pl.col("old_cases")).alias("change"))
            .sort("reason_code")
        )

    @property
    def old_paid_cents(self) -> int:
        return int(self.cases["old_paid_cents"].sum())

    @property
    def new_paid_cents(self) -> int:
        return int(self.cases["new_paid_cents"].sum())

    @property
    def paid_delta_cents(self) -> int:
        return self.new_paid_cents - self.old_paid_cents

    def sample(self, size: int = DEFAULT_SAMPLE) -> pl.DataFrame:
        """The first `size` changed cases (in processing order) with their explanation."""
        return self.changed.head(size).select(
            "case_id",
            "received_date",
            "old_status",
            "new_status",
            "paid_delta_cents",
            "explanation",
        )

    def summary_lines(self) -> list[str]:
        changed = self.changed.height
        return [
            f"what-if {self.ruleset} on cases received {self.date_from} .. {self.date_to}: "
            f"{self.cases.height} case(s), {changed} would change "
            f"({self.batches_replayed} batch(es), {self.cases_replayed} case(s) replayed)",
            f"paid: {money(self.old_paid_cents)} recorded, {money(self.new_paid_cents)} under "
            f"{self.ruleset}, delta {money(self.paid_delta_cents)}",
        ]


def recorded_cases(lake: Location) -> pl.DataFrame:
    """Every decided case with its batch, payload and latest recorded decision.

    Read-only: refuses a folder that holds no event log rather than creating one.
    """
    if not eventlog.has_event_log(lake):
        raise WhatIfError(f"{lake}: no event log here (run `adjudicate run` first)")
    decisions = eventlog.scan_table(lake, "decisions")
    # The decision made when the case's batch was processed (spec §4, §9), and the
    # case's latest decision (reviews and corrections included) for the history.
    own = decisions.select("batch_id", "case_id", *RECORDED_DECISION)
    latest = (
        decisions.select(
            "case_id",
            "decided_at",
            pl.col("status").alias("latest_status"),
            pl.col("deductible_cents").alias("latest_deductible_cents"),
            pl.col("coinsurance_cents").alias("latest_coinsurance_cents"),
        )
        .sort("decided_at", maintain_order=True)
        .group_by("case_id", maintain_order=True)
        .last()
        .drop("decided_at")
    )
    batches = (
        eventlog.scan_table(lake, "batch")
        .filter(pl.col("status") == PROCESSED)
        .select("batch_id", "source", "processed_at")
    )
    cases = eventlog.scan_table(lake, "cases").select("batch_id", ROW_NUMBER, *CASE_PAYLOAD_COLUMNS)
    return (
        cases.join(own, on=["batch_id", "case_id"], how="inner")
        .join(latest, on="case_id", how="left")
        .join(batches, on="batch_id", how="inner")
        .rename(RECORDED_DECISION)
        .sort(*BATCH_ORDER, ROW_NUMBER)
        .collect()
    )


def recorded_decisions(lake: Location) -> pl.DataFrame:
    """Every recorded decision (DECISION_EVENT_SCHEMA) with the processed_at of the
    batch or review file that recorded it."""
    if not eventlog.has_event_log(lake):
        raise WhatIfError(f"{lake}: no event log here (run `adjudicate run` first)")
    batches = (
        eventlog.scan_table(lake, "batch")
        .filter(pl.col("status") == PROCESSED)
        .select("batch_id", "processed_at")
    )
    return (
        eventlog.scan_table(lake, "decisions")
        .join(batches, on="batch_id", how="inner")
        .select(list(DECISION_EVENT_SCHEMA))
        .collect()
    )


def plan_replay(
    recorded: pl.DataFrame,
    date_from: dt.date,
    date_to: dt.date,
    decisions: pl.DataFrame | None = None,
) -> ReplayPlan:
    """Split the recorded cases into the history before the window and the window's batches.

    With `decisions` (`recorded_decisions`), the history before the window holds each
    case's latest decision recorded before the window's first batch, and the reviews
    recorded between the window's batches are kept for the replay; without, each
    case's latest decision overall, and no review within the window.
    """
    if date_from > date_to:
        raise WhatIfError(f"the range is empty: {date_from} is after {date_to}")
    order = (
        recorded.select(*BATCH_ORDER)
        .unique()
        .sort(*BATCH_ORDER)
        .with_row_index("batch_seq")
        .select("batch_id", pl.col("batch_seq").cast(pl.Int64))
    )
    numbered = recorded.join(order, on="batch_id", how="left").sort("batch_seq", ROW_NUMBER)
    in_range_flag = pl.col("received_date").is_between(date_from, date_to)
    in_range = numbered.filter(in_range_flag)
    if in_range.height == 0:
        first, last = 0, -1
    else:
        first = int(in_range["batch_seq"].min())  # type: ignore[arg-type]
        last = int(in_range["batch_seq"].max())  # type: ignore[arg-type]
    before = numbered.filter(pl.col("batch_seq") < first)
    window = numbered.filter(pl.col("batch_seq").is_between(first, last))
    reviews = pl.DataFrame(schema=REVIEWED_SCHEMA)
    latest = {
        "latest_status": "status",
        "latest_deductible_cents": "deductible_cents",
        "latest_coinsurance_cents": "coinsurance_cents",
    }
    if decisions is not None:
        placed = _placed(decisions, numbered)
        as_of_window = (
            placed.filter(pl.col("batch_seq") < first)
            .sort("decided_at", maintain_order=True)
            .group_by("case_id", maintain_order=True)
            .last()
            .select("case_id", *(pl.col(v).alias(k) for k, v in latest.items()))
        )
        before = before.drop(*latest).join(as_of_window, on="case_id", how="inner")
        reviews = placed.filter(
            (pl.col("decision_source") == REVIEW) & pl.col("batch_seq").is_between(first, last - 1)
        ).select(list(REVIEWED_SCHEMA))
    start = MemoryHistory.of(
        before.select(*CASE_PAYLOAD_COLUMNS, *(pl.col(k).alias(v) for k, v in latest.items()))
    )
    return ReplayPlan(
        date_from=date_from,
        date_to=date_to,
        start_history=start,
        batches=tuple(window.partition_by("batch_seq", maintain_order=True)),
        in_range=in_range,
        reviews=reviews,
    )


def _placed(decisions: pl.DataFrame, numbered: pl.DataFrame) -> pl.DataFrame:
    """Each decision with the batch_seq of the last case batch recorded at or before
    the batch (or review file) that recorded it: -1 before the first."""
    order = numbered.select(*BATCH_ORDER, "batch_seq").unique().sort(*BATCH_ORDER)
    keyed = decisions.sort(*BATCH_ORDER).join_asof(
        order.rename({"batch_id": "_case_batch"}), on="processed_at", strategy="backward"
    )
    return keyed.with_columns(pl.col("batch_seq").fill_null(-1).cast(pl.Int64))


def as_text_batch(cases: pl.DataFrame) -> pl.DataFrame:
    """Recorded (typed) case payloads as the text batch they were read as.

    Dates go back to ISO text and cents to a two-decimal amount, so the replay
    goes through the same validation as the original run. Row numbers are kept.
    """
    text = cases.select(
        "case_id",
        "member_id",
        "provider_id",
        pl.col("service_date").dt.strftime("%Y-%m-%d"),
        pl.col("received_date").dt.strftime("%Y-%m-%d"),
        "procedure_code",
        "diagnosis_code",
        pl.col("units").cast(pl.String),
        _amount_text(pl.col("billed_cents")).alias("billed_amount"),
        pl.col("prior_auth_id").fill_null(""),
        pl.col("claim_frequency").fill_null(""),
        pl.col("original_case_id").fill_null(""),
    )
    return text.with_columns(
        cases[ROW_NUMBER].alias(ROW_NUMBER),
        pl.struct(text.columns).struct.json_encode().alias(RAW),
    )


def replay_batch(
    cases: pl.DataFrame,
    reference: Reference,
    candidate: RuleSet,
    history: MemoryHistory,
    reviews: pl.DataFrame | None = None,
) -> tuple[BatchReplay, MemoryHistory]:
    """Decide one recorded batch under `candidate`; returns its replay and the next
    history (with `reviews`, the review decisions recorded after the batch, applied to
    the cases the replay left PENDED)."""
    decision = decide_batch(as_text_batch(cases), reference, candidate, history)
    # The batch's own rows (after the VOIDED decisions of the originals it corrects).
    own = decision.decisions.slice(decision.voided_originals)
    replay = BatchReplay(
        batch_id=str(cases["batch_id"][0]),
        source=str(cases["source"][0]),
        cases=cases.height,
        decisions=own.select(
            "case_id",
            pl.col("status").alias("new_status"),
            pl.col("reason_codes").alias("new_reason_codes"),
            pl.col("deductible_cents").alias("new_deductible_cents"),
            pl.col("paid_cents").alias("new_paid_cents"),
        ),
        rule_hits=decision.rule_hits.select("case_id", "rule_id", "rule_order"),
        rejected_case_ids=decision.rejections["case_id"],
    )
    # As a run does after recording a batch: later batches see this one's decisions.
    after = history.advanced_by(decision.cases, decision.decisions)
    return replay, with_reviews(after, reviews)


def with_reviews(history: MemoryHistory, reviews: pl.DataFrame | None) -> MemoryHistory:
    """The history with the examiners' recorded decisions of the cases it holds as
    PENDED (a case the candidate did not pend never reached an examiner)."""
    if reviews is None or reviews.is_empty():
        return history
    pended = history.latest().filter(pl.col("status") == PENDED)
    applied = reviews.join(pended.select("case_id"), on="case_id", how="semi")
    if applied.is_empty():
        return history
    return history.advanced_by(pended, applied)


def compare(plan: ReplayPlan, replays: Iterable[BatchReplay], candidate: RuleSet) -> WhatIfResult:
    """Recorded versus replayed decision of every case received in the plan's range."""
    done = list(replays)
    decisions = pl.concat(
        [_empty_decisions(), *(r.decisions for r in done)], how="vertical_relaxed"
    )
    hits = pl.concat([_empty_hits(), *(r.rule_hits for r in done)], how="vertical_relaxed")
    fired = (
        hits.sort("case_id", "rule_order")
        .group_by("case_id")
        .agg(pl.col("rule_id").alias("new_rules_fired"))
    )
    cases = (
        plan.in_range.join(decisions, on="case_id", how="left", maintain_order="left")
        .join(fired, on="case_id", how="left", maintain_order="left")
        .with_columns(
            # A case the candidate run would not decide (rejected) has no new decision.
            pl.col("new_status").fill_null(REJECTED),
            pl.col("new_reason_codes").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("new_rules_fired").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("new_deductible_cents").fill_null(0),
            pl.col("new_paid_cents").fill_null(0),
        )
        .with_columns(
            (pl.col("new_paid_cents") - pl.col("old_paid_cents")).alias("paid_delta_cents")
        )
    )
    changed = (
        (pl.col("old_status") != pl.col("new_status"))
        | (_codes_text("old_reason_codes") != _codes_text("new_reason_codes"))
        | (pl.col("paid_delta_cents") != 0)
    )
    explanation = pl.format(
        "{} -> {}; reason codes [{}] -> [{}]; rules fired: {}; paid {} -> {}",
        "old_status",
        "new_status",
        _codes_text("old_reason_codes"),
        _codes_text("new_reason_codes"),
        pl.when(pl.col("new_rules_fired").list.len() > 0)
        .then(pl.col("new_rules_fired").list.join(", "))
        .otherwise(pl.lit("none")),
        _money_text(pl.col("old_paid_cents")),
        _money_text(pl.col("new_paid_cents")),
    )
    compared = cases.with_columns(
        changed.alias("changed"),
        explanation.alias("explanation"),
        pl.lit(candidate.version).alias("candidate_ruleset_version"),
    ).select(
        "case_id",
        "batch_id",
        "source",
        "processed_at",
        ROW_NUMBER,
        "received_date",
        "service_date",
        "member_id",
        "billed_cents",
        "old_ruleset_version",
        "candidate_ruleset_version",
        "old_status",
        "new_status",
        "old_reason_codes",
        "new_reason_codes",
        "new_rules_fired",
        "old_paid_cents",
        "new_paid_cents",
        "paid_delta_cents",
        "old_deductible_cents",
        "new_deductible_cents",
        "changed",
        "explanation",
    )
    return WhatIfResult(
        date_from=plan.date_from,
        date_to=plan.date_to,
        ruleset=candidate.label,
        ruleset_version=candidate.version,
        batches_replayed=len(done),
        cases_replayed=sum(r.cases for r in done),
        cases=compared,
    )


def simulate(
    lake: Location, reference: Reference, candidate: RuleSet, date_from: dt.date, date_to: dt.date
) -> WhatIfResult:
    """The whole what-if without orchestration: plan, replay batch by batch, compare."""
    plan = plan_replay(recorded_cases(lake), date_from, date_to, recorded_decisions(lake))
    history = plan.start_history
    replays: list[BatchReplay] = []
    for batch in plan.batches:  # one step per batch, never per case
        replay, history = replay_batch(
            batch, reference, candidate, history, plan.reviews_after(batch)
        )
        replays.append(replay)
    return compare(plan, replays, candidate)


def report_path(reports_dir: Path, now: dt.datetime) -> Path:
    return reports_dir / f"what-if-{now.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}.parquet"


def write_report(result: WhatIfResult, reports_dir: Path, now: dt.datetime | None = None) -> Path:
    """Write the per-case comparison to reports/what-if-<timestamp>.parquet (atomically)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    target = report_path(reports_dir, now or dt.datetime.now(dt.UTC))
    aside = reports_dir / f".{target.name}.{uuid.uuid4().hex}"
    result.cases.write_parquet(aside, compression="zstd")
    os.replace(aside, target)
    return target


def _amount_text(cents: pl.Expr) -> pl.Expr:
    return pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.String).str.zfill(2))


def _money_text(cents: pl.Expr) -> pl.Expr:
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.format("{}{}", sign, _amount_text(cents.abs()))


def _codes_text(column: str) -> pl.Expr:
    return pl.col(column).list.join(", ")


def _code_counts(cases: pl.DataFrame, column: str, name: str) -> pl.DataFrame:
    return (
        cases.select(pl.col(column).alias("reason_code"))
        .explode("reason_code")
        .drop_nulls()
        .group_by("reason_code")
        .agg(pl.len().cast(pl.Int64).alias(name))
    )


def _empty_decisions() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "case_id": pl.String,
            "new_status": pl.String,
            "new_reason_codes": pl.List(pl.String),
            "new_deductible_cents": pl.Int64,
            "new_paid_cents": pl.Int64,
        }
    )


def _empty_hits() -> pl.DataFrame:
    return pl.DataFrame(schema={"case_id": pl.String, "rule_id": pl.String, "rule_order": pl.Int64})
