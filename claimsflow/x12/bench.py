"""Reader speed: an 837 of N service lines against `pl.read_csv` of the same rows.

    python -m claimsflow.x12.bench --lines 1000000 [--repeat 3] [--dir DIR]

Writes the sample 837 (`write_837`) and the equivalent CSV (the same case rows)
into a temporary folder, then times each reader in a fresh child process (so that
peak RSS is that reader's own): wall time, CPU time of all threads, peak RSS.
Prints a Markdown table (docs/x12.md keeps the figures).

The sample is shaped like a real batch: claims of 2.5 lines on average, members
with 2 claims in a row, providers with runs of members, one transaction set per
received date, a prior authorization on about one line in ten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from claimsflow.x12.read837 import CASE_COLUMNS, read_837
from claimsflow.x12.write837 import write_837

PROCEDURES = ("99213", "99214", "99203", "J1100", "G0008", "80053", "93000", "36415")
DIAGNOSES = ("J45.909", "E11.9", "I10", "M54.5", "Z00.00", "R51", "K21.9", "F41.1")
#: Lines per transaction set (one received date each).
LINES_PER_DAY = 10_000


def _draw(n: int, salt: int, modulo: int) -> pl.Expr:
    """A deterministic pseudo-random integer in [0, modulo) per row (hash of the row)."""
    return (pl.int_range(n, dtype=pl.UInt64).hash(seed=salt) % modulo).cast(pl.Int64)


def bench_cases(lines: int, seed: int = 7) -> pl.DataFrame:
    """`lines` case rows (§1 columns as text) grouped into multi-line claims."""
    # A claim starts on 2 rows in 5 (2.5 lines per claim on average).
    starts = pl.select(
        ((_draw(lines, seed, 5) < 2) | (pl.int_range(lines) == 0)).alias("start")
    ).to_series()
    frame = pl.DataFrame({"start": starts}).with_columns(
        pl.col("start").cum_sum().alias("claim"),
        pl.int_range(lines, dtype=pl.Int64).alias("row"),
    )
    frame = frame.with_columns(
        (pl.col("row") - pl.col("row").min().over("claim") + 1).alias("line"),
        # A member has 2 claims in a row, a provider 8 members in a row.
        (pl.col("claim") // 2).alias("member"),
        (pl.col("claim") // 16).alias("provider"),
        (pl.col("row") // LINES_PER_DAY).alias("day"),
    )
    day0 = dt.date(2025, 1, 1)
    procedure = pl.lit(pl.Series(PROCEDURES)).gather(_draw(lines, seed + 1, len(PROCEDURES)))
    diagnosis = pl.lit(pl.Series(DIAGNOSES)).gather(_draw(lines, seed + 2, len(DIAGNOSES)))
    cents = 2_000 + _draw(lines, seed + 3, 48_000)
    return frame.select(
        pl.format("C{}-{}", pl.col("claim").cast(pl.String).str.zfill(9), pl.col("line")).alias(
            "case_id"
        ),
        pl.format("M{}", (pl.col("member") % 200_000).cast(pl.String).str.zfill(7)).alias(
            "member_id"
        ),
        pl.format("P{}", (pl.col("provider") % 5_000).cast(pl.String).str.zfill(5)).alias(
            "provider_id"
        ),
        (pl.lit(day0) + pl.duration(days=pl.col("day") - 3))
        .dt.strftime("%Y-%m-%d")
        .alias("service_date"),
        (pl.lit(day0) + pl.duration(days=pl.col("day")))
        .dt.strftime("%Y-%m-%d")
        .alias("received_date"),
        procedure.alias("procedure_code"),
        diagnosis.alias("diagnosis_code"),
        (1 + _draw(lines, seed + 4, 3)).cast(pl.String).alias("units"),
        pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.String).str.zfill(2)).alias(
            "billed_amount"
        ),
        pl.when(_draw(lines, seed + 5, 10) == 0)
        .then(pl.format("PA{}", pl.col("row")))
        .alias("prior_auth_id"),
        pl.lit("1").alias("claim_frequency"),
        pl.lit(None, dtype=pl.String).alias("original_case_id"),
    )


def _read_csv(data: bytes) -> pl.DataFrame:
    return pl.read_csv(data, infer_schema=False)


_READERS = {"csv": _read_csv, "x12": read_837}


def _child(kind: str, path: str) -> None:
    """Run one reader in this (child) process and print its figures as JSON."""
    data = Path(path).read_bytes()
    wall, cpu = time.perf_counter(), time.process_time()
    reader = _READERS[kind]
    rows = reader(data).height
    figures = {
        "rows": rows,
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bytes": len(data),
    }
    print(json.dumps(figures))


def measure(kind: str, path: Path) -> dict[str, float]:
    """One reader's figures, from a fresh interpreter."""
    # This interpreter, this module, arguments of our own: no outside input.
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "claimsflow.x12.bench", "--child", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(lines: int, repeat: int, folder: Path) -> str:
    """Write the sample files, time both readers `repeat` times, return a table."""
    cases = bench_cases(lines)
    started = time.perf_counter()
    text = write_837(cases)
    write_seconds = time.perf_counter() - started
    x12_path, csv_path = folder / "bench.837", folder / "bench.csv"
    x12_path.write_text(text, encoding="ascii")
    cases.select(CASE_COLUMNS).write_csv(csv_path)
    table = [
        f"write_837: {lines:,} lines in {write_seconds:.2f} s",
        "",
        "| reader | file | rows | wall s (best) | CPU s | peak RSS | wall vs CSV |",
        "|---|---|---|---|---|---|---|",
    ]
    best: dict[str, dict[str, float]] = {}
    for kind, path in (("csv", csv_path), ("x12", x12_path)):
        runs = [measure(kind, path) for _ in range(repeat)]
        best[kind] = min(runs, key=lambda r: r["wall"])
    for kind, name in (("csv", "pl.read_csv"), ("x12", "read_837")):
        r = best[kind]
        table.append(
            f"| {name} | {r['bytes'] / 2**20:.0f} MiB | {int(r['rows']):,} | {r['wall']:.2f} "
            f"| {r['cpu']:.2f} | {r['rss'] / 2**30:.2f} GiB "
            f"| {r['wall'] / best['csv']['wall']:.1f}x |"
        )
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m claimsflow.x12.bench")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="keep the sample files here")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        print(run(args.lines, args.repeat, args.dir))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        print(run(args.lines, args.repeat, Path(folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
