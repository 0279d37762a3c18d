"""Shared fixtures: a hand-written reference folder, an inbox, a lake, a run context,
and one Prefect server for the tests that run flows against an API."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import tests.hypothesis_support  # noqa: F401  (loads the Hypothesis profile: ci, dev, deep)
from adjudicate.serving import Stack
from claimsflow.core.reference import Reference, load_reference
from claimsflow.core.rules.ruleset import RuleSet, load_ruleset
from claimsflow.lake import eventlog
from claimsflow.pipeline.batch import BatchOutcome, RunContext
from claimsflow.settings import RULES_DIR
from tests.batch_helpers import (
    CsvWriter,
    InboxRunner,
    RunFactory,
    run_inbox,
    write_csv,
    write_reference,
)
from tests.prefect_support import running_server

RULESET_V1 = RULES_DIR / "claims-standard-v1.yaml"
#: The modules that take longest, longest first (measured with `--durations=0`; see
#: docs/architecture.md, "The test suite"). `make unit` runs two xdist workers
#: (`-n 2 --dist loadfile`), a module at a time; handing out the longest modules first
#: keeps one worker from starting a long one when the other is nearly done.
LONGEST_FIRST = (
    "tests/test_prefect_serve.py",
    "tests/test_dask.py",
    "tests/test_crash_safety.py",
    "tests/test_hostile_inputs.py",
    "tests/test_object_store.py",
    "tests/test_cli.py",
    "tests/test_artifacts_served.py",
    "tests/test_engine_property.py",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first. Under `pytest -n 2 --dist loadfile` (make unit) each
    module runs whole in one worker, so that its fixtures (a generated world, a run of
    the real command) are built once, and xdist hands the modules out in this order.

    Not `--dist loadgroup` with a group per module: with pytest 9.2, xdist 3.8's
    groups silently do nothing (it renames the tests' node ids, which pytest no
    longer reads back: pytest-dev/pytest-xdist#1386), and a module's tests were
    spread over both workers, each building the module's fixtures (test_cli's ~40 s
    run of commands, twice). The order is the same in every worker, as xdist
    requires: it is sorted here, where collection happens."""
    rank = {module: n for n, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_module(item), len(rank)))


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


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
def make_run(lake: Path, reference: Reference, ruleset_v1: RuleSet) -> RunFactory:
    """make_run(run_id) -> a run on the fixture lake; its clock ticks one second per call.

    Every run id must be new, as the nightly flow's are (one per Prefect flow run).
    """
    runs = itertools.count()

    def make(run_id: str) -> RunContext:
        ticks = itertools.count()
        start = dt.datetime(2025, 1, 15, 2, 0, tzinfo=dt.UTC) + dt.timedelta(days=next(runs))

        def clock() -> dt.datetime:
            return start + dt.timedelta(seconds=next(ticks))

        eventlog.ensure_lake(lake)  # as the nightly flow does before any batch
        return RunContext(lake, reference, ruleset_v1, run_id, clock)

    return make


@pytest.fixture
def run_context(make_run: RunFactory) -> RunContext:
    return make_run("test-run-1")


@pytest.fixture
def run_fixture_inbox(inbox: Path, make_run: RunFactory) -> InboxRunner:
    """Process the fixture inbox as one new run per call (history rebuilt from the lake)."""
    runs = itertools.count(1)

    def run() -> list[BatchOutcome]:
        return run_inbox(inbox, make_run(f"inbox-run-{next(runs)}"))

    return run


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prefect server (SQLite in a temporary home) for the whole session.

    A command-line run without PREFECT_API_URL starts a temporary server of its own,
    which costs tens of seconds each time; the tests that run the real command point
    it at this one instead (PREFECT_API_URL), and the served-deployment tests add
    their work pool, deployments and worker to it. Tests that share it tell their
    runs apart by parameters (each has its own lake), never by counting all runs.
    """
    with running_server(tmp_path_factory.mktemp("prefect-server")) as stack:
        yield stack
