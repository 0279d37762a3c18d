"""`python -m bench.pricing`: §5 pricing alone, on approved cases, with and without
out-of-pocket maxima on the spans.

    python -m bench.pricing                       # 1M and 10M approved cases
    python -m bench.pricing --sizes 100000 --repeat 5

The decisions frame is built directly (NumPy draws, no validation or rules): every
case APPROVED, members skewed like the generator's (a few members see most cases),
one member in twenty with a second span in 2025 whose deductible and maximum differ
(a member-year with two span runs: the carry). With `oop` on, two members in three
have a maximum (some of them 0, most low enough to bind within the year).
Each figure is the best of `--repeat` runs of `price()` (wall and CPU seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import polars as pl

from claimsflow.core.pricing import price
from claimsflow.core.rules.context import MEMBER_KEY
from claimsflow.vocabulary import APPROVED

SERVICE_DAYS = 730
START = dt.date(2024, 1, 1)
SECOND_SPAN = (dt.date(2025, 9, 1) - START).days


def pricing_frame(cases: int, *, oop: bool, seed: int = 7) -> pl.DataFrame:
    """`cases` APPROVED decisions with their span terms, as the context gives them."""
    rng = np.random.default_rng(seed)
    members = max(20, cases // 20)
    member = (rng.power(0.35, cases) * members).astype(np.int64)
    deductible = rng.choice(np.array([0, 25_000, 50_000, 100_000, 200_000]), members)
    percent = rng.choice(np.array([0, 10, 20, 30]), members)
    maximum = rng.choice(
        np.array([0, 150_000, 300_000, 600_000]), members, p=[0.02, 0.38, 0.4, 0.2]
    )
    has_maximum = np.arange(members) % 3 != 0 if oop else np.zeros(members, dtype=bool)
    service = rng.integers(0, SERVICE_DAYS, cases)
    received = service + rng.exponential(20, cases).astype(np.int64)
    # One member in twenty changes span on 2025-09-01: another deductible and maximum.
    second = (member % 20 == 15) & (service >= SECOND_SPAN)
    fee = rng.integers(2_500, 45_000, cases)
    units = np.where(rng.random(cases) < 0.85, 1, rng.integers(2, 6, cases))
    billed = (fee * units * rng.uniform(0.8, 1.6, cases)).astype(np.int64)
    span_maximum = np.where(second, 250_000, maximum[member])
    return pl.DataFrame(
        {
            "case_id": pl.select(
                pl.concat_str(pl.lit("CLM"), pl.int_range(cases).cast(pl.String).str.zfill(9))
            ).to_series(),
            "member_id": pl.select(
                pl.concat_str(pl.lit("M"), pl.lit(member).cast(pl.String).str.zfill(7))
            ).to_series(),
            "service_date": _dates(service),
            "received_date": _dates(received),
            "units": units,
            "billed_cents": billed,
            "fee_allowed_cents": fee,
            "annual_deductible_cents": np.where(second, 75_000, deductible[member]),
            "coinsurance_percent": np.where(second, 20, percent[member]),
            "oop_max_cents": pl.Series(span_maximum).set(~pl.Series(has_maximum[member]), None)
            if oop
            else pl.repeat(None, cases, dtype=pl.Int64, eager=True),
            "status": pl.repeat(APPROVED, cases, dtype=pl.String, eager=True),
            MEMBER_KEY: pl.Series(member).cast(pl.UInt32),
        }
    )


def _dates(offsets: np.ndarray) -> pl.Series:
    """Days after START as dates."""
    epoch_days = (START - dt.date(1970, 1, 1)).days
    return pl.Series(offsets + epoch_days).cast(pl.Int32).cast(pl.Date)


def best_of(frame: pl.DataFrame, repeat: int) -> tuple[float, float]:
    """Best wall and CPU seconds of `repeat` calls of price() on `frame`."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        price(frame)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pricing", description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("| cases | out-of-pocket maxima | seconds (best) | CPU s (best) |")
    print("|---:|---|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        for oop in (False, True):
            frame = pricing_frame(size, oop=oop)
            wall, cpu = best_of(frame, args.repeat)
            label = "2 members in 3" if oop else "none"
            print(f"| {size:,} | {label} | {wall:.2f} | {cpu:.2f} |", flush=True)
            del frame


if __name__ == "__main__":
    main()
