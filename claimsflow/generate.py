"""Deterministic sample data: reference files and case batches at any scale.

Same seed, same bytes. Members and providers are skewed (a few see most cases),
every rule outcome occurs, and a few percent of rows are invalid so rejection
paths are exercised too. Vectorised with NumPy: millions of cases in seconds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

PROCEDURES = [f"{code:05d}" for code in range(99201, 99231)] + ["J1100", "G0008", "A4550"]
DIAGNOSES = ["J45.909", "E11.9", "I10", "M54.5", "Z00.00", "R51", "K21.9", "F41.1"]
YEAR_START = dt.date(2024, 1, 1)


def reference_frames(
    members: int, providers: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    member_ids = np.array([f"M{i:07d}" for i in range(1, members + 1)])
    deductibles = rng.choice(["0.00", "250.00", "500.00", "1000.00", "2000.00"], members)
    coinsurance = rng.choice([0, 10, 20, 30], members)
    starts = rng.choice(["2023-01-01", "2024-01-01", "2024-04-01"], members, p=[0.6, 0.3, 0.1])
    # 10% of members' coverage ended mid-2025; 5% came back with a second span.
    ended = rng.random(members) < 0.10
    ends = np.where(ended, "2025-06-30", "")
    spans = pl.DataFrame(
        {
            "member_id": member_ids,
            "coverage_start": starts,
            "coverage_end": ends,
            "annual_deductible": deductibles,
            "coinsurance_percent": coinsurance,
        }
    )
    returning = spans.filter(pl.Series(ended & (rng.random(members) < 0.5))).with_columns(
        pl.lit("2025-09-01").alias("coverage_start"),
        pl.lit("").alias("coverage_end"),
    )
    members_frame = pl.concat([spans, returning]).sort("member_id", "coverage_start")
    provider_ids = np.array([f"P{i:05d}" for i in range(1, providers + 1)])
    providers_frame = pl.DataFrame(
        {
            "provider_id": provider_ids,
            "status": np.where(rng.random(providers) < 0.05, "SUSPENDED", "ACTIVE"),
            "in_network": np.where(rng.random(providers) < 0.10, "false", "true"),
        }
    )
    n = len(PROCEDURES)
    fees_frame = pl.DataFrame(
        {
            "procedure_code": PROCEDURES,
            "allowed_amount": [f"{v / 100:.2f}" for v in rng.integers(2_500, 45_000, n)],
            "prior_auth_required": np.where(rng.random(n) < 0.2, "true", "false"),
            "max_units": np.where(rng.random(n) < 0.4, rng.integers(1, 5, n).astype(str), ""),
        }
    )
    return members_frame, providers_frame, fees_frame


def case_frame(
    cases: int, members: pl.DataFrame, providers: pl.DataFrame, fees: pl.DataFrame, seed: int
) -> pl.DataFrame:
    rng = np.random.default_rng(seed + 1)
    member_ids = members["member_id"].unique(maintain_order=True).to_numpy()
    provider_ids = providers["provider_id"].to_numpy()
    # Skew: a power law over the ids, so a few members and providers dominate.
    member = member_ids[(rng.power(0.35, cases) * len(member_ids)).astype(np.int64)]
    member = np.where(rng.random(cases) < 0.02, "M9999999", member)  # unknown member
    provider = provider_ids[(rng.power(0.4, cases) * len(provider_ids)).astype(np.int64)]
    provider = np.where(rng.random(cases) < 0.01, "P99999", provider)  # unknown provider
    procedure_pool = np.array([*fees["procedure_code"].to_list(), "99999"])
    weights = np.r_[np.full(len(procedure_pool) - 1, 0.98 / (len(procedure_pool) - 1)), 0.02]
    procedure = rng.choice(procedure_pool, cases, p=weights)
    service_offset = rng.integers(0, 730, cases)
    service = np.datetime64(YEAR_START) + service_offset.astype("timedelta64[D]")
    lag = rng.exponential(20, cases).astype(np.int64)
    lag = np.where(rng.random(cases) < 0.02, rng.integers(366, 500, cases), lag)
    received = service + lag.astype("timedelta64[D]")
    units = np.where(rng.random(cases) < 0.85, 1, rng.integers(2, 6, cases))
    fee_cents = dict(
        zip(
            fees["procedure_code"].to_list(),
            (fees["allowed_amount"].str.replace(".", "", literal=True).cast(pl.Int64).to_list()),
            strict=True,
        )
    )
    base = np.array([fee_cents.get(p, 15_000) for p in procedure_pool])
    index = {p: i for i, p in enumerate(procedure_pool)}
    billed = (
        base[np.vectorize(index.__getitem__)(procedure)] * units * rng.uniform(0.8, 1.6, cases)
    ).astype(np.int64)
    billed = np.where(rng.random(cases) < 0.01, rng.integers(1_000_001, 5_000_000, cases), billed)
    prior_auth = np.where(
        rng.random(cases) < 0.7,
        np.char.add("PA", rng.integers(10_000, 99_999, cases).astype(str)),
        "",
    )
    frame = pl.DataFrame(
        {
            "case_id": [f"CLM{seed:03d}{i:09d}" for i in range(1, cases + 1)],
            "member_id": member,
            "provider_id": provider,
            "service_date": service.astype(str),
            "received_date": received.astype(str),
            "procedure_code": procedure,
            "diagnosis_code": rng.choice(DIAGNOSES, cases),
            "units": units.astype(str),
            "billed_amount": [f"{c // 100}.{c % 100:02d}" for c in billed.tolist()],
            "prior_auth_id": prior_auth,
        }
    )
    return _with_duplicates(_with_invalid_rows(frame, rng), rng)


def _with_invalid_rows(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Corrupt ~3% of rows, one kind of error each."""
    kind = pl.Series(
        np.where(rng.random(frame.height) < 0.03, rng.integers(0, 6, frame.height), -1)
    )
    return frame.with_columns(
        pl.when(kind == 0).then(pl.lit("")).otherwise(pl.col("member_id")).alias("member_id"),
        pl.when(kind == 1)
        .then(pl.lit("2024-02-30"))
        .otherwise(pl.col("service_date"))
        .alias("service_date"),
        pl.when(kind == 2)
        .then(pl.lit("9921"))
        .otherwise(pl.col("procedure_code"))
        .alias("procedure_code"),
        pl.when(kind == 3).then(pl.lit("0")).otherwise(pl.col("units")).alias("units"),
        pl.when(kind == 4)
        .then(pl.lit("12.345"))
        .otherwise(pl.col("billed_amount"))
        .alias("billed_amount"),
        pl.when(kind == 5)
        .then(pl.lit("2023-12-31"))
        .otherwise(pl.col("received_date"))
        .alias("received_date"),
    )


def _with_duplicates(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Resend ~2% of claims under a new case id (rule 9), and repeat a few case ids."""
    picks = rng.random(frame.height) < 0.02
    resent = frame.filter(pl.Series(picks)).with_columns((pl.col("case_id") + "R").alias("case_id"))
    repeated = frame.filter(pl.Series(rng.random(frame.height) < 0.002))
    return pl.concat([frame, resent, repeated])


def write_sample(out_dir: Path, cases: int, batches: int, seed: int) -> list[Path]:
    """Write reference/ and inbox/ under `out_dir`; returns the files written."""
    members = max(20, cases // 20)
    providers = max(10, cases // 100)
    reference_dir = out_dir / "reference"
    inbox = out_dir / "inbox"
    reference_dir.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    members_frame, providers_frame, fees_frame = reference_frames(members, providers, seed)
    written = []
    for name, frame in (
        ("members.csv", members_frame),
        ("providers.csv", providers_frame),
        ("fee_schedule.csv", fees_frame),
    ):
        path = reference_dir / name
        frame.write_csv(path)
        written.append(path)
    all_cases = case_frame(cases, members_frame, providers_frame, fees_frame, seed)
    shuffled = all_cases.sample(fraction=1.0, shuffle=True, seed=seed)
    size = -(-shuffled.height // batches)
    formats = ("csv", "jsonl", "parquet")
    for number in range(batches):
        part = shuffled.slice(number * size, size)
        fmt = formats[number % len(formats)]
        path = inbox / f"batch-{number + 1:04d}.{fmt}"
        if fmt == "csv":
            part.write_csv(path)
        elif fmt == "jsonl":
            part.write_ndjson(path)
        else:
            part.write_parquet(path, compression="zstd")
        written.append(path)
    return written
