"""Partitioned adjudication (issue 9): a batch decided in parts by member gives
exactly the one-piece decisions, rule hits and amounts, whatever the split."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.ingest.inbox import discover_inbox
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import (
    BatchOutcome,
    Conclude,
    RunContext,
    process_batch,
)
from claimsflow.pipeline.partitioning import (
    PARTITION,
    PartitioningError,
    PartitionResult,
    check_partitionable,
    conclude_in_partitions,
    decide_parts_here,
    partition_of,
    split_cases,
)
from claimsflow.settings import RULES_DIR
from claimsflow.tools.generate import write_sample
from tests.batch_helpers import RunFactory, case_row, write_csv
from tests.hypothesis_support import whole_runs

EVENT_TABLES = ("batch", "cases", "decisions", "rule_hits", "rejections")


def in_parts(run: RunContext, partitions: int) -> Conclude:
    return conclude_in_partitions(run, partitions, decide_parts_here)


def test_each_member_lands_in_one_part_and_parts_keep_batch_order() -> None:
    cases = pl.DataFrame(
        {
            "case_id": [f"C{i}" for i in range(1, 13)],
            "member_id": ["M1", "M2", "M3", "M1", "M4", "M2", "M5", "M1", "M3", "M6", "M7", "M8"],
        }
    )

    parts = list(split_cases(cases, 3))

    assert sum(p.height for p in parts) == 12
    assert sorted(c for p in parts for c in p["case_id"]) == sorted(cases["case_id"])
    homes = {m: [i for i, p in enumerate(parts) if m in p["member_id"]] for m in cases["member_id"]}
    assert all(len(where) == 1 for where in homes.values())
    m1 = parts[homes["M1"][0]]
    assert [c for c, m in m1.select("case_id", "member_id").iter_rows() if m == "M1"] == [
        "C1",
        "C4",
        "C8",
    ]
    for part in parts:  # batch order inside every part
        positions = [int(c[1:]) for c in part["case_id"]]
        assert positions == sorted(positions)
    assert PARTITION not in parts[0].columns


def test_the_split_is_stable_and_in_range() -> None:
    members = pl.DataFrame({"member_id": [f"M{i:05d}" for i in range(2000)]})

    first = members.select(partition_of(8))[PARTITION]
    again = members.select(partition_of(8))[PARTITION]

    assert first.equals(again)
    assert first.min() == 0 and first.max() == 7
    # Every part gets a share: no part is empty or holds most members.
    shares = first.value_counts()["count"]
    assert shares.len() == 8 and shares.min() > 150 and shares.max() < 350  # type: ignore[operator]
    (whole,) = split_cases(members.with_columns(pl.lit("x").alias("case_id")), 1)
    assert whole.height == 2000
    with pytest.raises(ValueError, match="at least 1"):
        partition_of(0)


def test_a_duplicate_key_without_member_id_cannot_be_partitioned(
    tmp_path: Path, ruleset_v1: RuleSet
) -> None:
    text = ruleset_v1.source.read_text(encoding="utf-8").replace(
        "key: [member_id, provider_id, service_date, procedure_code]",
        "key: [provider_id, service_date, procedure_code]",
    )
    across_members = tmp_path / "claims-standard-v9.yaml"
    across_members.write_text(text.replace("version: 1", "version: 9"), encoding="utf-8")

    check_partitionable(ruleset_v1)  # the standard rule set: every key has member_id
    with pytest.raises(PartitioningError, match=r"duplicate-claim.*no member_id"):
        check_partitionable(load_ruleset(across_members))


@pytest.mark.parametrize("partitions", [1, 2, 3, 5])
def test_a_batch_in_parts_is_priced_by_hand_against_its_history(
    inbox: Path, make_run: RunFactory, partitions: int
) -> None:
    # Earlier batch: M001 used 400.00 of its 500.00 deductible on 2024-02-01.
    write_csv(
        inbox / "a.csv",
        [case_row("H1", service_date="2024-02-01", units="4", billed_amount="400.00")],
    )
    first = make_run("history")
    process_batch(inbox / "a.csv", first)
    run = make_run("parts")
    write_csv(
        inbox / "b.csv",
        [
            # M001: 300.00 allowed; 100.00 deductible left; 20 % of 200.00 = 40.00.
            case_row("C1", units="3", billed_amount="300.00"),
            # M002 (2024 span: deductible 250.00, coinsurance 0 %): 200.00 all deductible,
            case_row("C2", member_id="M002", units="2", billed_amount="200.00"),
            # then 50.00 deductible left of 100.00; paid 50.00.
            case_row("C3", member_id="M002", service_date="2024-05-02", billed_amount="100.00"),
            # The same service as H1 (approved in the earlier batch): CO-18.
            case_row("C4", service_date="2024-02-01", units="4", billed_amount="400.00"),
            # The same service as C1, received later in this batch: CO-18.
            case_row("C5", units="3", billed_amount="300.00", received_date="2024-05-11"),
        ],
    )

    outcome = process_batch(inbox / "b.csv", run, in_parts(run, partitions))

    assert outcome.rows_decided == 5
    decisions = eventlog.scan_table(run.lake, "decisions").filter(pl.col("case_id") != "H1")
    got = decisions.select(
        "case_id", "status", "reason_codes", "deductible_cents", "coinsurance_cents", "paid_cents"
    ).collect()
    # Part after part, each part in file order: M001's cases, and M002's, keep theirs.
    order = got["case_id"].to_list()
    assert [c for c in order if c in ("C1", "C4", "C5")] == ["C1", "C4", "C5"]
    assert [c for c in order if c in ("C2", "C3")] == ["C2", "C3"]
    assert got.sort("case_id").rows() == [
        ("C1", "APPROVED", [], 10000, 4000, 16000),
        ("C2", "APPROVED", [], 20000, 0, 0),
        ("C3", "APPROVED", [], 5000, 0, 5000),
        ("C4", "DENIED", ["CO-18"], 0, 0, 0),
        ("C5", "DENIED", ["CO-18"], 0, 0, 0),
    ]
    hits = eventlog.scan_table(run.lake, "rule_hits").select("case_id", "reason_code").collect()
    assert sorted(hits.rows()) == [("C4", "CO-18"), ("C5", "CO-18")]
    assert list(eventlog.staging_dir(run.lake).iterdir()) == []  # parts' folders removed


def test_a_batch_with_no_valid_case_is_recorded_without_parts(
    inbox: Path, make_run: RunFactory
) -> None:
    write_csv(inbox / "bad.csv", [case_row("C1", units="0"), case_row("C2", units="x")])
    run = make_run("empty")
    calls: list[list[Path]] = []

    def spy(folders: list[Path], ruleset: RuleSet) -> list[PartitionResult]:
        calls.append(folders)
        return decide_parts_here(folders, ruleset)

    outcome = process_batch(inbox / "bad.csv", run, conclude_in_partitions(run, 4, spy))

    assert (outcome.rows_in, outcome.rows_decided, outcome.rows_rejected) == (2, 0, 2)
    assert calls == []


def test_parts_that_decide_too_few_cases_fail_the_batch(inbox: Path, make_run: RunFactory) -> None:
    write_csv(inbox / "b.csv", [case_row("C1"), case_row("C2", member_id="M002")])
    run = make_run("lossy")

    def loses_a_part(folders: list[Path], ruleset: RuleSet) -> list[PartitionResult]:
        return decide_parts_here(folders, ruleset)[:-1]

    with pytest.raises(PartitioningError, match="decided 1 of 2"):
        process_batch(inbox / "b.csv", run, conclude_in_partitions(run, 8, loses_a_part))
    assert not eventlog.batch_recorded(run.lake, _only_batch_id(inbox / "b.csv"))
    assert list(eventlog.staging_dir(run.lake).iterdir()) == []


def _only_batch_id(path: Path) -> str:
    from claimsflow.pipeline.batch import batch_id_of_bytes

    return batch_id_of_bytes(path.read_bytes())


def _run_lake(
    inbox: Path,
    reference: Path,
    lake: Path,
    decide_for: Callable[[RunContext], Conclude | None],
) -> list[BatchOutcome]:
    ruleset = load_ruleset(RULES_DIR / "claims-standard-v1.yaml")
    run = RunContext(
        lake,
        load_reference(reference),
        ruleset,
        "run",
        lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    eventlog.ensure_lake(lake)
    outcomes = []
    for path in discover_inbox(inbox)[0]:
        outcome = process_batch(path, run, decide_for(run))
        outcomes.append(outcome)
    return outcomes


@whole_runs(6)
@given(
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    cases=st.integers(min_value=1, max_value=1000),
    batches=st.integers(min_value=1, max_value=4),
    partitions=st.integers(min_value=2, max_value=9),
)
def test_any_split_gives_the_one_piece_event_log(
    tmp_path_factory: pytest.TempPathFactory, seed: int, cases: int, batches: int, partitions: int
) -> None:
    root = tmp_path_factory.mktemp("split")
    write_sample(root, cases, batches, seed)
    # History from an earlier run: the first batch is decided before the rest.
    early = root / "early-inbox"
    early.mkdir()
    first = sorted((root / "inbox").iterdir())[0]
    shutil.move(first, early / first.name)
    lakes = {"whole": root / "whole", "parts": root / "parts"}

    def whole(run: RunContext) -> None:
        return None  # the one-piece run

    def parts(run: RunContext) -> Conclude:
        return in_parts(run, partitions)

    for lake in lakes.values():
        _run_lake(early, root / "reference", lake, whole)
    one_piece = _run_lake(root / "inbox", root / "reference", lakes["whole"], whole)
    in_pieces = _run_lake(root / "inbox", root / "reference", lakes["parts"], parts)

    assert [o.by_status for o in in_pieces] == [o.by_status for o in one_piece]
    for table in EVENT_TABLES:
        # The same rows; a partitioned batch records its parts' decisions and rule hits
        # part after part (claimsflow/pipeline/partitioning.py).
        expected = in_a_fixed_order(eventlog.scan_table(lakes["whole"], table).collect())
        got = in_a_fixed_order(eventlog.scan_table(lakes["parts"], table).collect())
        assert got.equals(expected), table


def in_a_fixed_order(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c, t in frame.schema.items() if not isinstance(t, pl.List)]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dask-address", "tcp://127.0.0.1:8786"], "--dask-address needs --executor dask"),
        (
            ["--executor", "dask", "--dask-address", "127.0.0.1"],
            "expected a scheduler address, tcp://host:port",
        ),
        (["--partitions", "0"], "Invalid value for '--partitions'"),
        (["--executor", "spark"], "Invalid value for '--executor'"),
    ],
)
def test_executor_options_are_checked_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["run", *options], env={"COLUMNS": "200"})

    assert result.exit_code == 2
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_a_rule_set_that_cannot_be_split_is_refused_with_partitions(
    tmp_path: Path, reference_dir: Path, ruleset_v1: RuleSet
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = ruleset_v1.source.read_text(encoding="utf-8").replace(
        "key: [member_id, provider_id, service_date, procedure_code]",
        "key: [provider_id, service_date, procedure_code]",
    )
    (rules / "claims-standard-v1.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    options = {
        "--rules-dir": rules,
        "--reference": reference_dir,
        "--inbox": tmp_path / "inbox",
        "--lake": tmp_path / "lake",
        "--partitions": 2,
    }

    result = CliRunner().invoke(
        app, ["run", *(str(x) for pair in options.items() for x in pair)], env={"COLUMNS": "200"}
    )

    assert result.exit_code == 2
    assert "rule duplicate-claim" in result.stderr and "no member_id" in result.stderr
    assert not (tmp_path / "lake").exists()
