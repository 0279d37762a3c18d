"""The history a batch sees, read from the event log for that batch only
(claimsflow/lake/history.py).

Values are worked out by hand from tests/batch_helpers.py's reference data, with one
member more (M003), so that a batch has other members' claims to leave out:

    M001  from 2024-01-01, deductible 500.00, coinsurance 20 %
    M002  2023 span (no deductible), then from 2024-03-01: deductible 250.00
    M003  from 2024-01-01, deductible 100.00, coinsurance 10 %
    99213 100.00 a unit; J1100 12.50 a unit; billed over 10,000.00 pends (P-HIGH-DOLLAR)

The lake the tests read holds two batches of one run:

    a.csv  A1  M001 P001 2024-02-01 99213 x2  APPROVED, deductible 200.00 (M001 2024)
           A2  M003 P001 2024-02-01 99213 x1  APPROVED, deductible 100.00 (M003 2024, met)
           A3  M002 P001 2024-04-01 99213 x1  APPROVED, deductible 100.00 (M002 2024)
           A4  M001 P001 2023-06-01 99213     DENIED CO-26 (before M001's coverage)
    b.csv  B1  M001 P001 2025-01-10 99213 x1  APPROVED, deductible 100.00 (M001 2025)
           B2  M001 P001 2024-03-01 J1100 x2  APPROVED, deductible 25.00 (M001 2024: 225.00)
           B3  M003 P001 2024-03-01 99213 x1  APPROVED, no deductible left
           B4  M001: A1's key again           DENIED CO-18
           B5  M003: A2's key again           DENIED CO-18
           B6  M002 P001 2024-05-01 J1100     PENDED (billed 12,000.00)

The new batch (NEW_BATCH) shares A1's and B6's keys, reuses the case ids A4 and B2,
and has no M003 case: A2 has C1's provider, date and procedure but another member.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.history import BatchHistory, MemoryHistory
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.core.validation import validate_batch
from claimsflow.ingest.inbox import discover_inbox
from claimsflow.ingest.reading import read_batch_bytes
from claimsflow.lake import eventlog
from claimsflow.lake.history import LakeHistory
from claimsflow.lake.storage import STATE_DIR_ENV, RemoteLocation, parse_location
from claimsflow.pipeline.batch import RunContext, process_batch
from claimsflow.tools.generate import write_sample
from tests.batch_helpers import (
    MEMBERS_CSV,
    CsvWriter,
    InboxRunner,
    RunFactory,
    case_row,
    csv_bytes,
    write_reference,
)

M003 = "M003,2024-01-01,,100.00,10\n"

BATCH_A = [
    case_row(
        "A1",
        service_date="2024-02-01",
        received_date="2024-02-05",
        units="2",
        billed_amount="200.00",
    ),
    case_row(
        "A2",
        member_id="M003",
        service_date="2024-02-01",
        received_date="2024-02-05",
        billed_amount="100.00",
    ),
    case_row(
        "A3",
        member_id="M002",
        service_date="2024-04-01",
        received_date="2024-04-05",
        billed_amount="100.00",
    ),
    case_row("A4", service_date="2023-06-01", received_date="2023-06-05", billed_amount="100.00"),
]
BATCH_B = [
    case_row("B1", service_date="2025-01-10", received_date="2025-01-12", billed_amount="100.00"),
    case_row(
        "B2",
        service_date="2024-03-01",
        received_date="2024-03-05",
        procedure_code="J1100",
        units="2",
        billed_amount="25.00",
    ),
    case_row(
        "B3",
        member_id="M003",
        service_date="2024-03-01",
        received_date="2024-03-05",
        billed_amount="100.00",
    ),
    case_row(
        "B4",
        service_date="2024-02-01",
        received_date="2024-02-20",
        units="2",
        billed_amount="200.00",
    ),
    case_row(
        "B5",
        member_id="M003",
        service_date="2024-02-01",
        received_date="2024-02-20",
        billed_amount="100.00",
    ),
    case_row(
        "B6",
        member_id="M002",
        service_date="2024-05-01",
        received_date="2024-05-03",
        procedure_code="J1100",
        billed_amount="12000.00",
    ),
]
NEW_BATCH = [
    # A1's key (and B4's, which was denied): A1 is a prior claim.
    case_row("C1", service_date="2024-02-01", received_date="2024-06-01"),
    # B6's key (pended): B6 is a prior claim.
    case_row(
        "C2",
        member_id="M002",
        service_date="2024-05-01",
        received_date="2024-06-01",
        procedure_code="J1100",
        billed_amount="12.50",
    ),
    # Case ids decided before (A4 denied, B2 approved), in M001 2025 and M002 2024.
    case_row("A4", service_date="2025-02-01", received_date="2025-02-03"),
    case_row("B2", member_id="M002", service_date="2024-06-01", received_date="2024-06-03"),
    case_row("C5", service_date="2024-07-01", received_date="2024-07-03"),
]

#: The received columns of A1 and B6, as prior claims (all but case_id).
A1_CLAIM = (
    "M001",
    "P001",
    dt.date(2024, 2, 1),
    dt.date(2024, 2, 5),
    "99213",
    "J45.909",
    2,
    20_000,
    None,
)
B6_CLAIM = (
    "M002",
    "P001",
    dt.date(2024, 5, 1),
    dt.date(2024, 5, 3),
    "J1100",
    "J45.909",
    1,
    1_200_000,
    None,
)


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    """The shared reference files, with M003 added."""
    return write_reference(tmp_path / "reference", members=MEMBERS_CSV + M003)


@pytest.fixture
def recorded(write_batch: CsvWriter, run_fixture_inbox: InboxRunner, lake: Path) -> Path:
    """The lake after one run of a.csv and b.csv (the table in the module docstring)."""
    write_batch("a.csv", BATCH_A)
    write_batch("b.csv", BATCH_B)
    outcomes = run_fixture_inbox()
    assert [(o.rows_decided, o.by_status) for o in outcomes] == [
        (4, {"APPROVED": 3, "DENIED": 1}),
        (6, {"APPROVED": 3, "DENIED": 2, "PENDED": 1}),
    ]
    return lake


def typed(rows: Sequence[Mapping[str, str]]) -> pl.DataFrame:
    """The rows as the valid typed cases a batch is decided on (no history: all valid)."""
    validated = validate_batch(read_batch_bytes(csv_bytes(rows), "csv"))
    assert validated.rejections.is_empty(), validated.rejections.to_dicts()
    return validated.cases


def same(one: BatchHistory, other: BatchHistory) -> bool:
    """The same prior claims, accumulators and originals (in any order)."""
    return (
        claims(one) == claims(other)
        and used(one) == used(other)
        and sorted(one.originals.rows(), key=str) == sorted(other.originals.rows(), key=str)
    )


#: A prior claim's received columns but case_id, as the tests write them.
CLAIM_COLUMNS = [
    "member_id",
    "provider_id",
    "service_date",
    "received_date",
    "procedure_code",
    "diagnosis_code",
    "units",
    "billed_cents",
    "prior_auth_id",
]


def claims(seen: BatchHistory) -> list[tuple[object, ...]]:
    return sorted(seen.prior_claims.select(CLAIM_COLUMNS).rows(), key=str)


def used(seen: BatchHistory) -> list[tuple[object, ...]]:
    """(member, year, deductible used, out-of-pocket spent) per member-year."""
    return sorted(seen.accumulated.rows())


def ids(found: pl.DataFrame) -> list[str]:
    return sorted(found["case_id"].to_list())


def whole_log(lake: Path) -> MemoryHistory:
    """Every decided case of the log in memory, in the order decided: the whole-log
    history every run used to load, to compare the per-batch reads with."""
    return MemoryHistory.of(
        eventlog.scan_table(lake, "decisions")
        .join(eventlog.scan_table(lake, "cases").drop("batch_id"), on="case_id", how="left")
        .sort("decided_at", "row_number")
        .collect()
    )


def test_a_batch_sees_only_the_history_of_its_own_cases_and_members(
    recorded: Path, ruleset_v1: RuleSet
) -> None:
    history = LakeHistory(recorded)
    batch = typed(NEW_BATCH)
    seen = history.for_batch(batch, ruleset_v1)

    assert ids(history.decided_among(batch["case_id"])) == ["A4", "B2"]
    assert history.decided_among(batch["case_id"]).sort("case_id").rows() == [
        ("A4", "DENIED"),
        ("B2", "APPROVED"),
    ]
    # A1 (approved) and B6 (pended) share a key with C1 and C2; B4 and B5 were denied;
    # A2 has C1's provider, date and procedure, but it is M003's.
    assert claims(seen) == sorted([A1_CLAIM, B6_CLAIM], key=str)
    assert sorted(seen.prior_claims["case_id"].to_list()) == ["A1", "B6"]
    # M001 2024: A1 200.00 + B2 25.00, all deductible (no coinsurance: 500.00 not met);
    # M001 2025: B1; M002 2024: A3 (250.00 deductible not met). Nothing of M003.
    assert used(seen) == [
        ("M001", 2024, 22_500, 22_500),
        ("M001", 2025, 10_000, 10_000),
        ("M002", 2024, 10_000, 10_000),
    ]
    assert seen.accumulated.schema == pl.Schema(
        {
            "member_id": pl.String,
            "service_year": pl.Int32,
            "used_cents": pl.Int64,
            "spent_cents": pl.Int64,
        }
    )
    assert seen.originals.is_empty()


def test_the_batch_history_is_the_whole_history_restricted_to_the_batch(
    recorded: Path, ruleset_v1: RuleSet
) -> None:
    """The whole log held in memory gives the same answers as the per-batch reads."""
    whole = whole_log(recorded)
    latest = whole.latest()
    assert sorted(latest["case_id"].to_list()) == [
        "A1",
        "A2",
        "A3",
        "A4",
        "B1",
        "B2",
        "B3",
        "B4",
        "B5",
        "B6",
    ]
    # M003 2024: A2 met its 100.00 deductible; B3 paid 10 % of 100.00 out of pocket.
    assert whole.for_batch(
        typed([case_row("X1", member_id="M003")]), ruleset_v1
    ).accumulated.rows() == [("M003", 2024, 10_000, 11_000)]
    assert LakeHistory(recorded).decision_count() == 10
    batch = typed(NEW_BATCH)
    assert same(
        whole.for_batch(batch, ruleset_v1), LakeHistory(recorded).for_batch(batch, ruleset_v1)
    )


def test_a_case_decided_again_later_counts_with_its_latest_decision(
    recorded: Path, ruleset_v1: RuleSet
) -> None:
    """Later decisions (reviews, corrections: spec §8, §9) replace a case's earlier one:
    here a later batch denies A1 and voids A3, and approves B6 (pended) for 12.50."""
    later = pl.DataFrame(
        {
            "case_id": ["A1", "A3", "B6"],
            "status": ["DENIED", "VOIDED", "APPROVED"],
            "reason_codes": [["CO-50"], [], []],
            "deductible_cents": [0, 0, 1_250],
            "coinsurance_cents": [0, 0, 0],
            "decision_source": ["REVIEW", "CORRECTION", "REVIEW"],
            "decided_at": [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)] * 3,
        }
    )
    eventlog.record_batch(recorded, "later", {"decisions": later})

    history = LakeHistory(recorded)
    seen = history.for_batch(typed(NEW_BATCH), ruleset_v1)
    # A1 is DENIED now: no longer a prior claim; B6 is APPROVED: still one.
    assert claims(seen) == [B6_CLAIM]
    # M001 2024: B2 25.00 only; M002 2024: A3 gave its 100.00 back, B6 took 12.50.
    assert used(seen) == [
        ("M001", 2024, 2_500, 2_500),
        ("M001", 2025, 10_000, 10_000),
        ("M002", 2024, 1_250, 1_250),
    ]
    assert history.decided_among(pl.Series(["A1", "A3", "B6", "Z9"])).sort("case_id").rows() == [
        ("A1", "DENIED"),
        ("A3", "VOIDED"),
        ("B6", "APPROVED"),
    ]
    assert history.decision_count() == 13
    assert same(whole_log(recorded).for_batch(typed(NEW_BATCH), ruleset_v1), seen)


def test_decisions_recorded_earlier_in_the_same_run_are_seen(
    write_batch: CsvWriter, make_run: RunFactory, lake: Path
) -> None:
    run = make_run("one-run")
    first = write_batch(
        "a.csv",
        [
            case_row(
                "E1",
                service_date="2024-06-01",
                received_date="2024-06-05",
                units="4",
                billed_amount="400.00",
            )
        ],
    )
    second = write_batch(
        "b.csv",
        [
            # 100.00 of M001's deductible is left after E1; 20 % of the other 100.00.
            case_row(
                "E2",
                service_date="2024-06-02",
                received_date="2024-06-05",
                units="2",
                billed_amount="200.00",
            ),
            # E1's key, received later: a duplicate of E1.
            case_row("E3", service_date="2024-06-01", received_date="2024-06-20"),
            # Decided in a.csv: a resubmission.
            case_row("E1", service_date="2024-06-03", received_date="2024-06-05"),
        ],
    )
    outcome_a = process_batch(first, run)
    assert outcome_a.by_status == {"APPROVED": 1}
    # Nothing to carry: the next batch reads a.csv's decisions from the log.
    assert ids(LakeHistory(lake).decided_among(pl.Series(["E1", "E2"]))) == ["E1"]
    outcome_b = process_batch(second, run)
    assert (outcome_b.rows_decided, outcome_b.rows_rejected) == (2, 1)
    decisions = (
        eventlog.scan_table(lake, "decisions")
        .filter(pl.col("batch_id") == outcome_b.batch_id)
        .select(
            "case_id",
            "status",
            "reason_codes",
            "deductible_cents",
            "coinsurance_cents",
            "paid_cents",
        )
        .sort("case_id")
        .collect()
    )
    assert decisions.rows() == [
        ("E2", "APPROVED", [], 10_000, 2_000, 8_000),
        ("E3", "DENIED", ["CO-18"], 0, 0, 0),
    ]


def test_a_key_without_member_id_sees_other_members_claims(
    recorded: Path, tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    """The history follows the rule set's keys: a rule set whose duplicate key leaves
    member_id out sees M003's A2 as a prior claim of C1 (same provider, date, procedure),
    which a history restricted to the batch's members would have left out."""
    text = ruleset_v1.source.read_text(encoding="utf-8").replace(
        "key: [member_id, provider_id, service_date, procedure_code]",
        "key: [provider_id, service_date, procedure_code]",
    )
    across_members = tmp_path / "claims-standard-v9.yaml"
    across_members.write_text(text.replace("version: 1", "version: 9"), encoding="utf-8")
    seen = LakeHistory(recorded).for_batch(typed(NEW_BATCH[:1]), load_ruleset(across_members))
    a2 = (
        "M003",
        "P001",
        dt.date(2024, 2, 1),
        dt.date(2024, 2, 5),
        "99213",
        "J45.909",
        1,
        10_000,
        None,
    )
    assert claims(seen) == sorted([A1_CLAIM, a2], key=str)


def test_a_history_in_memory_advances_and_answers_the_same_questions(
    ruleset_v1: RuleSet,
) -> None:
    cases = pl.DataFrame(
        {
            "case_id": ["K1", "K2"],
            "member_id": ["M001", "M001"],
            "provider_id": ["P001", "P001"],
            "service_date": [dt.date(2024, 2, 1), dt.date(2024, 3, 1)],
            "procedure_code": ["99213", "99213"],
        }
    )
    decisions = pl.DataFrame(
        {
            "case_id": ["K1", "K2"],
            "status": ["APPROVED", "APPROVED"],
            "deductible_cents": [5_000, 7_000],
            "coinsurance_cents": [1_000, 0],
        }
    )
    history = MemoryHistory().advanced_by(cases[:1], decisions[:1])
    history = history.advanced_by(cases[1:], decisions[1:])
    batch = typed([case_row("K2"), case_row("N1", service_date="2024-02-01")])
    seen = history.for_batch(batch, ruleset_v1)
    assert ids(history.decided_among(batch["case_id"])) == ["K2"]
    assert [c[:3] for c in claims(seen)] == [("M001", "P001", dt.date(2024, 2, 1))]
    # 50.00 + 70.00 deductible; 50.00 + 10.00 + 70.00 out of pocket.
    assert used(seen) == [("M001", 2024, 12_000, 13_000)]
    assert ids(history.decided_among(pl.Series(["K1", "X"]))) == ["K1"]
    nothing = MemoryHistory().for_batch(batch, ruleset_v1)
    assert (nothing.prior_claims.height, nothing.accumulated.height) == (0, 0)


@pytest.fixture
def memory_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteLocation]:
    """A lake on fsspec's in-process memory filesystem (local state under tmp_path)."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "remote-state"))
    lake = parse_location(f"memory://history-{uuid.uuid4().hex[:12]}/lake")
    assert isinstance(lake, RemoteLocation)
    yield lake
    bucket = lake.root.rsplit("/", 1)[0]
    if lake.fs.exists(bucket):
        lake.fs.rm(bucket, recursive=True)  # the memory filesystem is process-wide


def test_a_lake_on_an_object_store_gives_the_same_batch_history(
    recorded: Path,
    inbox: Path,
    memory_lake: RemoteLocation,
    reference: Reference,
    ruleset_v1: RuleSet,
) -> None:
    run = RunContext(
        memory_lake,
        reference,
        ruleset_v1,
        "remote",
        lambda: dt.datetime(2025, 1, 15, tzinfo=dt.UTC),
    )
    eventlog.ensure_lake(memory_lake)
    for path in discover_inbox(inbox)[0]:
        process_batch(path, run)
    batch = typed(NEW_BATCH)
    assert same(
        LakeHistory(memory_lake).for_batch(batch, ruleset_v1),
        LakeHistory(recorded).for_batch(batch, ruleset_v1),
    )


def test_generated_batches_see_the_whole_history_restricted_to_them(
    tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    """On generated data (resent claims, members with many cases, invalid rows): the
    batch history is the whole-log history restricted to the batch, for each batch."""
    write_sample(tmp_path, 3_000, 4, seed=11)
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    # A clock that moves: the sample's corrections give cases a second decision, and
    # a case's latest is its last by decided_at.
    ticks = iter(range(1_000_000))
    run = RunContext(
        lake,
        load_reference(tmp_path / "reference"),
        ruleset_v1,
        "generated",
        lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=next(ticks)),
    )
    *earlier, last = discover_inbox(tmp_path / "inbox")[0]
    for path in earlier:
        process_batch(path, run)
    raw = read_batch_bytes(last.read_bytes(), last.suffix.removeprefix("."))
    batch = validate_batch(raw).cases
    seen = LakeHistory(lake).for_batch(batch, ruleset_v1)
    expected = whole_log(lake).for_batch(batch, ruleset_v1)
    assert seen.prior_claims.height > 0 and seen.accumulated.height > 0
    assert same(seen, expected)
    assert ids(LakeHistory(lake).decided_among(batch["case_id"])) == ids(
        whole_log(lake).decided_among(batch["case_id"])
    )
