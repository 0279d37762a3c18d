"""The `remit` flow and the nightly run's 835s, run in this process against the
session's Prefect server (`prefect_server`).

The lake holds tests/x12_files.py's FIRST_837 (decisions worked out there): two
APPROVED and three DENIED cases of P001 and P003, one PENDED, one rejected row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from adjudicate.serving import Stack
from claimsflow.analysis.remittance import RemitOutcome
from tests.batch_helpers import case_row, write_csv, write_reference
from tests.test_x12_helpers import validate_835
from tests.x12_files import FIRST_837, batch_id

pytestmark = [pytest.mark.prefect]

FIRST = batch_id(FIRST_837)


@pytest.fixture
def on_server(prefect_server: Stack) -> Iterator[None]:
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield


@pytest.fixture
def nightly_world(tmp_path: Path, on_server: None) -> tuple[Path, Path, Path]:
    """A nightly run (no GX gate) of an inbox with FIRST_837 and a CSV batch of one
    PENDED case; returns the lake, the reports folder and the CSV batch's path."""
    from flows.nightly import nightly_adjudication

    inbox, ref = tmp_path / "inbox", write_reference(tmp_path / "ref")
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    # Another day than CLM1-1 (the same key would make H1 its duplicate, DENIED).
    high = case_row("H1", service_date="2024-05-20", billed_amount="12000.00")
    pended = write_csv(inbox / "b.csv", [high])
    lake, reports = tmp_path / "lake", tmp_path / "reports"
    nightly_adjudication(
        inbox=str(inbox),
        reference=str(ref),
        lake=str(lake),
        reports=str(reports),
        quality_checks=False,
        quiet_seconds=0,
        ruleset="1",
    )
    return lake, reports, pended


def test_the_nightly_run_writes_the_835_of_each_batch_with_a_decision(
    nightly_world: tuple[Path, Path, Path],
) -> None:
    _lake, reports, _pended = nightly_world
    # b.csv's only case is PENDED: no 835 for it.
    assert sorted(p.name for p in (reports / "remits").iterdir()) == [f"{FIRST}.835"]
    text = (reports / "remits" / f"{FIRST}.835").read_text(encoding="ascii")
    assert validate_835(text) == []
    assert [s.split("*")[1] for s in text.split("~\n") if s.startswith("CLP*")] == [
        "CLM1-1",
        "CLM1-2",
        "CLM1-3",
        "CLM3-1",
        "CLM2-1",
    ]


def test_the_nightly_run_can_leave_the_835s_out(tmp_path: Path, on_server: None) -> None:
    from flows.nightly import nightly_adjudication

    inbox, ref = tmp_path / "inbox", write_reference(tmp_path / "ref")
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    nightly_adjudication(
        inbox=str(inbox),
        reference=str(ref),
        lake=str(tmp_path / "lake"),
        reports=str(tmp_path / "reports"),
        quality_checks=False,
        quiet_seconds=0,
        ruleset="1",
        remits=False,
    )
    assert not (tmp_path / "reports" / "remits").exists()


def test_the_remit_flow_writes_a_chosen_batch(
    nightly_world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from flows.remit import remit

    lake, _reports, pended = nightly_world
    out_dir = tmp_path / "by-flow"
    outcome = remit(batch_id=FIRST[:8], lake=str(lake), out_dir=str(out_dir))
    assert isinstance(outcome, RemitOutcome)
    assert (outcome.cases, outcome.providers, outcome.paid_cents) == (5, 2, 12000)
    assert outcome.path == out_dir / f"{FIRST}.835"
    assert validate_835(outcome.path.read_text(encoding="ascii")) == []

    nothing = remit(batch_id=batch_id(pended.read_text()), lake=str(lake), out_dir=str(out_dir))
    assert isinstance(nothing, RemitOutcome) and nothing.path is None
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{FIRST}.835"]
