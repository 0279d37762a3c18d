"""A local CSV, JSON Lines or Parquet batch prepared a chunk at a time and decided in
parts (issue 15): the partitioned executors' coordinator never holds the whole batch,
only a chunk of it at a time and the few columns of the whole that its verdicts and
history need (case_ids; the history's keys of the valid cases; the correction rows).

The one-piece run reads a batch whole, validates it whole and holds its typed cases
until they are recorded (~3.7 GiB at its peak for 10M cases). Here the coordinator
reads the file twice, a chunk at a time (claimsflow/ingest/chunks.py: a CSV or JSON
Lines batch in pieces of whole lines, a Parquet batch in slices of rows):

1. identity: the batch id, hashed from the file a block at a time; a batch recorded
   already is SKIPPED, as always (spec §6);
2. the first pass keeps only what validation needs from the whole batch: which rows
   repeat an earlier row's case_id (spec §3, the first row wins), and the latest
   status of every case_id the batch names (resubmissions, §3; corrections, §9);
3. the second pass validates each chunk as part of the batch (`validate_batch` with
   `EarlierRows`: those repeats, and the originals corrected by earlier chunks' valid
   correction rows) and writes its valid cases straight to their parts' folders, its
   rejections and correction rows aside;
4. the batch's history is read for its valid cases (only the columns it reads, from
   the parts' files), its corrections settled (§9), each part's reference and
   history written beside its cases, and the parts decided (`decide_partition`);
5. the batch's event tables are written from the files (`record_decided`).

The result is the one-piece run's, row for row (tests/test_chunked.py). Rows sit in
the log's tables part after part rather than in file order, which means nothing:
`row_number` keeps the file's order. A file whose pieces do not all read is read
whole (`chunks.ReadWhole`): its reason and quarantine are then the one-piece run's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TypeGuard

import polars as pl

from claimsflow.core.decide import (
    decide_cases,
    settle_corrections,
    void_decisions,
    voided_originals,
)
from claimsflow.core.history import duplicate_keys
from claimsflow.core.repeats import repeats_earlier_row
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.core.validation import CORRECTIONS, EarlierRows, validate_batch
from claimsflow.faults import crash_point
from claimsflow.ingest.chunks import CHUNK_BYTES, ReadWhole, batch_id_of_file, read_chunks
from claimsflow.ingest.reading import batch_format
from claimsflow.lake import eventlog
from claimsflow.lake.history import LakeHistory
from claimsflow.pipeline.batch import (
    BatchIdentity,
    BatchOutcome,
    BatchSource,
    DecidedBatch,
    RunContext,
    process_batch,
    record_decided,
    skip_batch,
    status_counts,
)
from claimsflow.pipeline.partitioning import (
    OUTPUT_TABLES,
    PartitioningError,
    RunParts,
    conclude_in_partitions,
    members_inputs,
    part_outputs,
    parts_folder,
    split_by_part,
)
from claimsflow.progress import step
from claimsflow.vocabulary import ROW_NUMBER
from schemas.case_batch import VOID

#: Under a batch's work folder: its parts' folders, and what the coordinator sets aside.
_CASES, _REJECTIONS, _CORRECTIONS = "cases", "rejections", "corrections"
_EMPTY_CASES = "no-cases.parquet"
#: The case columns the batch's history is read by (`LakeHistory.for_batch`), beside the
#: rule set's duplicate keys.
_HISTORY_COLUMNS: Final = ("member_id", "service_date", "original_case_id")


@dataclass(frozen=True)
class ChunkedBatch:
    """A batch read and validated a chunk at a time: its valid cases in their parts'
    folders under `work`, its rejections and valid correction rows beside them."""

    identity: BatchIdentity
    rows_in: int
    work: Path
    #: The parts that hold cases to adjudicate, in part order.
    folders: list[Path]
    #: Valid cases to adjudicate (in the parts), valid cases in all, rejected rows.
    to_adjudicate: int
    valid: int
    rejected: int


def prepare_in_chunks(
    path: Path,
    batch_id: str,
    run: RunContext,
    partitions: int,
    work: Path,
    chunk_bytes: int = CHUNK_BYTES,
) -> BatchOutcome | ChunkedBatch:
    """Read and validate a local CSV, JSON Lines or Parquet batch (`batch_id`:
    `chunks.batch_id_of_file`) a chunk at a time into `work` (steps 1-3 of the
    module's docstring): SKIPPED if it was recorded before.

    Raises `chunks.ReadWhole` when the file must be read whole instead, and
    `InboxFileUnavailable` when it cannot be read or changed while it was read.
    """
    identity = BatchIdentity(batch_id, path.name, "file", time.perf_counter())
    if eventlog.batch_recorded(run.lake, identity.batch_id):
        return skip_batch(run, identity)
    step("reading", batch=path.name)
    repeated, named, rows_in = _first_pass(path, identity.batch_id, chunk_bytes)
    crash_point("after-read")
    decided = LakeHistory(run.lake).decided_among(named)
    del named
    step("validating", batch=path.name, rows=rows_in)
    corrected = pl.Series("original_case_id", [], dtype=pl.String)
    to_adjudicate = valid = rejected = 0
    chunks = read_chunks(path, identity.batch_id, chunk_bytes)
    for index, raw in enumerate(chunks):
        validated = validate_batch(
            raw, decided, release_raw=True, earlier=EarlierRows(repeated, corrected)
        )
        del raw
        cases, name = validated.cases, f"{index:06d}.parquet"
        if index == 0:  # the typed cases' columns, for a batch with no valid case
            _write(work / _EMPTY_CASES, cases.clear())
        correcting = cases.filter(pl.col("claim_frequency").is_in(CORRECTIONS))
        corrected = pl.concat([corrected, correcting["original_case_id"]])
        adjudicated = cases.filter(~_is_void())
        for part, rows in split_by_part(adjudicated, partitions):
            _write(work / _part_name(part) / _CASES / name, rows)
        _write(work / _CORRECTIONS / name, correcting)
        _write(work / _REJECTIONS / name, validated.rejections)
        to_adjudicate += adjudicated.height
        valid += cases.height
        rejected += validated.rejections.height
        del validated, cases, adjudicated, correcting
    if valid + rejected != rows_in:  # the two passes read the same rows, or nothing is recorded
        raise PartitioningError(
            f"{path.name}: {valid} valid and {rejected} rejected row(s) of {rows_in} read"
        )
    folders = sorted(p for p in work.glob("part-*") if (p / _CASES).is_dir())
    return ChunkedBatch(identity, rows_in, work, folders, to_adjudicate, valid, rejected)


def _first_pass(path: Path, batch_id: str, chunk_bytes: int) -> tuple[pl.Series, pl.Series, int]:
    """What validation needs from the whole batch: the row_numbers of the rows that
    repeat an earlier row's case_id, every case_id the batch names (its rows' own
    and the originals its corrections name), and how many rows it has."""
    case_ids: list[pl.Series] = []
    originals: list[pl.Series] = []
    for raw in read_chunks(path, batch_id, chunk_bytes):
        case_ids.append(raw["case_id"])
        if "original_case_id" in raw.columns:
            # Mostly empty (an original claim names none); an empty one names no case.
            named = raw["original_case_id"].alias("case_id")
            originals.append(named.filter(named != ""))
        del raw
    every = pl.concat(case_ids, rechunk=True)  # a file has one piece at least
    del case_ids
    rows = every.len()
    repeated = pl.int_range(1, rows + 1, dtype=pl.Int64, eager=True).filter(
        repeats_earlier_row(every)
    )
    named = pl.concat([every, *originals]).drop_nulls()
    return repeated, named, rows


def decide_in_chunks(batch: ChunkedBatch, run: RunContext, run_parts: RunParts) -> DecidedBatch:
    """Step 4 of the module's docstring: the batch's history, its corrections settled,
    each part's inputs written beside its cases, the parts decided. The decisions and
    rule hits stay in the parts' files for `record_decided`."""
    step("deciding", batch=batch.identity.source, rows=batch.valid)
    no_cases = pl.read_parquet(batch.work / _EMPTY_CASES, glob=False)
    cases = _scan([batch.work / _EMPTY_CASES, *_part_files(batch.folders, _CASES)])
    corrections = _read(batch.work / _CORRECTIONS)
    history_columns = list(dict.fromkeys((*_HISTORY_COLUMNS, *_key_columns(run.ruleset))))
    valid_keys = pl.concat(
        [cases.select(history_columns), _voids(corrections).lazy().select(history_columns)]
    ).collect()
    seen = LakeHistory(run.lake).for_batch(valid_keys, run.ruleset)
    del valid_keys
    settled = settle_corrections(corrections, seen)
    for folder in batch.folders:
        members = _scan(_part_files([folder], _CASES)).select("member_id").unique().collect()
        for name, frame in members_inputs(members, run.reference, settled.history).items():
            frame.write_parquet(folder / f"{name}.parquet", compression="zstd")
    results = run_parts(batch.folders, run.ruleset) if batch.folders else []
    decided = sum(r.decided for r in results)
    if decided != batch.to_adjudicate:
        raise PartitioningError(f"parts decided {decided} of {batch.to_adjudicate} case(s)")
    originals, voids = voided_originals(settled.corrections), void_decisions(settled.voids)
    if results:
        decisions, rule_hits = (part_outputs(results, name) for name in OUTPUT_TABLES)
    else:  # nothing to adjudicate: the tables' columns, from the core itself
        decisions, rule_hits = (
            frame.lazy() for frame in decide_cases(no_cases, run.reference, run.ruleset, seen)
        )
    return DecidedBatch(
        rows_in=batch.rows_in,
        cases=pl.concat([cases, settled.voids.lazy()], how="diagonal_relaxed"),
        # As `decide` orders them: the VOIDED originals, the adjudicated cases (part
        # after part), the void rows.
        decisions=pl.concat([originals.lazy(), decisions, voids.lazy()], how="diagonal_relaxed"),
        rule_hits=rule_hits,
        rejections=_scan(sorted((batch.work / _REJECTIONS).glob("*.parquet"))),
        rows_decided=batch.valid,
        rows_rejected=batch.rejected,
        voided_originals=originals.height,
        by_status=status_counts(
            pl.concat([decisions.select("status"), voids.lazy().select("status")])
        ),
    )


def _key_columns(ruleset: RuleSet) -> list[str]:
    return [column for key in duplicate_keys(ruleset) for column in key]


def _is_void() -> pl.Expr:
    """Spec §9: a void row, never adjudicated (as `split_voids` tells them apart)."""
    return (pl.col("claim_frequency") == VOID).fill_null(False)


def _voids(corrections: pl.DataFrame) -> pl.DataFrame:
    return corrections.filter(_is_void())


def _part_name(part: int) -> str:
    return f"part-{part:05d}"


def _part_files(folders: list[Path], table: str) -> list[Path]:
    """The files of one table of the given parts, part after part, chunk after chunk."""
    return [f for folder in folders for f in sorted((folder / table).glob("*.parquet"))]


def _write(path: Path, frame: pl.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd")


def _scan(files: list[Path]) -> pl.LazyFrame:
    # glob=False: the work folder is under the lake, whose path may hold glob characters.
    return pl.scan_parquet(files, glob=False)


def _read(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(folder.glob("*.parquet")), glob=False).sort(
        ROW_NUMBER, maintain_order=True
    )


def reads_in_chunks(source: BatchSource) -> TypeGuard[Path]:
    """Whether a batch source is prepared a chunk at a time: a local CSV, JSON Lines
    or Parquet file (an X12 interchange is one envelope, read whole; a SQL pull and
    an object store's file are read whole too)."""
    return isinstance(source, Path) and batch_format(source) in ("csv", "jsonl", "parquet")


def adjudicate_in_chunks(
    path: Path,
    run: RunContext,
    partitions: int,
    run_parts: RunParts,
    chunk_bytes: int = CHUNK_BYTES,
) -> BatchOutcome:
    """One local CSV, JSON Lines or Parquet batch prepared a chunk at a time, decided
    in parts and recorded; read whole (`process_batch` in parts) when it is not one,
    or when its pieces do not all read. `InboxFileUnavailable` when it cannot be read."""
    if not reads_in_chunks(path):
        return process_batch(path, run, conclude_in_partitions(run, partitions, run_parts))
    attempted = time.perf_counter()
    batch_id = batch_id_of_file(path)
    with parts_folder(run, batch_id) as work:
        try:
            prepared = prepare_in_chunks(path, batch_id, run, partitions, work, chunk_bytes)
        except ReadWhole:
            prepared = None
        if isinstance(prepared, ChunkedBatch):
            return record_decided(
                prepared.identity, decide_in_chunks(prepared, run, run_parts), run
            )
        if isinstance(prepared, BatchOutcome):
            return prepared
    whole = process_batch(
        path, run, conclude_in_partitions(run, partitions, run_parts), in_pieces=False
    )
    return timed_from(attempted, whole)


def timed_from(attempted: float, outcome: BatchOutcome) -> BatchOutcome:
    """A batch read whole after an attempt in chunks: its time counts the attempt
    (the batch id's hash and the first pass, up to the piece that did not read)."""
    return replace(outcome, seconds=time.perf_counter() - attempted)
