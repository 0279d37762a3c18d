"""Deterministic sample data: reference files and case batches at any scale.

Same seed, same bytes. Members and providers are skewed (a few see most cases),
every rule outcome of the standard rule set occurs, and a few percent of rows
are invalid so rejection paths are exercised too. All of it is NumPy draws and
Polars column expressions: ten million cases take seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

PROCEDURES = [f"{code:05d}" for code in range(99201, 99231)] + ["J1100", "G0008", "A4550"]
UNKNOWN_PROCEDURE = "99999"
DIAGNOSES = ["J45.909", "E11.9", "I10", "M54.5", "Z00.00", "R51", "K21.9", "F41.1"]
UNKNOWN_MEMBER, UNKNOWN_PROVIDER = "M9999999", "P99999"
YEAR_START = dt.date(2024, 1, 1)
SERVICE_DAYS = 730

# Shares of cases (of rows, for the invalid ones) carrying each situation.
UNKNOWN_MEMBER_SHARE = 0.02
UNKNOWN_PROVIDER_SHARE = 0.01
UNKNOWN_PROCEDURE_SHARE = 0.02
LATE_FILING_SHARE = 0.02
HIGH_DOLLAR_SHARE = 0.01
RESENT_SHARE = 0.02  # the same claim again under a new case id (rule 9)
REPEATED_ID_SHARE = 0.002  # a case id used twice in the batch (rejected)
INVALID_SHARE = 0.03  # one malformed cell each (rejected)


def _ids(prefix: str, count: int, width: int) -> pl.Series:
    return pl.select(
        pl.concat_str(
            pl.lit(prefix), pl.int_range(1, count + 1).cast(pl.String).str.zfill(width)
        ).alias("id")
    ).to_series()


def reference_frames(
    members: int, providers: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """members.csv, providers.csv and fee_schedule.csv as text frames.

    The situations the rules look for are laid out by position (every tenth
    member, say), so even a small sample has each of them; amounts are drawn.
    """
    rng = np.random.default_rng(seed)
    kind = np.arange(members) % 20
    # 5% start in April 2024 (services before that: CO-26); 10% ended mid-2025
    # (CO-27 after it), half of whom came back with a second span in September.
    starts = np.where(kind == 3, "2024-04-01", np.where(kind % 2 == 0, "2023-01-01", "2024-01-01"))
    ended = (kind == 5) | (kind == 15)
    spans = pl.DataFrame(
        {
            "member_id": _ids("M", members, 7),
            "coverage_start": starts,
            "coverage_end": np.where(ended, "2025-06-30", ""),
            "annual_deductible": rng.choice(
                np.array(["0.00", "250.00", "500.00", "1000.00", "2000.00"]), members
            ),
            "coinsurance_percent": rng.choice(np.array([0, 10, 20, 30]), members),
        }
    )
    returning = spans.filter(pl.Series(kind == 15)).with_columns(
        pl.lit("2025-09-01").alias("coverage_start"),
        pl.lit("").alias("coverage_end"),
        # Another deductible for the second span of the year: the carried balance.
        pl.lit("750.00").alias("annual_deductible"),
    )
    members_frame = pl.concat([spans, returning]).sort("member_id", "coverage_start")
    position = np.arange(providers)
    providers_frame = pl.DataFrame(
        {
            "provider_id": _ids("P", providers, 5),
            "status": np.where(position % 20 == 11, "SUSPENDED", "ACTIVE"),
            "in_network": np.where(position % 10 == 7, "false", "true"),
        }
    )
    n = len(PROCEDURES)
    slot = np.arange(n) % 5
    fees_frame = pl.DataFrame(
        {
            "procedure_code": PROCEDURES,
            "allowed_amount": _amount_text(pl.Series(rng.integers(2_500, 45_000, n))),
            "prior_auth_required": np.where(slot == 3, "true", "false"),
            "max_units": np.where((slot == 0) | (slot == 2), rng.integers(1, 5, n).astype(str), ""),
        }
    )
    return members_frame, providers_frame, fees_frame


def _amount_text(cents: pl.Series) -> pl.Series:
    """Integer cents as decimal text with two places (12345 -> "123.45")."""
    return pl.select(
        pl.concat_str(
            (pl.lit(cents) // 100).cast(pl.String),
            pl.lit("."),
            (pl.lit(cents) % 100).cast(pl.String).str.zfill(2),
        )
    ).to_series()


def case_frame(
    cases: int, members: pl.DataFrame, providers: pl.DataFrame, fees: pl.DataFrame, seed: int
) -> pl.DataFrame:
    """Exactly `cases` rows of case-batch text, in file order."""
    rng = np.random.default_rng(seed + 1)
    member_ids = members["member_id"].unique(maintain_order=True)
    provider_ids = providers["provider_id"]
    # Skew: a power law over the ids, so a few members and providers dominate.
    member_at = (rng.power(0.35, cases) * member_ids.len()).astype(np.int64)
    provider_at = (rng.power(0.4, cases) * provider_ids.len()).astype(np.int64)
    procedure_pool = pl.Series([*fees["procedure_code"].to_list(), UNKNOWN_PROCEDURE])
    known = procedure_pool.len() - 1
    procedure_at = np.where(
        rng.random(cases) < UNKNOWN_PROCEDURE_SHARE, known, rng.integers(0, known, cases)
    )
    fee_cents = np.append(
        fees["allowed_amount"].str.replace(".", "", literal=True).cast(pl.Int64).to_numpy(), 15_000
    )
    service = rng.integers(0, SERVICE_DAYS, cases)
    lag = rng.exponential(20, cases).astype(np.int64)
    lag = np.where(rng.random(cases) < LATE_FILING_SHARE, rng.integers(366, 500, cases), lag)
    units = np.where(rng.random(cases) < 0.85, 1, rng.integers(2, 6, cases))
    billed = (fee_cents[procedure_at] * units * rng.uniform(0.8, 1.6, cases)).astype(np.int64)
    billed = np.where(
        rng.random(cases) < HIGH_DOLLAR_SHARE, rng.integers(1_000_001, 5_000_000, cases), billed
    )
    claims = pl.DataFrame(
        {
            "member_at": member_at,
            "unknown_member": rng.random(cases) < UNKNOWN_MEMBER_SHARE,
            "provider_at": provider_at,
            "unknown_provider": rng.random(cases) < UNKNOWN_PROVIDER_SHARE,
            "procedure_at": procedure_at,
            "service": service,
            "received": service + lag,
            "units": units,
            "billed": billed,
            "diagnosis_at": rng.integers(0, len(DIAGNOSES), cases),
            "prior_auth": np.where(
                rng.random(cases) < 0.7, rng.integers(10_000, 99_999, cases), -1
            ),
        }
    )
    claims = _with_resent_claims(claims, rng)
    # Every date a case can carry, as text once; cases pick theirs by offset.
    days = _day_texts(int(claims.select(pl.col("received").max()).item() or 0) + 1)
    frame = claims.select(
        pl.concat_str(
            pl.lit(f"CLM{seed:03d}"), pl.int_range(1, cases + 1).cast(pl.String).str.zfill(9)
        ).alias("case_id"),
        pl.when(pl.col("unknown_member"))
        .then(pl.lit(UNKNOWN_MEMBER))
        .otherwise(pl.lit(member_ids).gather(pl.col("member_at")))
        .alias("member_id"),
        pl.when(pl.col("unknown_provider"))
        .then(pl.lit(UNKNOWN_PROVIDER))
        .otherwise(pl.lit(provider_ids).gather(pl.col("provider_at")))
        .alias("provider_id"),
        pl.lit(days).gather(pl.col("service")).alias("service_date"),
        pl.lit(days).gather(pl.col("received")).alias("received_date"),
        pl.lit(procedure_pool).gather(pl.col("procedure_at")).alias("procedure_code"),
        pl.lit(pl.Series(DIAGNOSES)).gather(pl.col("diagnosis_at")).alias("diagnosis_code"),
        pl.col("units").cast(pl.String),
        pl.lit(_amount_text(claims["billed"])).alias("billed_amount"),
        pl.when(pl.col("prior_auth") >= 0)
        .then(pl.concat_str(pl.lit("PA"), pl.col("prior_auth").cast(pl.String)))
        .otherwise(pl.lit(""))
        .alias("prior_auth_id"),
    )
    return _with_invalid_rows(_with_repeated_ids(frame, rng), rng)


def _day_texts(count: int) -> pl.Series:
    """ISO text of the `count` days from YEAR_START on."""
    return pl.select(
        pl.date_range(YEAR_START, YEAR_START + dt.timedelta(days=max(count, 1) - 1), eager=True)
        .dt.strftime("%Y-%m-%d")
        .alias("day")
    ).to_series()


def _with_resent_claims(claims: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """~2% of rows resend an earlier row's claim (same member, provider, service
    date, procedure, amounts), received a few days after it: rule 9's duplicates."""
    n = claims.height
    row = np.arange(n)
    resent = (rng.random(n) < RESENT_SHARE) & (row > 0)
    source = np.where(resent, (rng.random(n) * row).astype(np.int64), row)
    copied = ["member_at", "unknown_member", "provider_at", "unknown_provider", "procedure_at"]
    copied += ["service", "units", "billed", "diagnosis_at", "prior_auth"]
    later = claims["received"].to_numpy()[source] + rng.integers(1, 30, n)
    return claims.with_columns(
        *(pl.col(name).gather(source) for name in copied),
        pl.when(pl.lit(resent)).then(pl.lit(later)).otherwise(pl.col("received")).alias("received"),
    )


def _with_repeated_ids(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """~0.2% of rows reuse the case id of an earlier row (the later one is rejected)."""
    n = frame.height
    row = np.arange(n)
    repeated = (rng.random(n) < REPEATED_ID_SHARE) & (row > 0)
    source = np.where(repeated, (rng.random(n) * row).astype(np.int64), row)
    return frame.with_columns(pl.col("case_id").gather(source))


def _with_invalid_rows(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Corrupt ~3% of rows, one kind of error each."""
    kind = pl.Series(
        np.where(rng.random(frame.height) < INVALID_SHARE, rng.integers(0, 6, frame.height), -1)
    )

    def corrupt(number: int, column: str, value: str) -> pl.Expr:
        return pl.when(pl.lit(kind) == number).then(pl.lit(value)).otherwise(pl.col(column))

    return frame.with_columns(
        corrupt(0, "member_id", "").alias("member_id"),
        corrupt(1, "service_date", "2024-02-30").alias("service_date"),
        corrupt(2, "procedure_code", "9921").alias("procedure_code"),
        corrupt(3, "units", "0").alias("units"),
        corrupt(4, "billed_amount", "12.345").alias("billed_amount"),
        corrupt(5, "received_date", "2023-12-31").alias("received_date"),
    )


def write_sample(out_dir: Path, cases: int, batches: int, seed: int) -> list[Path]:
    """Write reference/ and inbox/ under `out_dir`; returns the files written.

    The cases are split into `batches` files in turn CSV, JSON Lines and Parquet.
    """
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
    size = -(-all_cases.height // batches)
    formats = ("csv", "jsonl", "parquet")
    for number in range(batches):
        part = all_cases.slice(number * size, size)
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
