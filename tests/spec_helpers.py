"""Shared builders for the spec tests (§4 rules, §5 pricing, rule-set files).

Reference data is written as the tiny CSV files of spec §2 and loaded with the
real loader; case batches are text frames (as `reading` produces them) run
through the real `decide_batch`, so every test exercises the public path.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from claimsflow.core.decide import BatchDecision
from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import (
    Reference,
    load_reference,
    typed_fee_schedule,
    typed_members,
    typed_providers,
)
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.ingest.reading import with_row_identity
from claimsflow.pipeline.batch import decide_batch
from claimsflow.settings import RULES_DIR
from schemas.case_batch import CASE_COLUMNS

V1_FILE = RULES_DIR / "claims-standard-v1.yaml"
V2_FILE = RULES_DIR / "claims-standard-v2.yaml"

AMOUNT_COLUMNS = ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents")

Verdict = tuple[str, list[str]]
Amounts = tuple[int, int, int, int]


@functools.cache
def ruleset_v1() -> RuleSet:
    return load_ruleset(V1_FILE)


@functools.cache
def ruleset_v2() -> RuleSet:
    return load_ruleset(V2_FILE)


@dataclass(frozen=True)
class Span:
    """One row of members.csv (amounts as the file writes them)."""

    member_id: str
    start: str
    end: str = ""
    deductible: str = "0.00"
    coinsurance: int = 0
    oop_max: str = ""  # "" = no out-of-pocket maximum


@dataclass(frozen=True)
class Provider:
    """One row of providers.csv."""

    provider_id: str
    status: str = "ACTIVE"
    in_network: bool = True


@dataclass(frozen=True)
class Fee:
    """One row of fee_schedule.csv (max_units "" = no limit)."""

    procedure_code: str
    allowed: str = "100.00"
    prior_auth: bool = False
    max_units: str = ""


MEMBERS_HEADER = (
    "member_id",
    "coverage_start",
    "coverage_end",
    "annual_deductible",
    "coinsurance_percent",
    "oop_max",
)
PROVIDERS_HEADER = ("provider_id", "status", "in_network")
FEES_HEADER = ("procedure_code", "allowed_amount", "prior_auth_required", "max_units")


def _member_cells(m: Span) -> tuple[str, ...]:
    return (m.member_id, m.start, m.end, m.deductible, str(m.coinsurance), m.oop_max)


def _provider_cells(p: Provider) -> tuple[str, ...]:
    return (p.provider_id, p.status, "true" if p.in_network else "false")


def _fee_cells(f: Fee) -> tuple[str, ...]:
    return (f.procedure_code, f.allowed, "true" if f.prior_auth else "false", f.max_units)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    lines = [",".join(header)]
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_reference(
    directory: Path,
    members: Sequence[Span],
    providers: Sequence[Provider],
    fees: Sequence[Fee],
) -> Reference:
    """Write members.csv, providers.csv and fee_schedule.csv and load them."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_csv(directory / "members.csv", MEMBERS_HEADER, [_member_cells(m) for m in members])
    _write_csv(
        directory / "providers.csv", PROVIDERS_HEADER, [_provider_cells(p) for p in providers]
    )
    _write_csv(directory / "fee_schedule.csv", FEES_HEADER, [_fee_cells(f) for f in fees])
    return load_reference(directory)


def _text_frame(header: Sequence[str], rows: Sequence[Sequence[str]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [list(r) for r in rows], schema={c: pl.String for c in header}, orient="row"
    )
    return frame.with_row_index("row_number", offset=1).with_columns(
        pl.col("row_number").cast(pl.Int64)
    )


def build_reference(
    members: Sequence[Span], providers: Sequence[Provider], fees: Sequence[Fee]
) -> Reference:
    """The same typed Reference without files or the loader's checks (fast; the
    caller guarantees valid data, e.g. non-overlapping spans)."""
    return Reference(
        members=typed_members(_text_frame(MEMBERS_HEADER, [_member_cells(m) for m in members])),
        providers=typed_providers(
            _text_frame(PROVIDERS_HEADER, [_provider_cells(p) for p in providers])
        ),
        fee_schedule=typed_fee_schedule(_text_frame(FEES_HEADER, [_fee_cells(f) for f in fees])),
    )


def case(
    case_id: str,
    *,
    member: str = "M1",
    provider: str = "P1",
    service: str = "2024-03-01",
    received: str | None = None,
    procedure: str = "99213",
    diagnosis: str = "J45.909",
    units: int = 1,
    billed: str = "100.00",
    auth: str = "",
) -> dict[str, str]:
    """One case row as a text batch carries it (received defaults to service)."""
    return {
        "case_id": case_id,
        "member_id": member,
        "provider_id": provider,
        "service_date": service,
        "received_date": received if received is not None else service,
        "procedure_code": procedure,
        "diagnosis_code": diagnosis,
        "units": str(units),
        "billed_amount": billed,
        "prior_auth_id": auth,
    }


def text_batch(rows: Sequence[Mapping[str, str]]) -> pl.DataFrame:
    """Rows as the text frame `reading` hands over (plus row_number and raw)."""
    frame = pl.DataFrame(
        [{c: row.get(c, "") for c in CASE_COLUMNS} for row in rows],
        schema={c: pl.String for c in CASE_COLUMNS},
        orient="row",
    )
    return with_row_identity(frame)


def decide(
    rows: Sequence[Mapping[str, str]],
    reference: Reference,
    ruleset: RuleSet | None = None,
    history: MemoryHistory | None = None,
) -> BatchDecision:
    """Decide one batch; every row must be valid (a typo in a test fails loudly)."""
    decision = decide_batch(
        text_batch(rows),
        reference,
        ruleset if ruleset is not None else ruleset_v1(),
        history if history is not None else MemoryHistory(),
    )
    assert decision.rejections.height == 0, decision.rejections.to_dicts()
    assert decision.cases.height == len(rows)
    return decision


def advance(history: MemoryHistory, decision: BatchDecision) -> MemoryHistory:
    """The history after `decision`: later batches see its decisions."""
    return history.advanced_by(decision.cases, decision.decisions)


def decide_batches(
    batches: Sequence[Sequence[Mapping[str, str]]],
    reference: Reference,
    ruleset: RuleSet | None = None,
) -> list[BatchDecision]:
    """Decide several batches in order, each seeing every decision before it."""
    history = MemoryHistory()
    decisions: list[BatchDecision] = []
    for rows in batches:
        decision = decide(rows, reference, ruleset, history)
        decisions.append(decision)
        history = advance(history, decision)
    return decisions


def verdicts(decision: BatchDecision) -> dict[str, Verdict]:
    """case_id -> (status, reason codes)."""
    return {
        row["case_id"]: (row["status"], list(row["reason_codes"]))
        for row in decision.decisions.iter_rows(named=True)
    }


def amounts(decision: BatchDecision) -> dict[str, Amounts]:
    """case_id -> (allowed, deductible, coinsurance, paid) in cents."""
    return {
        row["case_id"]: (
            row["allowed_cents"],
            row["deductible_cents"],
            row["coinsurance_cents"],
            row["paid_cents"],
        )
        for row in decision.decisions.iter_rows(named=True)
    }
