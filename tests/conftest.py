"""Shared fixtures: a hand-written reference folder, an inbox, a lake, a run context."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from tests.batch_helpers import run_inbox, write_csv, write_reference

from claimsflow.pipeline import BatchOutcome, RunContext
from claimsflow.reference import Reference, load_reference
from claimsflow.rules.ruleset import RuleSet, load_ruleset
from claimsflow.settings import RULES_DIR

RULESET_V1 = RULES_DIR / "claims-standard-v1.yaml"

CsvWriter = Callable[..., Path]
InboxRunner = Callable[[], list[BatchOutcome]]


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    """members.csv, providers.csv and fee_schedule.csv as in batch_helpers."""
    return write_reference(tmp_path / "reference")


@pytest.fixture
def reference(reference_dir: Path) -> Reference:
    return load_reference(reference_dir)


@pytest.fixture(scope="session")
def ruleset_v1() -> RuleSet:
    return load_ruleset(RULESET_V1)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def write_batch(inbox: Path) -> CsvWriter:
    """write_batch(name, rows, header=None) -> path of a CSV batch in the inbox."""

    def write(
        name: str, rows: Sequence[Mapping[str, str]], header: Sequence[str] | None = None
    ) -> Path:
        return write_csv(inbox / name, rows, header)

    return write


@pytest.fixture
def run_context(lake: Path, reference: Reference, ruleset_v1: RuleSet) -> RunContext:
    """A run on the fixture lake with a clock that ticks one second per call."""
    ticks = itertools.count()
    start = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC)

    def clock() -> dt.datetime:
        return start + dt.timedelta(seconds=next(ticks))

    return RunContext(lake, reference, ruleset_v1, "test-run-1", clock)


@pytest.fixture
def run_fixture_inbox(inbox: Path, run_context: RunContext) -> InboxRunner:
    """Process the fixture inbox once per call (history rebuilt from the lake each time)."""

    def run() -> list[BatchOutcome]:
        return run_inbox(inbox, run_context)

    return run
