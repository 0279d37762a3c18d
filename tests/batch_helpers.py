"""Plain helpers shared by the batch, validation, event-log and CLI tests.

Test modules import these directly (`from batch_helpers import ...`); conftest.py
wraps the ones that need a temporary folder into fixtures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

from claimsflow.ingest.inbox import discover_inbox
from claimsflow.pipeline.batch import BatchOutcome, RunContext
from claimsflow.pipeline.run import run_batches

CASE_HEADER: tuple[str, ...] = (
    "case_id",
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_amount",
    "prior_auth_id",
)
REQUIRED_HEADER: tuple[str, ...] = CASE_HEADER[:-1]

#: Types of the factory fixtures in conftest.py.
CsvWriter = Callable[..., Path]
InboxRunner = Callable[[], list[BatchOutcome]]
RunFactory = Callable[[str], RunContext]

# A tiny, hand-written reference set (spec §2).
#   M001: one open span from 2024-01-01, deductible 500.00, coinsurance 20 %.
#   M002: 2023 span, then a span from 2024-03-01 (gap Jan-Feb 2024).
#   P001 active in network, P002 suspended, P003 active out of network.
#   99213 100.00/unit, max 4 units; 99214 needs prior auth; J1100 no unit limit.
MEMBERS_CSV = (
    "member_id,coverage_start,coverage_end,annual_deductible,coinsurance_percent\n"
    "M001,2024-01-01,,500.00,20\n"
    "M002,2023-01-01,2023-12-31,0.00,10\n"
    "M002,2024-03-01,,250.00,0\n"
)
PROVIDERS_CSV = (
    "provider_id,status,in_network\nP001,ACTIVE,true\nP002,SUSPENDED,true\nP003,ACTIVE,false\n"
)
FEE_SCHEDULE_CSV = (
    "procedure_code,allowed_amount,prior_auth_required,max_units\n"
    "99213,100.00,false,4\n"
    "99214,150.00,true,\n"
    "J1100,12.50,false,\n"
)
REFERENCE_FILES: dict[str, str] = {
    "members.csv": MEMBERS_CSV,
    "providers.csv": PROVIDERS_CSV,
    "fee_schedule.csv": FEE_SCHEDULE_CSV,
}


def write_reference(directory: Path, **overrides: str) -> Path:
    """Write the three reference files into `directory`.

    `overrides` maps a file stem (members, providers, fee_schedule) to replacement text.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in REFERENCE_FILES.items():
        stem = name.removesuffix(".csv")
        (directory / name).write_text(overrides.get(stem, text), encoding="utf-8")
    return directory


def case_row(case_id: str = "C001", **overrides: str) -> dict[str, str]:
    """A valid case row (approved against the fixture reference), with overrides."""
    row = {
        "case_id": case_id,
        "member_id": "M001",
        "provider_id": "P001",
        "service_date": "2024-05-01",
        "received_date": "2024-05-10",
        "procedure_code": "99213",
        "diagnosis_code": "J45.909",
        "units": "1",
        "billed_amount": "80.00",
        "prior_auth_id": "",
    }
    row.update(overrides)
    return row


def csv_bytes(rows: Iterable[Mapping[str, str]], header: Sequence[str] | None = None) -> bytes:
    """CSV text (UTF-8, header row) of the rows; the header defaults to CASE_HEADER
    plus any extra keys the rows carry, in first-seen order."""
    materialised = list(rows)
    columns = list(header) if header is not None else list(CASE_HEADER)
    if header is None:
        for row in materialised:
            columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(materialised)
    return buffer.getvalue().encode("utf-8")


def write_csv(
    path: Path, rows: Iterable[Mapping[str, str]], header: Sequence[str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(rows, header))
    return path


def text_frame(rows: Sequence[Mapping[str, str]]) -> pl.DataFrame:
    """The rows as a frame of String columns (CASE_HEADER order, then extras)."""
    columns = list(CASE_HEADER)
    for row in rows:
        columns += [key for key in row if key not in columns]
    return pl.DataFrame(
        {c: [row.get(c) for row in rows] for c in columns},
        schema=dict.fromkeys(columns, pl.String),
    )


def run_inbox(inbox: Path, run: RunContext) -> list[BatchOutcome]:
    """What the nightly flow does with an inbox, without Prefect."""
    return run_batches(run, discover_inbox(inbox)[0])
