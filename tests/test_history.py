"""The history a batch sees, read from the event log for that batch only (claimsflow/history.py).

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

from claimsflow import eventlog
from claimsflow.generate import write_sample
from claimsflow.history import BatchHistory, History
from claimsflow.pipeline import RunContext, discover_inbox, process_batch_file
from claimsflow.reading import read_batch_bytes
from claimsflow.reference import Reference, load_reference
from claimsflow.rules.ruleset import RuleSet, load_ruleset
from claimsflow.storage import STATE_DIR_ENV, RemoteLocation, parse_location
from claimsflow.validation import validate_batch
from tests.batch_helpers import (
    MEMBERS_CSV,
    CsvWriter,
    InboxRunner,
    RunFactory,
    case_row,
    csv_bytes,
    write_csv,
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
    """The same case ids, prior claims and deductible rows (in any order)."""
    return (
        sorted(one.decided_case_ids.to_list()) == sorted(other.decided_case_ids.to_list())
        and claims(one) == claims(other)
        and used(one) == used(other)
    )


def claims(seen: BatchHistory) -> list[tuple[object, ...]]:
    return sorted(seen.prior_claims.rows(), key=str)


def used(seen: BatchHistory) -> list[tuple[object, ...]]:
    return sorted(seen.deductible_used.rows())


def test_a_batch_sees_only_the_history_of_its_own_cases_and_members(
    recorded: Path, ruleset_v1: RuleSet
) -> None:
    seen = History.from_lake(recorded).for_batch(typed(NEW_BATCH), ruleset_v1)

    assert sorted(seen.decided_case_ids.to_list()) == ["A4", "B2"]
    # A1 (approved) and B6 (pended) share a key with C1 and C2; B4 and B5 were denied;
    # A2 has C1's provider, date and procedure, but it is M003's.
    assert claims(seen) == sorted([A1_CLAIM, B6_CLAIM], key=str)
    assert seen.prior_claims.columns == [
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
    # M001 2024: A1 200.00 + B2 25.00; M001 2025: B1; M002 2024: A3. Nothing of M003.
    assert used(seen) == [("M001", 2024, 22_500), ("M001", 2025, 10_000), ("M002", 2024, 10_000)]
    assert seen.deductible_used.schema == pl.Schema(
        {"member_id": pl.String, "service_year": pl.Int32, "used_cents": pl.Int64}
    )


def test_the_batch_history_is_the_whole_history_restricted_to_the_batch(
    recorded: Path, ruleset_v1: RuleSet
) -> None:
    """The whole-log history (what every run used to load) gives the same answers."""
    history = History.from_lake(recorded)
    assert sorted(history.decided_case_ids.to_list()) == [
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
    assert sorted(history.deductible_used.rows()) == [
        ("M001", 2024, 22_500),
        ("M001", 2025, 10_000),
        ("M002", 2024, 10_000),
        ("M003", 2024, 10_000),
    ]
    assert history.prior_claims.height == 7  # A1-A3, B1-B3 approved, B6 pended
    assert history.decision_count() == 10
    # The same decided cases held in memory: the same batch history.
    whole = History.from_decided_cases(
        eventlog.scan_table(recorded, "cases")
        .join(eventlog.scan_table(recorded, "decisions"), on=["batch_id", "case_id"])
        .sort("decided_at", "row_number")
        .collect()
    )
    batch = typed(NEW_BATCH)
    assert same(
        whole.for_batch(batch, ruleset_v1), History.from_lake(recorded).for_batch(batch, ruleset_v1)
    )


def test_a_case_decided_again_later_counts_with_its_latest_decision(
    recorded: Path, tmp_path: Path, make_run: RunFactory, ruleset_v1: RuleSet
) -> None:
    # Recorded with an empty history, so validation does not see A1 and A3 decided:
    # A1 again, now DENIED (P002 is suspended), A3 again, APPROVED for 60.00 only.
    redo = write_csv(
        tmp_path / "elsewhere" / "r.csv",
        [
            case_row(
                "A1",
                provider_id="P002",
                service_date="2024-02-01",
                received_date="2024-02-05",
                units="2",
                billed_amount="200.00",
            ),
            case_row(
                "A3",
                member_id="M002",
                service_date="2024-04-01",
                received_date="2024-04-05",
                billed_amount="60.00",
            ),
        ],
    )
    outcome, _ = process_batch_file(redo, make_run("redecide"), History.empty())
    assert outcome.by_status == {"APPROVED": 1, "DENIED": 1}

    history = History.from_lake(recorded)
    seen = history.for_batch(typed(NEW_BATCH), ruleset_v1)
    # A1's latest decision is a denial (under another key): no longer a prior claim.
    assert claims(seen) == [B6_CLAIM]
    # M001 2024: B2 25.00 only; M002 2024: A3's latest decision, 60.00.
    assert used(seen) == [("M001", 2024, 2_500), ("M001", 2025, 10_000), ("M002", 2024, 6_000)]
    assert history.decision_count() == 12
    assert sorted(history.deductible_used.rows()) == [
        ("M001", 2024, 2_500),
        ("M001", 2025, 10_000),
        ("M002", 2024, 6_000),
        ("M003", 2024, 10_000),
    ]


def test_decisions_recorded_earlier_in_the_same_run_are_seen(
    write_batch: CsvWriter, make_run: RunFactory, lake: Path
) -> None:
    run = make_run("one-run")
    history = History.from_lake(lake)
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
    outcome_a, after_a = process_batch_file(first, run, history)
    assert outcome_a.by_status == {"APPROVED": 1}
    # Nothing to carry: the next batch reads a.csv's decisions from the log.
    assert after_a is history
    assert after_a.decided_among(pl.Series(["E1", "E2"])).to_list() == ["E1"]
    outcome_b, _ = process_batch_file(second, run, after_a)
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
    seen = History.from_lake(recorded).for_batch(typed(NEW_BATCH[:1]), load_ruleset(across_members))
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
    decided = pl.DataFrame(
        {
            "case_id": ["K1", "K2"],
            "member_id": ["M001", "M001"],
            "provider_id": ["P001", "P001"],
            "service_date": [dt.date(2024, 2, 1), dt.date(2024, 3, 1)],
            "procedure_code": ["99213", "99213"],
            "status": ["APPROVED", "APPROVED"],
            "deductible_cents": [5_000, 7_000],
        }
    )
    history = History.empty().advanced_by(decided[:1]).advanced_by(decided[1:])
    batch = typed([case_row("K2"), case_row("N1", service_date="2024-02-01")])
    seen = history.for_batch(batch, ruleset_v1)
    assert seen.decided_case_ids.to_list() == ["K2"]
    assert [c[:3] for c in claims(seen)] == [("M001", "P001", dt.date(2024, 2, 1))]
    assert used(seen) == [("M001", 2024, 12_000)]
    assert history.decided_among(pl.Series(["K1", "X"])).to_list() == ["K1"]
    nothing = History.empty().for_batch(batch, ruleset_v1)
    assert (nothing.decided_case_ids.len(), nothing.prior_claims.height) == (0, 0)
    assert nothing.deductible_used.is_empty()


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
    history = History.from_lake(memory_lake)
    for path in discover_inbox(inbox)[0]:
        _outcome, history = process_batch_file(path, run, history)
    batch = typed(NEW_BATCH)
    assert same(
        history.for_batch(batch, ruleset_v1),
        History.from_lake(recorded).for_batch(batch, ruleset_v1),
    )


def test_generated_batches_see_the_whole_history_restricted_to_them(
    tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    """On generated data (resent claims, members with many cases, invalid rows): the
    batch history is the whole-log history restricted to the batch, for each batch."""
    write_sample(tmp_path, 3_000, 4, seed=11)
    lake = tmp_path / "lake"
    eventlog.ensure_lake(lake)
    run = RunContext(
        lake,
        load_reference(tmp_path / "reference"),
        ruleset_v1,
        "generated",
        lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    *earlier, last = discover_inbox(tmp_path / "inbox")[0]
    history = History.from_lake(lake)
    for path in earlier:
        _outcome, history = process_batch_file(path, run, history)
    raw = read_batch_bytes(last.read_bytes(), last.suffix.removeprefix("."))
    batch = validate_batch(raw).cases
    seen = history.for_batch(batch, ruleset_v1)

    key = ["member_id", "provider_id", "service_date", "procedure_code"]
    member_years = batch.select(
        "member_id", pl.col("service_date").dt.year().cast(pl.Int32).alias("service_year")
    ).unique()
    expected_claims = history.prior_claims.join(batch.select(key).unique(), on=key, how="semi")
    expected_used = history.deductible_used.join(
        member_years, on=["member_id", "service_year"], how="semi"
    ).filter(pl.col("used_cents") > 0)
    assert seen.prior_claims.height > 0 and seen.deductible_used.height > 0
    assert sorted(seen.prior_claims.rows(), key=str) == sorted(expected_claims.rows(), key=str)
    assert sorted(seen.deductible_used.rows()) == sorted(expected_used.rows())
    # The whole history is read again on each access: read it once.
    decided = history.decided_case_ids
    expected_ids = decided.filter(decided.is_in(batch["case_id"].implode()))
    assert sorted(seen.decided_case_ids.to_list()) == sorted(expected_ids.to_list())
    resubmitted = decided.filter(decided.is_in(raw["case_id"].implode()))
    assert sorted(history.decided_among(raw["case_id"]).to_list()) == sorted(resubmitted.to_list())
