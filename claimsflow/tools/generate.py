"""Deterministic sample data: reference files and case batches at any scale.

Same seed, same bytes. Members and providers are skewed (a few see most cases),
every rule outcome of the standard rule set occurs, and a few percent of rows
are invalid so rejection paths are exercised too. All of it is NumPy draws and
Polars column expressions: ten million cases take seconds, not minutes.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from schemas.case_batch import REQUIRED_COLUMNS

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
# Billed 5,000.01 .. 10,000.00: approved under rule set v1, pended under the candidate
# v2 (high-dollar at 5,000.00), so `adjudicate what-if` has changes to show.
MID_DOLLAR_SHARE = 0.01
RESENT_SHARE = 0.02  # the same claim again under a new case id (rule 9)
REPEATED_ID_SHARE = 0.002  # a case id used twice in the batch (rejected)
INVALID_SHARE = 0.03  # one malformed cell each (rejected)
# Rows of every batch but the first that correct a case of an earlier batch (spec §9),
# of which VOID_SHARE are voids, the rest replacements; of the replacements,
# REKEYED_SHARE move the service date back a day (a new duplicate key), the others
# keep their original's key and correct its amount.
CORRECTION_SHARE = 0.01
VOID_SHARE = 0.4
REKEYED_SHARE = 1 / 3


def _ids(prefix: str, count: int, width: int) -> pl.Series:
    return pl.select(
        pl.concat_str(
            pl.lit(prefix), pl.int_range(1, count + 1).cast(pl.String).str.zfill(width)
        ).alias("id")
    ).to_series()


def procedure_codes(count: int | None = None) -> list[str]:
    """The fee schedule's codes: PROCEDURES, or `count` codes (more are added after them)."""
    if count is None:
        return PROCEDURES
    extra = [f"{code:05d}" for code in range(99301, 99301 + max(0, count - len(PROCEDURES)))]
    return (PROCEDURES + extra)[:count]


def reference_frames(
    members: int, providers: int, seed: int, procedures: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """members.csv, providers.csv and fee_schedule.csv as text frames.

    The situations the rules look for are laid out by position (every tenth
    member, say), so even a small sample has each of them; amounts are drawn.
    Two spans in three have an out-of-pocket maximum (`_oop_maxima`).
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
    spans = spans.with_columns(pl.Series("oop_max", _oop_maxima(kind, seed)))
    returning = spans.filter(pl.Series(kind == 15)).with_columns(
        pl.lit("2025-09-01").alias("coverage_start"),
        pl.lit("").alias("coverage_end"),
        # Other terms for the second span of the year (the carry): another deductible
        # and coinsurance, and a maximum below that deductible, often already spent
        # under the first span (which has none).
        pl.lit("750.00").alias("annual_deductible"),
        pl.lit(20, dtype=pl.Int64).alias("coinsurance_percent"),
        pl.lit("500.00").alias("oop_max"),
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
    codes = procedure_codes(procedures)
    n = len(codes)
    slot = np.arange(n) % 5
    fees_frame = pl.DataFrame(
        {
            "procedure_code": codes,
            "allowed_amount": _amount_text(pl.Series(rng.integers(2_500, 45_000, n))),
            "prior_auth_required": np.where(slot == 3, "true", "false"),
            "max_units": np.where((slot == 0) | (slot == 2), rng.integers(1, 5, n).astype(str), ""),
        }
    )
    return members_frame, providers_frame, fees_frame


def _oop_maxima(kind: np.ndarray, seed: int) -> np.ndarray:
    """members.csv's oop_max per member: none for a third of them (and for the
    returning members' first span, so a span without a maximum precedes one with a
    maximum in 2025), 0 for one member in twenty, else amounts low enough that busy
    members reach them within the year (some below the member's deductible).

    Drawn from a generator of their own: the other columns stay as they were.
    """
    rng = np.random.default_rng([seed, 2])
    drawn = rng.choice(np.array(["600.00", "1500.00", "3000.00", "6000.00"]), len(kind))
    none = (kind % 3 == 0) | (kind == 15)
    return np.where(none, "", np.where(kind == 19, "0.00", drawn))


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
    cases: int,
    members: pl.DataFrame,
    providers: pl.DataFrame,
    fees: pl.DataFrame,
    seed: int,
    member_skew: float | None = None,
) -> pl.DataFrame:
    """Exactly `cases` rows of case-batch text, in file order."""
    rng = np.random.default_rng(seed + 1)
    member_ids = members["member_id"].unique(maintain_order=True)
    provider_ids = providers["provider_id"]
    # Skew: a power law over the ids, so a few members and providers dominate.
    member_at = (rng.power(0.35, cases) * member_ids.len()).astype(np.int64)
    if member_skew is not None:
        # Zipf over the members by rank: member k gets a share proportional to 1/k^s
        # (a few members with very many cases: the skewed workload of `make bench`).
        weights = 1.0 / np.arange(1, member_ids.len() + 1) ** member_skew
        member_at = rng.choice(member_ids.len(), size=cases, p=weights / weights.sum())
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
    billed = _with_mid_dollar_amounts(billed, seed)
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


def _with_mid_dollar_amounts(billed: np.ndarray, seed: int) -> np.ndarray:
    """~1% of amounts between 5,000.01 and 10,000.00 (drawn from a generator of their
    own, so the other columns stay as they were)."""
    rng = np.random.default_rng([seed, 3])
    mid = rng.integers(500_001, 1_000_001, len(billed))
    return np.where(rng.random(len(billed)) < MID_DOLLAR_SHARE, mid, billed)


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


#: The columns a correction row takes from the case it corrects: all but its own
#: identity (case_id, claim_frequency, original_case_id).
_CORRECTED_COLUMNS = (*REQUIRED_COLUMNS[1:], "prior_auth_id")


def with_corrections(
    frame: pl.DataFrame,
    batch_rows: int,
    seed: int,
    share: float = CORRECTION_SHARE,
    *,
    first_batch_rows: int | None = None,
) -> pl.DataFrame:
    """The case rows (text, in file order, to be cut into batches of `batch_rows`) with
    the columns `claim_frequency` and `original_case_id` (spec §1, §9).

    `share` of the rows of every batch but the first become corrections of a row of an
    earlier batch, drawn at random: the claim again (member, provider, dates, procedure,
    amounts), received 1 to 60 days after it, under the row's own case_id. A void
    (`8`, VOID_SHARE of them) repeats the claim as it was; a replacement (`7`) either
    keeps its original's duplicate key and bills 90 % of its amount, or (REKEYED_SHARE
    of replacements) moves the service date back a day. An original that was itself
    rejected, or that another correction voided first, makes the correction a rejected
    row: §9's rejections occur too. Other rows are originals (`1`).
    """
    n = frame.height
    rng = np.random.default_rng([seed, 4])
    row = np.arange(n)
    first = batch_rows if first_batch_rows is None else first_batch_rows
    # The first row of each row's batch (0 for the first batch).
    after_first = np.maximum(row - first, 0) // max(batch_rows, 1) * batch_rows
    first_of_batch = np.where(row < first, 0, first + after_first)
    correcting = (first_of_batch > 0) & (rng.random(n) < share)
    original = np.where(correcting, (rng.random(n) * first_of_batch).astype(np.int64), row)
    kind = rng.random(n)
    void = correcting & (kind < VOID_SHARE)
    rekeyed = correcting & (kind >= 1 - (1 - VOID_SHARE) * REKEYED_SHARE)
    amended = correcting & ~void & ~rekeyed
    later = pl.Series(rng.integers(1, 61, n))
    source = pl.Series(original)
    theirs = frame.select(pl.col(c).gather(source) for c in ("case_id", *_CORRECTED_COLUMNS))
    when = pl.lit(pl.Series(correcting))

    def shifted(date_text: pl.Expr, days: pl.Expr) -> pl.Expr:
        # A cell that is no date (a corrupted original) is copied as it is.
        date = date_text.str.to_date("%Y-%m-%d", strict=False)
        return (date + pl.duration(days=days)).dt.strftime("%Y-%m-%d").fill_null(date_text)

    billed = pl.col("billed_amount").str.replace(".", "", literal=True).cast(pl.Int64, strict=False)
    corrected = theirs.with_columns(
        shifted(pl.col("received_date"), pl.lit(later)).alias("received_date"),
        pl.when(pl.lit(pl.Series(rekeyed)))
        .then(shifted(pl.col("service_date"), pl.lit(-1)))
        .otherwise(pl.col("service_date"))
        .alias("service_date"),
        pl.when(pl.lit(pl.Series(amended)) & billed.is_not_null())
        .then(_amount_expr(pl.max_horizontal(billed * 9 // 10, pl.lit(1))))
        .otherwise(pl.col("billed_amount"))
        .alias("billed_amount"),
    )
    return frame.with_columns(
        *(
            pl.when(when).then(pl.lit(corrected[c])).otherwise(pl.col(c)).alias(c)
            for c in _CORRECTED_COLUMNS
        ),
        pl.when(pl.lit(pl.Series(void)))
        .then(pl.lit("8"))
        .when(when)
        .then(pl.lit("7"))
        .otherwise(pl.lit("1"))
        .alias("claim_frequency"),
        pl.when(when)
        .then(pl.lit(theirs["case_id"]))
        .otherwise(pl.lit(""))
        .alias("original_case_id"),
    )


def _amount_expr(cents: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        (cents // 100).cast(pl.String), pl.lit("."), (cents % 100).cast(pl.String).str.zfill(2)
    )


def write_sample(
    out_dir: Path,
    cases: int,
    batches: int,
    seed: int,
    *,
    members: int | None = None,
    providers: int | None = None,
    procedures: int | None = None,
    member_skew: float | None = None,
    formats: Sequence[str] = ("csv", "jsonl", "parquet"),
) -> list[Path]:
    """Write reference/ and inbox/ under `out_dir`; returns the files written.

    The cases are split into `batches` files in turn of `formats` (by default CSV,
    JSON Lines and Parquet; `837` writes an X12 837P of multi-line claims,
    `write_837_batch`). With more than one batch, ~1% of the rows of every batch but
    the first correct a case of an earlier one (`with_corrections`, spec §9; with one
    batch the files have no `claim_frequency` or `original_case_id` column). An 837
    batch carries none: its case ids are CLM01-LX01 and a frequency-7/8 claim names
    its original as REF*F8-LX01 (§10), which cannot name the sample's other case ids,
    so its rows are written as they were before the corrections were drawn.
    By default members = cases / 20 and providers = cases / 100; `member_skew` draws
    members by a Zipf law of that exponent instead of the default power law.
    """
    members = members or max(20, cases // 20)
    providers = providers or max(10, cases // 100)
    reference_dir = out_dir / "reference"
    inbox = out_dir / "inbox"
    reference_dir.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    members_frame, providers_frame, fees_frame = reference_frames(
        members, providers, seed, procedures
    )
    written = []
    for name, frame in (
        ("members.csv", members_frame),
        ("providers.csv", providers_frame),
        ("fee_schedule.csv", fees_frame),
    ):
        path = reference_dir / name
        frame.write_csv(path)
        written.append(path)
    all_cases = case_frame(
        cases, members_frame, providers_frame, fees_frame, seed, member_skew=member_skew
    )
    size = -(-all_cases.height // batches)
    uncorrected = all_cases
    if batches > 1:
        all_cases = with_corrections(all_cases, size, seed)
    for number in range(batches):
        part = all_cases.slice(number * size, size)
        fmt = formats[number % len(formats)]
        if fmt == "837":
            part = uncorrected.slice(number * size, size)
        path = inbox / f"batch-{number + 1:04d}.{fmt}"
        if fmt == "csv":
            part.write_csv(path)
        elif fmt == "jsonl":
            part.write_ndjson(path)
        elif fmt == "837":
            write_837_batch(path, part, seed=seed + number)
        else:
            part.write_parquet(path, compression="zstd")
        written.append(path)
    return written


#: The sample review file (spec §8), under the sample's folder.
SAMPLE_REVIEW = Path("reviews") / "review-0001.csv"
SAMPLE_EXAMINERS = ("ann.lee", "bob.king")


def write_sample_review(out_dir: Path, run_date: dt.date | None = None) -> Path | None:
    """Write `reviews/review-0001.csv` under `out_dir`: an examiner's decisions on cases
    that the sample's batches (`inbox/`, with `reference/`) will pend; None when they
    pend none.

    Which cases end PENDED is worked out by deciding the inbox's batches in memory, in
    name order, with the rule set in effect on `run_date` (default today), as `adjudicate
    run` will. Two thirds of them (rounded up) are decided, in the order received: two
    approved, then one denied (CO-50), and so on; then one broken row (a DENY of the
    next PENDED case without a reason code, or, with none left, a repeat of the first
    row's case), so that `adjudicate review` shows a rejected row and the queue keeps
    some cases. Same inbox, same bytes.
    """
    # Imported here: the sample's cases are written without the decision core (fast).
    from claimsflow.core.history import MemoryHistory
    from claimsflow.core.reference import load_reference
    from claimsflow.core.rules.ruleset import load_rulesets, select_ruleset
    from claimsflow.ingest.inbox import discover_inbox
    from claimsflow.ingest.reading import UnreadableBatch, batch_format, read_batch_bytes
    from claimsflow.pipeline.batch import decide_batch
    from claimsflow.settings import RULES_DIR
    from claimsflow.vocabulary import PENDED

    reference = load_reference(out_dir / "reference")
    ruleset = select_ruleset(load_rulesets(RULES_DIR), run_date or dt.date.today(), None)
    history = MemoryHistory()
    for path in discover_inbox(out_dir / "inbox")[0]:
        fmt = batch_format(path)
        if fmt is None:  # pragma: no cover - discovery only lists batch files
            continue
        try:
            raw = read_batch_bytes(path.read_bytes(), fmt, with_raw=False)
        except UnreadableBatch:
            continue  # a rejected batch decides nothing
        decision = decide_batch(raw, reference, ruleset, history)
        history = history.advanced_by(decision.cases, decision.decisions)
    pended = history.latest().filter(pl.col("status") == PENDED)["case_id"].to_list()
    if not pended:
        return None
    reviewed = pended[: -(-2 * len(pended) // 3)]
    rows = [
        {
            "case_id": case_id,
            "decision": "DENY" if n % 3 == 2 else "APPROVE",
            "reason_code": "CO-50" if n % 3 == 2 else "",
            "examiner": SAMPLE_EXAMINERS[n % 2],
            "note": "not medically necessary" if n % 3 == 2 else "records reviewed",
        }
        for n, case_id in enumerate(reviewed)
    ]
    left = pended[len(reviewed) :]
    rows.append(
        {
            "case_id": left[0] if left else reviewed[0],
            "decision": "DENY",
            "reason_code": "",  # broken: a DENY needs a reason code
            "examiner": SAMPLE_EXAMINERS[0],
            "note": "",
        }
    )
    target = out_dir / SAMPLE_REVIEW
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target


#: Service lines per claim of a sample 837, drawn from this list (1 to 4, mostly 1-2).
CLAIM_LINES = (1, 1, 1, 2, 2, 3, 4)


def claims_of(cases: pl.DataFrame, seed: int) -> pl.DataFrame:
    """`cases` shaped as multi-line professional claims, in 837 order.

    Consecutive rows form claims of 1 to 4 lines; a claim's lines share its first
    row's member, provider and received date (an 837 carries them once per claim) and
    service date (one visit), and
    take the case ids `<first row's case_id>-1`, `-2`, ... (spec §10: CLM01 `-` LX01).
    Claims are ordered by received date, provider and member, so transaction sets,
    billing and subscriber levels hold many claims (`write_837` opens one per run).
    """
    n = cases.height
    rng = np.random.default_rng(seed + 837)
    sizes = rng.choice(np.array(CLAIM_LINES), size=max(n, 1))
    claim = np.repeat(np.arange(sizes.size), sizes)[:n]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    first = starts[claim]
    line = np.arange(n) - first + 1
    shared = ("member_id", "provider_id", "service_date", "received_date")
    return (
        cases.with_columns(
            *(pl.col(c).gather(pl.lit(first)) for c in shared),
            pl.concat_str(
                pl.col("case_id").gather(pl.lit(first)), pl.lit("-"), pl.lit(line).cast(pl.String)
            ).alias("case_id"),
            pl.lit(claim).alias("_claim"),
            pl.lit(line).alias("_line"),
        )
        .sort(["received_date", "provider_id", "member_id", "_claim", "_line"], nulls_last=True)
        .drop("_claim", "_line")
    )


def write_837_batch(path: Path, cases: pl.DataFrame, *, seed: int) -> Path:
    """Write `cases` (§1 text rows) as one X12 837P file of multi-line claims, with
    ICD-10 diagnoses (HI ABK/ABF) and the cases' invalid values as written, so the
    run rejects the same kinds of row as in a CSV batch."""
    from claimsflow.x12.write837 import write_837

    claims = claims_of(cases, seed)
    text = write_837(claims, control_number=seed % 999_999_999 + 1)
    path.write_text(text, encoding="ascii")
    return path
