"""`make bench`: run every measurement in a fresh process, print a table, write the doc.

    python -m bench                      # 1M and 10M cases, both workloads (long)
    python -m bench --sizes 100000       # a quick run
    python -m bench --sizes 200000 --workloads skewed --skip-peers --skip-prefect
    BENCH_SIZES=100000,1000000 make bench

The figures between the markers of docs/benchmarks.md are rewritten on each
run; the analysis around them is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.child import MARK
from bench.report import (
    Figures,
    Measurement,
    command_tables,
    render_markdown,
    targets,
    update_doc,
)

DEFAULT_SIZES = (1_000_000, 10_000_000)
#: The generated data sets: `adjudicate generate`'s defaults (members = cases / 20,
#: providers = cases / 100, a power-law skew), and few members with very many cases.
WORKLOADS: dict[str, dict[str, Any]] = {
    "uniform": {},
    "skewed": {"members": 300, "providers": 60, "procedures": 40, "member_skew": 1.1},
}
ADJUDICATE = Path(sys.executable).with_name("adjudicate")
SAMPLE_CASES = 20_000
PREFECT_CASES = 1_000
SEED = 7
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


@dataclass
class Bench:
    work: Path
    console: Console
    log: list[str] = field(default_factory=list)

    def child(self, workload: str, **args: Any) -> Measurement:
        """Run one workload in a fresh interpreter and read its peak RSS with wait4."""
        spec = json.dumps({"workload": workload, "args": args})
        self.console.print(f"[dim]· {workload} {_brief(args)}[/dim]")
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", spec],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        output = process.stdout.read() if process.stdout is not None else ""
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"{workload} failed (exit {process.returncode})")
        line = next(ln for ln in reversed(output.splitlines()) if ln.startswith(MARK))
        return Measurement(json.loads(line[len(MARK) :]), wall, usage.ru_maxrss * 1024)

    def command(self, name: str, inbox: Path, reference: Path, cases: int) -> Measurement:
        """`adjudicate run` as a user types it (gate, report and metrics on), on its own
        temporary Prefect server, in a fresh lake. Peak RSS is wait4's: the largest of the
        command and the processes it waited for (its Prefect server). Stages come from
        the command's timeline (CLAIMS_TIMELINE_FILE, claimsflow/ops/timeline.py)."""
        lake, reports = self.work / f"{name}-lake", self.work / f"{name}-reports"
        timeline_file = self.work / f"{name}-timeline.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {
            "PREFECT_HOME": str(self.work / "prefect-home"),
            "CLAIMS_TIMELINE_FILE": str(timeline_file),
            "CLAIMS_METRICS_FILE": str(reports / "metrics" / "claims.prom"),
        }
        # Files delivered earlier in the night: older than the default quiet period
        # (`--quiet-seconds`, 30 s), which leaves a file written seconds ago for the next
        # run. Without this a batch generated just before would be measured undecided.
        delivered = time.time() - 3600
        for entry in inbox.iterdir():
            os.utime(entry, (delivered, delivered))
        args = [str(ADJUDICATE), "run", "--inbox", str(inbox), "--reference", str(reference)]
        args += ["--lake", str(lake), "--reports", str(reports)]
        self.console.print(f"[dim]· adjudicate run ({name})[/dim]")
        spawned = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - the project's own entry point
            args, cwd=self.work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        exited = time.time()
        wall = time.perf_counter() - started
        errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise RuntimeError(f"adjudicate run ({name}) failed (exit {code}): {errors[-2000:]}")
        marks = json.loads(timeline_file.read_text(encoding="utf-8"))["marks"]
        if cases and not any(str(m["stage"]).startswith("batch:") for m in marks):
            raise RuntimeError(f"adjudicate run ({name}) processed no batch: {errors[-2000:]}")
        result = {
            "seconds": wall,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "rows": cases,
            "exit": code,
            "stages": command_stages(marks, spawned, exited),
        }
        for leftover in (lake, reports):
            shutil.rmtree(leftover, ignore_errors=True)
        return Measurement(result, wall, usage.ru_maxrss * 1024)


#: Timeline marks -> the bench's stage names (marks not listed keep their own name).
STAGE_NAMES = {
    "command": "interpreter + CLI imports",
    "checks": "configuration checks (imports the pipeline)",
    "imports": "import Prefect and the flow",
    "prefect-server": "Prefect start: temporary server ready",
    "prefect-start": "Prefect start: flow run created",
    "reference": "reference data",
    "ruleset": "rule set",
    "open": "lock, lake, inbox listing",
    "catalog": "catalog",
    "facts": "run facts (aggregates)",
    "gate": "quality gate (pass + GX)",
    "report": "report",
    "metrics": "metrics",
    "remits": "835 remittance advice",
    "artifacts": "Prefect artifacts",
    "flow-returned": "flow run end",
    "summary": "summary printed",
}


def command_stages(marks: list[dict[str, Any]], spawned: float, exited: float) -> dict[str, float]:
    """Seconds per stage, in order: the gap before each mark, then the shutdown (the
    last mark to the process's exit: Prefect's exit handlers, the server's stop)."""
    stages: dict[str, float] = {}
    previous = spawned
    for mark in marks:
        stage = str(mark["stage"])
        if stage == "shutdown":
            continue
        name = STAGE_NAMES.get(stage, stage.replace("batch:", "batch "))
        stages[name] = stages.get(name, 0.0) + float(mark["at"]) - previous
        previous = float(mark["at"])
    stages["shutdown (exit handlers, server stop)"] = exited - previous
    return stages


def _brief(args: dict[str, Any]) -> str:
    return " ".join(f"{k}={Path(str(v)).name if '/' in str(v) else v}" for k, v in args.items())


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 100000,1000000")
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes(os.environ.get("BENCH_SIZES", ",".join(map(str, DEFAULT_SIZES)))),
        help="batch sizes in cases, comma-separated (default: BENCH_SIZES or 1M,10M)",
    )
    parser.add_argument("--sample", type=int, default=SAMPLE_CASES, help="cases for the peers")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--doc", type=Path, default=DOC, help="Markdown file to update")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--skip-prefect", action="store_true", help="leave out the flow run")
    parser.add_argument("--skip-dask", action="store_true", help="leave out the Dask executor")
    parser.add_argument(
        "--workloads",
        default="uniform,skewed",
        help="data sets, comma-separated: uniform (generate's defaults), skewed (300 "
        "members with a Zipf skew, 60 providers, 40 procedures)",
    )
    parser.add_argument(
        "--skip-peers", action="store_true", help="leave out the DuckDB twin, ZEN, the loop"
    )
    parser.add_argument(
        "--skip-command", action="store_true", help="leave out `adjudicate run` itself"
    )
    parser.add_argument(
        "--skip-x12", action="store_true", help="leave out the 837 vs CSV comparison"
    )
    parser.add_argument(
        "--x12-cases",
        type=int,
        default=None,
        help="service lines of the 837 vs CSV comparison (default: each size; a small "
        "number such as 50000 makes a quick local check)",
    )
    parser.add_argument(
        "--skip-lifecycle",
        action="store_true",
        help="leave out the core with out-of-pocket maxima and ~1%% corrections beside "
        "the core without them (largest size)",
    )
    parser.add_argument(
        "--skip-year",
        action="store_true",
        help="leave out the year of nights (10,000 batches, then a 100k-case batch)",
    )
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)} (known: {', '.join(WORKLOADS)})")

    console = Console()
    work = args.work or Path(tempfile.mkdtemp(prefix="claims-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work, console)
    figures = Figures(
        sizes=sorted(args.sizes),
        sample=args.sample,
        command=" ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        started=dt.datetime.now(dt.UTC),
        machine=machine(),
        load_before=os.getloadavg(),
    )
    try:
        if not args.skip_command:
            empty_inbox(bench, figures)
        for workload in workloads:
            for size in figures.sizes:
                measure_size(
                    bench,
                    figures,
                    size,
                    workload=workload,
                    dask=not args.skip_dask,
                    peers=not args.skip_peers,
                    command=not args.skip_command,
                    x12=None if args.skip_x12 else (args.x12_cases or size),
                )
        if not args.skip_lifecycle:
            lifecycle(bench, figures, figures.sizes[-1])
        if "uniform" in workloads:
            stage_profile(bench, figures, figures.sizes[0])
        if not args.skip_peers:
            peers(bench, figures)
        if not args.skip_prefect:
            prefect_overhead(bench, figures)
    finally:
        figures.load_after = os.getloadavg()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    show(console, figures)
    if not args.skip_year:
        # In a process of its own: its own verdict line (bench/year_of_nights.py).
        subprocess.run(
            [sys.executable, "-m", "bench.year_of_nights"],
            check=False,
            cwd=Path(__file__).resolve().parents[1],
        )
    if not args.no_doc:
        update_doc(args.doc, render_markdown(figures))
        console.print(f"wrote {args.doc}")


def empty_inbox(bench: Bench, figures: Figures) -> None:
    """The command's fixed cost: `adjudicate run` over an empty inbox, twice (the first
    run on a new Prefect home creates and migrates its database)."""
    data = bench.work / "empty"
    bench.child("generate", out=str(data), cases=20, batches=1, seed=SEED)
    inbox = data / "empty-inbox"
    inbox.mkdir(exist_ok=True)
    reference = data / "reference"
    figures.empty_first = bench.command("empty-first", inbox, reference, 0)
    figures.empty = bench.command("empty", inbox, reference, 0)


def measure_size(
    bench: Bench,
    figures: Figures,
    size: int,
    *,
    workload: str = "uniform",
    dask: bool = True,
    peers: bool = True,
    command: bool = True,
    x12: int | None = None,
) -> None:
    data = bench.work / f"{workload}-n{size}"
    shape = WORKLOADS[workload]
    generated = bench.child("generate", out=str(data), cases=size, batches=1, seed=SEED, **shape)
    inbox = data / "inbox"
    batch = inbox / "batch-0001.csv"
    reference = str(data / "reference")
    parquet_inbox = data / "parquet-inbox"
    parquet_inbox.mkdir(exist_ok=True)
    parquet = parquet_inbox / "batch-0001.parquet"
    row: dict[str, Measurement] = {"generate": generated}
    row["floor"] = bench.child("floor", batch=str(batch), out=str(parquet))
    row["floor_streaming"] = bench.child(
        "floor_streaming", batch=str(batch), out=str(data / "streamed.parquet")
    )
    row["core"] = bench.child(
        "core", batch=str(batch), reference=reference, lake=str(data / "lake")
    )
    jsonl = data / "jsonl-inbox" / "batch-0001.jsonl"
    if peers:
        row["core_parquet"] = bench.child(
            "core", batch=str(parquet), reference=reference, lake=str(data / "lake-parquet")
        )
        # The same cases as JSON Lines: read a piece at a time by the one-piece run
        # and by the Dask coordinator alike (docs/scaling.md).
        jsonl.parent.mkdir(exist_ok=True)
        bench.child("as_jsonl", batch=str(batch), out=str(jsonl))
        row["core_jsonl"] = bench.child(
            "core", batch=str(jsonl), reference=reference, lake=str(data / "lake-jsonl")
        )
    if dask:
        for workers in (1, 2):
            row[f"dask_{workers}"] = bench.child(
                "core_dask",
                batch=str(batch),
                reference=reference,
                lake=str(data / f"lake-dask-{workers}"),
                workers=workers,
            )
        if jsonl.exists():
            row["dask_jsonl_2"] = bench.child(
                "core_dask",
                batch=str(jsonl),
                reference=reference,
                lake=str(data / "lake-dask-jsonl"),
                workers=2,
            )
    if peers:
        row["twin"] = bench.child(
            "twin", batch=str(parquet), reference=reference, out=str(data / "twin.parquet")
        )
    if x12 is not None and workload == "uniform":
        x12_same_rows(bench, row, batch, data, reference, min(x12, size))
    if command:
        row["command"] = bench.command(f"{workload}-n{size}", inbox, Path(reference), size)
    figures.by_workload.setdefault(workload, {})[size] = row
    if workload == "uniform":
        figures.by_size[size] = row
    # Free the disk between sizes: 10M cases are ~1 GB of input and as much of output.
    leftovers = (
        *("lake", "lake-parquet", "lake-dask-1", "lake-dask-2", "twin.parquet"),
        *("lake-jsonl", "lake-dask-jsonl", "jsonl-inbox"),
        *("x12", "lake-x12-csv", "lake-x12-837"),
    )
    for leftover in (*leftovers, "streamed.parquet"):
        path = data / leftover
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def x12_same_rows(
    bench: Bench,
    row: dict[str, Measurement],
    batch: Path,
    data: Path,
    reference: str,
    cases: int,
) -> None:
    """Issue 17: the same rows as an 837 and as a CSV, each through the real batch path
    (`process_batch`: read, validate, decide, record) in a fresh process, one after the
    other in this run; the ratio of their times is printed against the 3x target."""
    pair = data / "x12"
    row["x12_pair"] = bench.child(
        "x12_pair", batch=str(batch), out_dir=str(pair), cases=cases, seed=SEED
    )
    for kind, name in (("x12_csv", "csv/same.csv"), ("x12_837", "837/same.837")):
        row[f"core_{kind}"] = bench.child(
            "core",
            batch=str(pair / name),
            reference=reference,
            lake=str(data / f"lake-{kind.replace('_', '-')}"),
        )
    csv, x12 = row["core_x12_csv"], row["core_x12_837"]
    ratio = x12.seconds / csv.seconds
    bench.console.print(
        f"837 vs CSV, {csv.rows:,} service lines: {x12.seconds:.2f} s vs {csv.seconds:.2f} s "
        f"= {ratio:.2f}x (target: within 3x) "
        + ("[green]met[/green]" if ratio <= 3.0 else "[red]missed[/red]")
    )


#: Pairs of lifecycle runs (without, with) whose medians the bench reports.
LIFECYCLE_PAIRS = 3


def lifecycle(bench: Bench, figures: Figures, size: int) -> None:
    """Issue 16's target: the core on a batch whose members have out-of-pocket maxima
    and ~1% of whose rows correct cases of an earlier batch, beside the same batch
    without either (no oop_max column, no correction columns), each in a lake that
    already holds the earlier batch (bench/workloads.py, generate_lifecycle)."""
    data = bench.work / f"lifecycle-n{size}"
    generated = bench.child("generate_lifecycle", out=str(data), cases=size, seed=SEED)
    runs: dict[str, list[Measurement]] = {"without": [], "with": []}
    # One pair moves by ±5-10 % on a shared host: LIFECYCLE_PAIRS pairs, interleaved,
    # and each side's median run.
    for _ in range(LIFECYCLE_PAIRS):
        for name, batch, reference in (
            ("without", "without.csv", "reference-plain"),
            ("with", "with.csv", "reference"),
        ):
            lake = data / f"lake-{name}"
            runs[name].append(
                bench.child(
                    "core_after",
                    earlier=str(data / "earlier.csv"),
                    batch=str(data / batch),
                    reference=str(data / reference),
                    lake=str(lake),
                )
            )
            shutil.rmtree(lake, ignore_errors=True)
    row: dict[str, Measurement] = {"generate": generated}
    for name, measured in runs.items():
        row[name] = sorted(measured, key=lambda m: m.seconds)[len(measured) // 2]
    figures.lifecycle[size] = row
    shutil.rmtree(data, ignore_errors=True)


def stage_profile(bench: Bench, figures: Figures, size: int) -> None:
    data = bench.work / f"uniform-n{size}"
    figures.stages = bench.child(
        "stages",
        batch=str(data / "inbox" / "batch-0001.csv"),
        reference=str(data / "reference"),
        lake=str(data / "lake-stages"),
    )


def peers(bench: Bench, figures: Figures) -> None:
    data = bench.work / "sample"
    bench.child("generate", out=str(data), cases=figures.sample, batches=1, seed=SEED)
    batch = str(data / "inbox" / "batch-0001.csv")
    reference = str(data / "reference")
    figures.zen = bench.child("zen", batch=batch, reference=reference)
    figures.loop = bench.child("loop", batch=batch, reference=reference)
    figures.sample_core = bench.child(
        "core", batch=batch, reference=reference, lake=str(data / "lake")
    )


def prefect_overhead(bench: Bench, figures: Figures) -> None:
    """A 1,000-case nightly run through the flow, against a Prefect server as deployed
    (`make serve`), and with the local ephemeral API of `adjudicate run`; vs no Prefect."""
    from adjudicate.serving import Stack, start_server, stop, wait_until_healthy

    data = bench.work / "nightly"
    bench.child("generate", out=str(data), cases=PREFECT_CASES, batches=3, seed=SEED)
    inbox, reference = str(data / "inbox"), str(data / "reference")
    home = bench.work / "prefect-home"
    stack = Stack(home=home, port=_free_port())
    bench.console.print(f"[dim]· starting a Prefect server on {stack.url} (not timed)[/dim]")
    server = start_server(stack)
    try:
        wait_until_healthy(stack, server, timeout=600)
        served = {
            "inbox": inbox,
            "reference": reference,
            "reports": str(data / "reports"),
            "prefect_home": str(home),
        }
        # The first run registers the flow and its tasks with the server.
        figures.prefect_first = bench.child(
            "nightly_prefect", lake=str(data / "first"), api_url=stack.api_url, **served
        )
        figures.prefect = bench.child(
            "nightly_prefect", lake=str(data / "served"), api_url=stack.api_url, **served
        )
    finally:
        stop(server)
    figures.plain = bench.child(
        "nightly_plain",
        inbox=inbox,
        reference=reference,
        lake=str(data / "plain"),
        reports=str(data / "reports"),
    )
    figures.prefect_ephemeral = bench.child(
        "nightly_prefect",
        inbox=inbox,
        reference=reference,
        lake=str(data / "ephemeral"),
        reports=str(data / "reports"),
        prefect_home=str(home),
        api_url=None,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(
            ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")
        )
        ram = f"{int(memory.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, StopIteration):  # pragma: no cover - not Linux
        ram = "?"
    from importlib.metadata import version

    versions = ", ".join(
        f"{name} {version(name)}" for name in ("polars", "duckdb", "pandera", "prefect")
    )
    return {
        "cpu": f"{cpu} x {os.cpu_count()} cores",
        "ram": ram,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }


def show(console: Console, figures: Figures) -> None:
    table = Table(title="claims adjudication: pipeline vs floor and peers")
    for name in ("measure", "cases", "seconds", "CPU s", "cases/s", "peak RSS", "vs pipeline"):
        table.add_column(name, justify="right" if name != "measure" else "left")
    for row in figures.rows():
        table.add_row(*row)
    console.print(table)
    verdicts = Table(title="targets")
    for name in ("target", "measured", "verdict"):
        verdicts.add_column(name)
    for target, measured, verdict in targets(figures):
        style = "green" if verdict.startswith("met") else "red"
        verdicts.add_row(target, measured, f"[{style}]{verdict}[/{style}]")
    console.print(verdicts)
    for title, rows in command_tables(figures):
        stages = Table(title=title)
        for name in rows[0]:
            stages.add_column(name, justify="left" if name == "stage" else "right")
        for cells in rows[1:]:
            stages.add_row(*cells)
        console.print(stages)
