"""`make bench`: run every measurement in a fresh process, print a table, write the doc.

    python -m bench                      # 1M and 10M cases (minutes)
    python -m bench --sizes 100000       # a quick run
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
from bench.report import Figures, Measurement, render_markdown, targets, update_doc

DEFAULT_SIZES = (1_000_000, 10_000_000)
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
    args = parser.parse_args(argv)

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
        for size in figures.sizes:
            measure_size(bench, figures, size, dask=not args.skip_dask)
        stage_profile(bench, figures, figures.sizes[0])
        peers(bench, figures)
        if not args.skip_prefect:
            prefect_overhead(bench, figures)
    finally:
        figures.load_after = os.getloadavg()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    show(console, figures)
    if not args.no_doc:
        update_doc(args.doc, render_markdown(figures))
        console.print(f"wrote {args.doc}")


def measure_size(bench: Bench, figures: Figures, size: int, *, dask: bool = True) -> None:
    data = bench.work / f"n{size}"
    generated = bench.child("generate", out=str(data), cases=size, batches=1, seed=SEED)
    batch = data / "inbox" / "batch-0001.csv"
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
    row["core_parquet"] = bench.child(
        "core", batch=str(parquet), reference=reference, lake=str(data / "lake-parquet")
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
    row["twin"] = bench.child(
        "twin", batch=str(parquet), reference=reference, out=str(data / "twin.parquet")
    )
    figures.by_size[size] = row
    # Free the disk between sizes: 10M cases are ~1 GB of input and as much of output.
    leftovers = ("lake", "lake-parquet", "lake-dask-1", "lake-dask-2", "twin.parquet")
    for leftover in (*leftovers, "streamed.parquet"):
        path = data / leftover
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def stage_profile(bench: Bench, figures: Figures, size: int) -> None:
    data = bench.work / f"n{size}"
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
    from flows.serving import Stack, start_server, stop, wait_until_healthy

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
