"""Partitioned adjudication: one validated batch split by member, decided in parts.

Every piece of state the rules and pricing read is per member: coverage spans,
duplicate keys (which include member_id), deductible accumulators. So once the
whole batch is validated (that needs all of it: repeated case_ids), its valid
cases can be split by a hash of member_id and each part decided by the same pure
function (`claimsflow.core.decide.decide_cases`) on its own members' reference
rows and history. Corrections (spec §9) are settled on the whole batch first
(`settle_corrections`), and only the cases to adjudicate go to the parts. The
parts' outputs, part after part, are exactly the decisions and rule hits of the
one-piece run, in another order: a case's place among its batch's rows in the log
means nothing (`row_number` keeps the file's order), and putting 10M decisions back
in file order cost the coordinator 8 s and 3.8 GB more at 10M cases (issue 15).

The parts travel as Parquet folders (inputs and outputs), never as pickled
frames: a Dask worker gets a path and returns a small `PartitionResult`. Their
outputs go from their files into the batch's event tables as the log is written
(`record_decided` with lazy tables): the coordinator never reads them all back into
memory.

    <work>/part-00000/cases.parquet         the part's valid cases, in file order
                                            (cases/<chunk>.parquet, chunk after
                                            chunk, for claimsflow/pipeline/chunked.py)
                      members.parquet       reference rows of the part's members
                      providers.parquet     the whole provider table
                      fee_schedule.parquet  the whole fee schedule
                      prior_claims.parquet  earlier APPROVED/PENDED claims of its members
                      accumulated.parquet   deductible and out-of-pocket its members used
                      decisions.parquet     written by decide_partition
                      rule_hits.parquet     written by decide_partition
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from claimsflow.core.decide import (
    decide_cases,
    settle_corrections,
    void_decisions,
    voided_originals,
)
from claimsflow.core.history import BatchHistory
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.faults import crash_point
from claimsflow.lake import eventlog
from claimsflow.lake.history import LakeHistory
from claimsflow.pipeline.batch import (
    BatchOutcome,
    Conclude,
    DecidedBatch,
    PreparedBatch,
    RunContext,
    record_decided,
    status_counts,
)

PARTITION = "_partition"
INPUT_TABLES = ("cases", "members", "providers", "fee_schedule", "prior_claims", "accumulated")
OUTPUT_TABLES = ("decisions", "rule_hits")

# A fixed seed: the assignment of members to parts is the same in every run of a
# given Polars version (the pinned one). It only decides where work happens; the
# results do not depend on it (tests/test_partitioning.py checks every split).
_SEED = 20261125


class PartitioningError(Exception):
    """The rule set cannot be decided in parts (state that is not per member)."""


@dataclass(frozen=True)
class PartitionResult:
    """What a worker sends back: where its outputs are and how many it decided."""

    folder: str
    cases: int
    decided: int


#: Decides the parts in the given folders with the rule set; one result per folder.
RunParts = Callable[[list[Path], RuleSet], list[PartitionResult]]


def decide_parts_here(folders: list[Path], ruleset: RuleSet) -> list[PartitionResult]:
    """Decide every part in this process, one after the other."""
    return [decide_partition(folder, ruleset) for folder in folders]


def partition_of(partitions: int) -> pl.Expr:
    """The part (0 .. partitions-1) a case belongs to, by a stable hash of its member_id."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (pl.col("member_id").hash(_SEED) % partitions).cast(pl.UInt32).alias(PARTITION)


def check_partitionable(ruleset: RuleSet) -> None:
    """Refuse a rule set whose duplicate keys do not include member_id: its state
    would cross members, and a split by member would give a different answer."""
    for rule in ruleset.rules:
        if rule.kind == "duplicate" and "member_id" not in rule.key:
            raise PartitioningError(
                f"{ruleset.source}: rule {rule.id}: duplicate key {list(rule.key)} has no "
                "member_id, so this rule set cannot run with more than one partition"
            )


def split_cases(cases: pl.DataFrame, partitions: int) -> Iterator[pl.DataFrame]:
    """The valid cases of each non-empty part, in part order, each in the batch's row
    order."""
    for _, part in split_by_part(cases, partitions):
        yield part


def split_by_part(cases: pl.DataFrame, partitions: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """Each non-empty part's number and valid cases, in part order, each in the
    batch's row order.

    Each part is copied out of the batch when it is asked for: a writer holds one
    part at a time, not a second copy of the whole batch (issue 15).
    """
    part = cases.select(partition_of(partitions)).to_series()
    for key in part.unique().sort():
        yield int(key), cases.filter(part == key)


def partition_inputs(
    cases: pl.DataFrame, reference: Reference, history: BatchHistory
) -> dict[str, pl.DataFrame]:
    """One part's input tables: its cases and only its own members' reference and history."""
    return {"cases": cases, **members_inputs(cases.select("member_id"), reference, history)}


def members_inputs(
    member_ids: pl.DataFrame, reference: Reference, history: BatchHistory
) -> dict[str, pl.DataFrame]:
    """A part's input tables but its cases: the reference rows and history of its
    members (`member_ids`, repeats allowed), and the whole provider table and fee
    schedule."""
    members = member_ids.unique()
    return {
        "members": reference.members.join(members, on="member_id", how="semi"),
        "providers": reference.providers,
        "fee_schedule": reference.fee_schedule,
        "prior_claims": history.prior_claims.join(members, on="member_id", how="semi"),
        "accumulated": history.accumulated.join(members, on="member_id", how="semi"),
    }


def write_partitions(
    work: Path,
    cases: pl.DataFrame,
    reference: Reference,
    history: BatchHistory,
    partitions: int,
) -> list[Path]:
    """Write each non-empty part's inputs under `work`; the folders, in part order."""
    folders: list[Path] = []
    for index, part in enumerate(split_cases(cases, partitions)):
        folder = work / f"part-{index:05d}"
        folder.mkdir(parents=True)
        for name, frame in partition_inputs(part, reference, history).items():
            frame.write_parquet(folder / f"{name}.parquet", compression="zstd")
        folders.append(folder)
        del part
    return folders


def decide_partition(folder: Path, ruleset: RuleSet) -> PartitionResult:
    """Decide one part from its folder and write its decisions and rule hits beside it."""
    # glob=False: the folder is under the lake, whose path may hold glob characters.
    inputs = {name: _read_input(folder, name) for name in INPUT_TABLES}
    reference = Reference(inputs["members"], inputs["providers"], inputs["fee_schedule"])
    history = BatchHistory(prior_claims=inputs["prior_claims"], accumulated=inputs["accumulated"])
    decisions, rule_hits = decide_cases(inputs["cases"], reference, ruleset, history)
    crash_point("in-partition")
    # Written aside and renamed: a retried part (its worker died) never leaves a
    # half-written output for the combining step to read.
    for name, frame in (("decisions", decisions), ("rule_hits", rule_hits)):
        aside = folder / f".{name}.{os.getpid()}.parquet"
        frame.write_parquet(aside, compression="zstd")
        os.replace(aside, folder / f"{name}.parquet")
    return PartitionResult(str(folder), inputs["cases"].height, decisions.height)


def _read_input(folder: Path, name: str) -> pl.DataFrame:
    """One input table of a part: its file, or the files of its folder in name order
    (a batch prepared in chunks writes a part's cases a chunk at a time)."""
    pieces = folder / name
    if pieces.is_dir():
        return pl.read_parquet(sorted(pieces.iterdir()), glob=False)
    return pl.read_parquet(folder / f"{name}.parquet", glob=False)


@contextmanager
def parts_folder(run: RunContext, label: str) -> Iterator[Path]:
    """Where a batch's parts are written, decided and read back from: in the lake's
    staging area, and removed once the batch is recorded or given up. A run that dies
    first leaves it to the next run's clean-up; nothing is recorded until then."""
    work = eventlog.staging_dir(run.lake) / f"parts-{label[:16]}-{uuid.uuid4().hex}"
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def decide_in_partitions(
    prepared: PreparedBatch,
    run: RunContext,
    partitions: int,
    run_parts: RunParts,
    work: Path,
) -> DecidedBatch:
    """Decide a validated batch in parts under `work` (see `parts_folder`): settle its
    corrections on the whole batch (spec §9), write the parts, have `run_parts`
    decide each (in this process, on threads or on a Dask cluster).

    The parts' decisions and rule hits are not read back here: the batch's tables
    read them from the parts' files while the log is written (`record_decided`), so
    the coordinator never holds every part's outputs at once (issue 15). `work` must
    outlive the record.
    """
    cases = prepared.validated.cases
    # The batch's history is read once, then sliced to each part's members.
    settled = settle_corrections(cases, LakeHistory(run.lake).for_batch(cases, run.ruleset))
    originals, voids = voided_originals(settled.corrections), void_decisions(settled.voids)
    if settled.to_adjudicate.is_empty():
        decisions, rule_hits = (
            frame.lazy()
            for frame in decide_cases(
                settled.to_adjudicate, run.reference, run.ruleset, settled.history
            )
        )
    else:
        folders = write_partitions(
            work, settled.to_adjudicate, run.reference, settled.history, partitions
        )
        results = run_parts(folders, run.ruleset)
        decided = sum(r.decided for r in results)
        if decided != settled.to_adjudicate.height:
            raise PartitioningError(
                f"parts decided {decided} of {settled.to_adjudicate.height} case(s)"
            )
        decisions, rule_hits = (part_outputs(results, name) for name in OUTPUT_TABLES)
    return DecidedBatch(
        rows_in=prepared.rows_in,
        cases=cases,
        # As `decide` orders them: the VOIDED originals, the adjudicated cases (part
        # after part), the void rows.
        decisions=pl.concat([originals.lazy(), decisions, voids.lazy()], how="diagonal_relaxed"),
        rule_hits=rule_hits,
        rejections=prepared.validated.rejections,
        rows_decided=cases.height,
        rows_rejected=prepared.validated.rejections.height,
        voided_originals=originals.height,
        by_status=status_counts(
            pl.concat([decisions.select("status"), voids.lazy().select("status")])
        ),
    )


def part_outputs(results: list[PartitionResult], name: str) -> pl.LazyFrame:
    """One output table of every part, part after part, read when it is collected."""
    # glob=False: the folders are under the lake, whose path may hold glob characters.
    return pl.scan_parquet([Path(r.folder) / f"{name}.parquet" for r in results], glob=False)


def conclude_in_partitions(run: RunContext, partitions: int, run_parts: RunParts) -> Conclude:
    """`process_batch`'s last step for a batch decided in parts: decide it, then record
    it from the parts' outputs."""

    def conclude(prepared: PreparedBatch) -> BatchOutcome:
        with parts_folder(run, prepared.batch_id) as work:
            decided = decide_in_partitions(prepared, run, partitions, run_parts, work)
            return record_decided(prepared.identity, decided, run)

    return conclude
