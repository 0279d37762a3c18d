"""What one benchmark child process measures. Each function returns a JSON-able dict.

Every workload runs in a fresh interpreter (bench/child.py), so peak RSS is the
workload's own. Setup (imports, reference data, rule set) is done before the
clock starts and reported apart where it matters.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import resource
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from claimsflow.settings import RULES_DIR

RULESET_V1 = RULES_DIR / "claims-standard-v1.yaml"
Result = dict[str, Any]


class Timer:
    """Wall and CPU seconds (every thread of the process) since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {
            "seconds": time.perf_counter() - self.wall,
            "cpu_seconds": time.process_time() - self.cpu,
        }


def rss_bytes() -> int:
    """Peak RSS of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def generate(out: str, cases: int, batches: int, seed: int, **shape: Any) -> Result:
    """Sample data; `shape` (members, providers, procedures, member_skew) as write_sample."""
    from claimsflow.tools.generate import write_sample

    started = time.perf_counter()
    files = write_sample(Path(out), cases=cases, batches=batches, seed=seed, **shape)
    return {"seconds": time.perf_counter() - started, "files": [str(p) for p in files]}


def generate_lifecycle(out: str, cases: int, seed: int) -> Result:
    """The lifecycle comparison's data (issue 16): an earlier batch of cases / 10 cases,
    then one batch of `cases` in two versions: `with.csv`, ~1% of whose rows correct
    cases of the earlier batch (spec §9), read with `reference/` (out-of-pocket
    maxima on two spans in three); and `without.csv`, the same rows before the
    corrections were drawn, without the correction columns, read with
    `reference-plain/` (no oop_max column). Both are timed after the earlier batch."""
    from claimsflow.tools.generate import case_frame, reference_frames, with_corrections

    started = time.perf_counter()
    folder = Path(out)
    earlier = max(1_000, cases // 10)
    members, providers, fees = reference_frames(max(20, cases // 20), max(10, cases // 100), seed)
    for name, plain in (("reference", False), ("reference-plain", True)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (members.drop("oop_max") if plain else members).write_csv(folder / name / "members.csv")
        providers.write_csv(folder / name / "providers.csv")
        fees.write_csv(folder / name / "fee_schedule.csv")
    frame = case_frame(earlier + cases, members, providers, fees, seed)
    frame.head(earlier).write_csv(folder / "earlier.csv")
    frame.slice(earlier).write_csv(folder / "without.csv")
    corrected = with_corrections(frame, cases, seed, first_batch_rows=earlier).slice(earlier)
    corrected.write_csv(folder / "with.csv")
    corrections = corrected.filter(pl.col("claim_frequency") != "1").height
    return {"seconds": time.perf_counter() - started, "corrections": corrections}


def core_after(earlier: str, batch: str, reference: str, lake: str) -> Result:
    """The core on `batch` in a lake that holds `earlier` (recorded first, not timed):
    the batch reads its history (resubmissions, duplicates, balances, the originals
    its corrections name) from the log, as a nightly batch does."""
    return core(batch, reference, lake, earlier=earlier)


def floor(batch: str, out: str) -> Result:
    """The floor: read the batch and write the same rows, with Polars and nothing else."""
    timer = Timer()
    frame = pl.read_csv(batch, infer_schema=False)
    frame.write_parquet(out, compression="zstd")
    return timer.read() | {"rows": frame.height}


def as_jsonl(batch: str, out: str) -> Result:
    """The batch's rows as JSON Lines, every value a string (set-up for the JSON Lines
    peers: the same cases in the format a partner may send instead)."""
    timer = Timer()
    pl.scan_csv(batch, infer_schema=False).sink_ndjson(out)
    return timer.read()


def floor_streaming(batch: str, out: str) -> Result:
    """The same, streamed (scan_csv -> sink_parquet): the lowest cost of moving the rows."""
    timer = Timer()
    pl.scan_csv(batch, infer_schema=False).sink_parquet(out, compression="zstd")
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
    return timer.read() | {"rows": rows}


def core(batch: str, reference: str, lake: str, earlier: str | None = None) -> Result:
    """The pipeline core on one batch file: ingest, validate, adjudicate, price, write
    events; after `earlier` is recorded in the same lake (set-up, not timed), if given."""
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_ruleset
    from claimsflow.lake import eventlog
    from claimsflow.pipeline.batch import RunContext, process_batch

    setup_started = time.perf_counter()
    reference_data = load_reference(Path(reference))
    ruleset = load_ruleset(RULESET_V1)
    eventlog.ensure_lake(Path(lake))
    run = RunContext(Path(lake), reference_data, ruleset, uuid.uuid4().hex)
    if earlier is not None:
        process_batch(Path(earlier), run)
    setup_seconds = time.perf_counter() - setup_started
    rss_before = rss_bytes()
    timer = Timer()
    outcome = process_batch(Path(batch), run)
    return timer.read() | {
        "setup_seconds": setup_seconds,
        "rss_before": rss_before,
        "rows": outcome.rows_in,
        "decided": outcome.rows_decided,
        "rejected": outcome.rows_rejected,
        "voided_originals": outcome.voided_originals,
        "by_status": outcome.by_status,
        "status": outcome.status,
    }


def core_dask(batch: str, reference: str, lake: str, workers: int) -> Result:
    """The core with the batch decided in `workers` parts on a local Dask cluster of
    `workers` single-threaded worker processes (the executor `--executor dask` uses,
    without Prefect's task bookkeeping). Cluster start-up is set-up, not timed."""
    import importlib

    import distributed

    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
    from claimsflow.lake import eventlog
    from claimsflow.pipeline.batch import RunContext
    from claimsflow.pipeline.chunked import adjudicate_in_chunks
    from claimsflow.pipeline.partitioning import PartitionResult, decide_partition

    setup_started = time.perf_counter()
    reference_data = load_reference(Path(reference))
    ruleset = load_ruleset(RULESET_V1)
    eventlog.ensure_lake(Path(lake))
    run = RunContext(Path(lake), reference_data, ruleset, uuid.uuid4().hex)
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        # Each worker imports the core once, on its first part: set-up, not the batch.
        client.run(importlib.import_module, "claimsflow.pipeline.partitioning")
        setup_seconds = time.perf_counter() - setup_started

        def run_parts(folders: list[Path], rules: RuleSet) -> list[PartitionResult]:
            futures = client.map(decide_partition, folders, ruleset=rules, pure=False)
            return list(client.gather(futures))

        rss_before = rss_bytes()
        timer = Timer()
        # As `adjudicate run --executor dask` does: a CSV batch prepared a chunk at a time.
        outcome = adjudicate_in_chunks(Path(batch), run, workers, run_parts)
        measured = timer.read()
        worker_peaks = client.run(rss_bytes)
    return measured | {
        "setup_seconds": setup_seconds,
        "rss_before": rss_before,
        "workers": workers,
        # The coordinator alone: wait4's peak also counts the workers it reaps.
        "own_peak_rss": rss_bytes(),
        "worker_peak_rss": sum(worker_peaks.values()),
        "rows": outcome.rows_in,
        "decided": outcome.rows_decided,
        "by_status": outcome.by_status,
        "status": outcome.status,
    }


def stages(batch: str, reference: str, lake: str) -> Result:
    """The core stage by stage (same calls as process_batch), for the profile table."""
    from claimsflow.core.decide import BatchDecision
    from claimsflow.core.pricing import price
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.context import adjudication_context
    from claimsflow.core.rules.engine import adjudicate
    from claimsflow.core.rules.ruleset import load_ruleset
    from claimsflow.core.validation import validate_batch
    from claimsflow.ingest.reading import read_batch_bytes
    from claimsflow.lake import eventlog
    from claimsflow.pipeline.batch import DecidedBatch, batch_events, batch_id_of_bytes

    reference_data = load_reference(Path(reference))
    ruleset = load_ruleset(RULESET_V1)
    eventlog.ensure_lake(Path(lake))
    laps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        laps[name] = now - clock
        clock = now

    data = Path(batch).read_bytes()
    batch_id = batch_id_of_bytes(data)
    lap("read bytes + SHA-256")
    raw = read_batch_bytes(data, "csv", with_raw=False)
    lap("parse CSV")
    validated = validate_batch(raw)
    lap("validate (Pandera)")
    context = adjudication_context(validated.cases, reference_data)
    lap("context joins")
    adjudication = adjudicate(context, ruleset)
    lap("rules")
    priced = price(adjudication.decisions)
    lap("pricing")
    decision = BatchDecision(
        raw.height, validated.cases, priced, adjudication.rule_hits, validated.rejections
    )
    tables = batch_events(
        DecidedBatch.of(decision),
        batch_id=batch_id,
        source=Path(batch).name,
        source_kind="file",
        ruleset=ruleset,
        run_id="bench",
        now=dt.datetime.now(dt.UTC),
    )
    eventlog.record_batch(Path(lake), batch_id, tables)
    lap("write events")
    return {"laps": laps, "rows": raw.height}


def twin(batch: str, reference: str, out: str) -> Result:
    """The DuckDB twin: the same rule set as one SQL query over the Parquet batch."""
    from bench.sql_twin import write_twin_decisions
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_ruleset

    reference_data = load_reference(Path(reference))
    ruleset = load_ruleset(RULESET_V1)
    timer = Timer()
    rows = write_twin_decisions(Path(batch), reference_data, ruleset, Path(out))
    return timer.read() | {"rows": rows}


def _sample_decision(batch: str, reference: str) -> tuple[Any, Any, Any]:
    from claimsflow.core.history import MemoryHistory
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_ruleset
    from claimsflow.ingest.reading import read_batch_bytes
    from claimsflow.pipeline.batch import decide_batch

    reference_data = load_reference(Path(reference))
    ruleset = load_ruleset(RULESET_V1)
    raw = read_batch_bytes(Path(batch).read_bytes(), "csv", with_raw=False)
    return reference_data, ruleset, decide_batch(raw, reference_data, ruleset, MemoryHistory())


def zen_engine(batch: str, reference: str) -> Result:
    """GoRules ZEN: the rule table as a JDM decision (collect), evaluated case by case."""
    try:
        import zen
    except ImportError as exc:  # pragma: no cover - depends on the platform's wheels
        return {"unavailable": f"zen-engine cannot be imported here: {exc}"}
    from bench.jdm import jdm_inputs, rule_table

    reference_data, ruleset, decision = _sample_decision(batch, reference)
    table, duplicate_input = rule_table(ruleset)
    inputs = jdm_inputs(decision, reference_data, duplicate_input)
    engine = zen.ZenEngine()
    graph = engine.create_decision(json.dumps(table))
    expected = decision.decisions.select("status", "reason_codes").rows()
    agree = 0
    timer = Timer()
    for row, (status, codes) in zip(inputs, expected, strict=True):
        fired = graph.evaluate(row)["result"]
        outcomes = {hit["outcome"] for hit in fired}
        got = "DENIED" if "DENY" in outcomes else "PENDED" if "PEND" in outcomes else "APPROVED"
        agree += got == status and [hit["code"] for hit in fired] == codes
    return timer.read() | {"rows": len(inputs), "agree": agree, "version": _version("zen")}


def row_loop(batch: str, reference: str) -> Result:
    """The row-at-a-time Python loop over the same batch and rule set."""
    from bench.rowloop import RowAtATime

    reference_data, ruleset, decision = _sample_decision(batch, reference)
    loop = RowAtATime(reference_data, ruleset)
    timer = Timer()
    with open(batch, newline="", encoding="utf-8") as handle:
        decided = loop.run(csv.DictReader(handle))
    timed = timer.read()
    expected = {
        case_id: (status, tuple(codes), paid)
        for case_id, status, codes, paid in decision.decisions.select(
            "case_id", "status", "reason_codes", "paid_cents"
        ).rows()
    }
    agree = sum(
        expected.get(d.case_id) == (d.status, d.reason_codes, d.paid_cents) for d in decided
    )
    rows = decision.rows_in
    return timed | {"rows": rows, "decided": len(decided), "agree": agree}


def nightly_plain(inbox: str, reference: str, lake: str, reports: str) -> Result:
    """A nightly run's stages without Prefect (what flows/nightly.py wires together),
    publishing the same run outputs (report and metrics; the GX gate off in both)."""
    os.environ["CLAIMS_METRICS_FILE"] = str(Path(reports) / "metrics" / "claims.prom")
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_rulesets, select_ruleset
    from claimsflow.ingest.inbox import discover_inbox
    from claimsflow.lake.lock import writer_lock
    from claimsflow.ops import outputs
    from claimsflow.pipeline.batch import RunContext
    from claimsflow.pipeline.run import run_batches
    from claimsflow.pipeline.summary import RunSummary

    started = time.perf_counter()
    reference_data = load_reference(Path(reference))
    ruleset = select_ruleset(load_rulesets(RULES_DIR), dt.datetime.now(dt.UTC).date())
    with writer_lock(Path(lake)):
        run = RunContext(Path(lake), reference_data, ruleset, uuid.uuid4().hex)
        batches, ignored = discover_inbox(Path(inbox))
        outcomes = run_batches(run, batches)
    summary = RunSummary(
        run_id=run.run_id,
        ruleset=ruleset.label,
        batches=outcomes,
        ignored=[p.name for p in ignored],
    )
    outputs.publish_run_outputs(
        Path(lake),
        run.run_id,
        summary,
        Path(reports),
        seconds=time.perf_counter() - started,
        checks=False,
    )
    decided = sum(o.rows_decided for o in outcomes)
    return {"seconds": time.perf_counter() - started, "decided": decided}


def nightly_prefect(
    inbox: str, reference: str, lake: str, reports: str, prefect_home: str, api_url: str | None
) -> Result:
    """The same run through the Prefect flow: against the server at `api_url`, or
    (None) on the local ephemeral API that `adjudicate run` starts."""
    os.environ["PREFECT_HOME"] = prefect_home
    os.environ["CLAIMS_METRICS_FILE"] = str(Path(reports) / "metrics" / "claims.prom")
    if api_url is not None:
        os.environ["PREFECT_API_URL"] = api_url
    from adjudicate.prefect_env import configure_prefect_environment

    configure_prefect_environment()
    started = time.perf_counter()
    from flows.nightly import nightly_adjudication

    imported = time.perf_counter()
    summary = nightly_adjudication(
        inbox=inbox,
        reference=reference,
        lake=lake,
        reports=reports,
        quality_checks=False,
        quiet_seconds=0,  # the bench writes its inbox just before the run
    )
    finished = time.perf_counter()
    decided = sum(b.rows_decided for b in summary.batches)
    return {
        "seconds": finished - started,
        "import_seconds": imported - started,
        "flow_seconds": finished - imported,
        "decided": decided,
    }


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"zen": "zen-engine"}.get(module, module))
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def x12_pair(batch: str, out_dir: str, cases: int, seed: int) -> Result:
    """The first `cases` rows of a CSV batch shaped as multi-line claims, written twice:
    `same.csv` and `same.837` (`claimsflow.tools.generate.write_837_batch`), so the two
    `core` runs that follow read the very same rows (issue 17: 837 within 3x CSV)."""
    from claimsflow.tools.generate import claims_of, write_837_batch

    timer = Timer()
    rows = pl.read_csv(batch, infer_schema=False, n_rows=cases)
    folder = Path(out_dir)
    (folder / "csv").mkdir(parents=True, exist_ok=True)
    (folder / "837").mkdir(parents=True, exist_ok=True)
    # Both files hold the claim-shaped rows (case ids CLAIM-LINE), in 837 order.
    claims_of(rows, seed).write_csv(folder / "csv" / "same.csv")
    write_837_batch(folder / "837" / "same.837", rows, seed=seed)
    return timer.read() | {
        "rows": rows.height,
        "csv_bytes": (folder / "csv" / "same.csv").stat().st_size,
        "x12_bytes": (folder / "837" / "same.837").stat().st_size,
    }


WORKLOADS: dict[str, Callable[..., Result]] = {
    "x12_pair": x12_pair,
    "generate": generate,
    "generate_lifecycle": generate_lifecycle,
    "core_after": core_after,
    "floor": floor,
    "floor_streaming": floor_streaming,
    "as_jsonl": as_jsonl,
    "core": core,
    "core_dask": core_dask,
    "stages": stages,
    "twin": twin,
    "zen": zen_engine,
    "loop": row_loop,
    "nightly_plain": nightly_plain,
    "nightly_prefect": nightly_prefect,
}
