"""Peak RSS of deciding one batch, against an empty event log and against a large one.

    python -m bench.log_memory              # a 100,000-case batch; 0 vs 2M decisions
    python -m bench.log_memory --log-decisions 100000 --batch-cases 20000 --runs 1  # quick

One generated sample (`claimsflow.tools.generate.write_sample`: the log's cases and the
batch share members and providers) is split into batches of `--batch-cases`, which
are recorded into a lake one after the other, as a nightly run would, until it holds
`--log-decisions`. A CSV batch not recorded is then decided by `bench.workloads.core`
in a fresh interpreter (peak RSS is the child's own, read with wait4) against a copy
of an empty lake and a copy of the full one, `--runs` times each. The history a
batch reads stays in the log (claimsflow/lake/history.py), so the peak should not depend
on the log's size: exits 1 when the median peak against the full log exceeds the
empty lake's by more than `--tolerance`. Results: docs/benchmarks.md, "Memory and
the size of the log".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.child import MARK

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def build(work: Path, log_decisions: int, batch_cases: int) -> dict[str, Any]:
    """Make the sample and the full lake (or reuse them); the lake, the batch to
    decide and the lake's number of decisions. Runs in a child process of its own
    (`--build`): a child's peak RSS counts from its parent's at the fork."""
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_ruleset
    from claimsflow.ingest.inbox import discover_inbox
    from claimsflow.lake import eventlog
    from claimsflow.lake.history import LakeHistory
    from claimsflow.pipeline.batch import RunContext, process_batch
    from claimsflow.settings import RULES_DIR
    from claimsflow.tools.generate import write_sample

    data, lake, done = work / "data", work / "log-lake", work / "log-lake.done"
    if not done.exists():
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)
        # ~3 % of the rows are invalid: enough batches to record `log_decisions`, and
        # three more, so that one of them is a CSV file (as the bench's core is fed).
        batches = -(-log_decisions // int(batch_cases * 0.9)) + 3
        write_sample(data, batches * batch_cases, batches, SEED)
        run = RunContext(
            lake,
            load_reference(data / "reference"),
            load_ruleset(RULES_DIR / "claims-standard-v1.yaml"),
            uuid.uuid4().hex,
        )
        eventlog.ensure_lake(lake)
        decided = 0
        for path in discover_inbox(data / "inbox")[0]:
            if decided >= log_decisions:
                break
            started = time.perf_counter()
            outcome = process_batch(path, run)
            decided += outcome.rows_decided
            seconds = time.perf_counter() - started
            print(f"  {path.name}: {outcome.rows_decided:,} decided, {seconds:.1f}s", flush=True)
        done.write_text("", encoding="utf-8")
    recorded = set(eventlog.scan_table(lake, "batch").select("source").collect()["source"])
    inbox = discover_inbox(data / "inbox")[0]
    batch = next(p for p in inbox if p.name not in recorded and p.suffix == ".csv")
    decisions = LakeHistory(lake).decision_count()
    return {"data": str(data), "lake": str(lake), "batch": str(batch), "decisions": decisions}


def peak(work: Path, data: Path, batch: Path, lake: Path | None) -> dict[str, Any]:
    """Decide `batch` in a fresh interpreter on a copy of `lake` (None: a new lake);
    the child's peak RSS and what it reported."""
    copy = Path(tempfile.mkdtemp(dir=work)) / "lake"
    if lake is not None:
        shutil.copytree(lake, copy)
    args = {"batch": str(batch), "reference": str(data / "reference"), "lake": str(copy)}
    spec = json.dumps({"workload": "core", "args": args})
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", spec], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        output = process.stdout.read() if process.stdout is not None else ""
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"core on {batch.name} failed")
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    line = next(ln for ln in reversed(output.splitlines()) if ln.startswith(MARK))
    result: dict[str, Any] = json.loads(line[len(MARK) :])
    return result | {"peak_rss": usage.ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_memory", description=__doc__)
    parser.add_argument("--log-decisions", type=int, default=2_000_000)
    parser.add_argument("--batch-cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="children per lake (default 3)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="default 0.10 (10 %%)")
    parser.add_argument("--work", type=Path, help="keep data and lake here (reused next time)")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:  # the child that builds the data (see `build`)
        built = build(args.work, args.log_decisions, args.batch_cases)
        sys.stdout.write(MARK + json.dumps(built) + "\n")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="log-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, work {work}", flush=True)
    sizes = ["--log-decisions", str(args.log_decisions), "--batch-cases", str(args.batch_cases)]
    command = [sys.executable, "-m", "bench.log_memory", "--build", "--work", str(work), *sizes]
    output = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT
    ).stdout
    print("".join(ln + "\n" for ln in output.splitlines() if not ln.startswith(MARK)), end="")
    built = json.loads(next(ln for ln in output.splitlines() if ln.startswith(MARK))[len(MARK) :])
    data, lake, batch = Path(built["data"]), Path(built["lake"]), Path(built["batch"])
    decisions = int(built["decisions"])
    figures: dict[str, list[dict[str, Any]]] = {"empty": [], "full": []}
    for _ in range(args.runs):  # interleaved: a slow spell of the machine hits both
        figures["empty"].append(peak(work, data, batch, None))
        figures["full"].append(peak(work, data, batch, lake))
    mib = 1024 * 1024
    for name, runs in figures.items():
        held = 0 if name == "empty" else decisions
        peaks = ", ".join(f"{r['peak_rss'] / mib:.0f}" for r in runs)
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        setup = ", ".join(f"{r['setup_seconds']:.1f}" for r in runs)
        print(
            f"{held:>10,} decisions in the log: peak RSS {peaks} MiB; set-up {setup} s, "
            f"batch {seconds} s; {runs[0]['rows']:,} rows, {runs[0]['decided']:,} decided"
        )
    empty = statistics.median(r["peak_rss"] for r in figures["empty"])
    full = statistics.median(r["peak_rss"] for r in figures["full"])
    verdict = full <= empty * (1 + args.tolerance)
    print(
        f"median peak: {empty / mib:.0f} MiB (empty log) vs {full / mib:.0f} MiB "
        f"({decisions:,} decisions), {full / empty - 1:+.1%}: "
        f"{'flat' if verdict else 'GROWS'} (tolerance {args.tolerance:.0%})"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
