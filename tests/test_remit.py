"""`adjudicate remit` (spec §11): the 835 of a batch from the lake, in process.

The lake holds tests/x12_files.py's FIRST_837, whose decisions are worked out by
hand there; the 835 values below follow from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.analysis.remittance import resolve_batch_id, write_atomically
from tests.batch_helpers import case_row, write_csv, write_reference
from tests.lake_runner import review_lake, run_lake
from tests.review_helpers import review_row, write_review
from tests.test_x12_helpers import validate_835
from tests.x12_files import FIRST_837, SECOND_837, batch_id

FIRST = batch_id(FIRST_837)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def segments(text: str) -> list[list[str]]:
    return [s.split("*") for s in text.split("~\n") if s]


def transactions(text: str) -> list[list[list[str]]]:
    """The segments of each ST..SE."""
    found: list[list[list[str]]] = []
    for seg in segments(text):
        if seg[0] == "ST":
            found.append([])
        if found and (seg[0] != "GE" and seg[0] != "IEA"):
            found[-1].append(seg)
    return found


def claims(text: str) -> dict[str, list[list[str]]]:
    """case_id -> its CLP and the segments after it, up to the next CLP or SE."""
    found: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for seg in segments(text):
        if seg[0] == "CLP":
            current = found.setdefault(seg[1], [])
        elif seg[0] in ("SE", "ST"):
            current = None
        if current is not None:
            current.append(seg)
    return found


def cents(amount: str) -> int:
    whole, _, frac = amount.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0"))


@pytest.fixture
def lake_of_first(tmp_path: Path) -> tuple[Path, Path]:
    """A lake with FIRST_837 recorded, and the reference folder."""
    inbox, ref, lake = tmp_path / "inbox", write_reference(tmp_path / "ref"), tmp_path / "lake"
    inbox.mkdir()
    (inbox / "a.837").write_text(FIRST_837, encoding="utf-8")
    [outcome] = run_lake(inbox, ref, lake)
    assert outcome.batch_id == FIRST
    return lake, ref


def test_remit_writes_the_835_of_a_batch(lake_of_first: tuple[Path, Path], tmp_path: Path) -> None:
    lake, _ = lake_of_first
    out = tmp_path / "out" / "first.835"
    code, stdout, stderr = invoke("remit", FIRST, "--lake", str(lake), "--out", str(out))
    assert (code, stderr) == (0, "")
    assert "5 case(s) (2 APPROVED, 3 DENIED), 2 provider(s), paid 120.00" in stdout
    text = out.read_text(encoding="ascii")
    assert validate_835(text) == []
    assert [p.name for p in out.parent.iterdir()] == ["first.835"]  # nothing left aside

    # One transaction per provider (P001, then P003), cases in case_id order; the
    # rejected CLM1-4 and the PENDED CLM4-1 are not remitted.
    st = transactions(text)
    assert [[s[4] for s in t if s[:2] == ["N1", "PE"]] for t in st] == [["P001"], ["P003"]]
    assert [[s[1] for s in t if s[0] == "CLP"] for t in st] == [
        ["CLM1-1", "CLM1-2", "CLM1-3", "CLM3-1"],
        ["CLM2-1"],
    ]
    # BPR02 = the transaction's paid: 0.00 + 120.00 + 0 + 0; P003 pays nothing.
    bpr = [next(s for s in t if s[0] == "BPR") for t in st]
    assert [(b[1], b[2]) for b in bpr] == [("I", "120.00"), ("H", "0.00")]

    by_case = claims(text)
    # CLM1-2, APPROVED: billed 300.00, allowed 250.00, deductible 100.00,
    # coinsurance 30.00, paid 120.00.
    assert by_case["CLM1-2"] == [
        ["CLP", "CLM1-2", "1", "300.00", "120.00", "130.00", "12", "CLM1-2"],
        ["NM1", "QC", "1", "", "", "", "", "", "MI", "M001"],
        ["SVC", "HC:J1100", "300.00", "120.00", "", "20"],
        ["DTM", "472", "20240501"],
        ["CAS", "CO", "45", "50.00"],
        ["CAS", "PR", "1", "100.00", "", "2", "30.00"],
    ]
    # CLM1-1, APPROVED, all deductible: CO-45 50.00 (450 - 400), PR-1 400.00.
    assert by_case["CLM1-1"][0] == [
        "CLP",
        "CLM1-1",
        "1",
        "450.00",
        "0.00",
        "400.00",
        "12",
        "CLM1-1",
    ]
    assert by_case["CLM1-1"][4:] == [["CAS", "CO", "45", "50.00"], ["CAS", "PR", "1", "400.00"]]
    # CLM3-1, DENIED CO-29: the whole billed amount.
    assert by_case["CLM3-1"][0] == ["CLP", "CLM3-1", "4", "80.00", "0.00", "0.00", "12", "CLM3-1"]
    assert by_case["CLM3-1"][2:] == [
        ["SVC", "HC:99213", "80.00", "0.00", "", "1"],
        ["DTM", "472", "20230102"],
        ["CAS", "CO", "29", "80.00"],
    ]
    assert by_case["CLM2-1"][-1] == ["CAS", "CO", "242", "80.00"]
    assert by_case["CLM1-3"][-1] == ["CAS", "CO", "197", "150.00"]
    # Balancing on every claim: billed - paid = the sum of its adjustments.
    for case_id, segs in by_case.items():
        clp = segs[0]
        adjusted = sum(
            cents(s[i]) for s in segs if s[0] == "CAS" for i in (3, 6) if len(s) > i and s[i]
        )
        assert cents(clp[3]) - cents(clp[4]) == adjusted, case_id


def test_the_latest_decision_wins(lake_of_first: tuple[Path, Path], tmp_path: Path) -> None:
    """A review approves the PENDED CLM4-1, and a later batch voids CLM2-1."""
    lake, ref = lake_of_first
    review = write_review(tmp_path / "review.csv", [review_row("CLM4-1")])
    assert review_lake(review, ref, lake).batch.status == "PROCESSED"
    inbox = tmp_path / "inbox2"
    inbox.mkdir()
    (inbox / "b.837").write_text(SECOND_837, encoding="utf-8")
    run_lake(inbox, ref, lake)
    out = tmp_path / "first.835"
    code, stdout, _ = invoke("remit", FIRST[:10], "--lake", str(lake), "--out", str(out))
    assert code == 0, stdout
    text = out.read_text(encoding="ascii")
    assert validate_835(text) == []
    by_case = claims(text)
    # CLM2-1 is VOIDED now (P003's only case: no transaction for it); CLM3-1 too
    # (replaced by CLM6-1 of the second batch, which is not this batch's).
    assert sorted(by_case) == ["CLM1-1", "CLM1-2", "CLM1-3", "CLM4-1"]
    # CLM4-1 approved at review: allowed 100.00 (1 x 100.00 of 10,500.00 billed),
    # M001's deductible used up (400 + 100), coinsurance 20 % = 20.00, paid 80.00.
    assert by_case["CLM4-1"] == [
        ["CLP", "CLM4-1", "1", "10500.00", "80.00", "20.00", "12", "CLM4-1"],
        ["NM1", "QC", "1", "", "", "", "", "", "MI", "M001"],
        ["SVC", "HC:99213", "10500.00", "80.00", "", "1"],
        ["DTM", "472", "20240503"],
        ["CAS", "CO", "45", "10400.00"],
        ["CAS", "PR", "2", "20.00"],
    ]
    [bpr] = [s for s in segments(text) if s[0] == "BPR"]
    assert bpr[2] == "200.00"  # 0 + 120.00 + 0 + 80.00


def test_a_batch_with_nothing_to_remit_writes_no_file(tmp_path: Path) -> None:
    inbox, ref, lake = tmp_path / "inbox", write_reference(tmp_path / "ref"), tmp_path / "lake"
    # One PENDED case and one rejected row: nothing APPROVED or DENIED.
    write_csv(
        inbox / "a.csv", [case_row("H1", billed_amount="12000.00"), case_row("R1", units="0")]
    )
    [outcome] = run_lake(inbox, ref, lake)
    out = tmp_path / "none.835"
    code, _, stderr = invoke("remit", outcome.batch_id, "--lake", str(lake), "--out", str(out))
    assert code == 1
    assert not out.exists()
    assert stderr.strip() == (
        f"adjudicate: batch {outcome.batch_id} has no APPROVED or DENIED case: no 835 written"
    )


@pytest.mark.parametrize(
    ("batch", "needle"),
    [("0123456789abcdef", "no batch '0123456789abcdef'"), ("cb", "no batch 'cb'"), ("", "empty")],
)
def test_an_unknown_batch_is_a_usage_error(
    lake_of_first: tuple[Path, Path], tmp_path: Path, batch: str, needle: str
) -> None:
    lake, _ = lake_of_first
    out = tmp_path / "x.835"
    code, _, stderr = invoke("remit", batch, "--lake", str(lake), "--out", str(out))
    assert code == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith("adjudicate: error:") and needle in line
    assert "Traceback" not in stderr and not out.exists()


def test_usage_errors_of_the_lake_and_out(lake_of_first: tuple[Path, Path], tmp_path: Path) -> None:
    lake, _ = lake_of_first
    code, _, stderr = invoke("remit", FIRST, "--lake", str(tmp_path / "nowhere"))
    assert (
        code == 2
        and stderr.strip() == f"adjudicate: error: {tmp_path / 'nowhere'}: no such lake folder"
    )
    code, _, stderr = invoke("remit", FIRST, "--lake", str(lake), "--out", str(tmp_path))
    assert code == 2 and "is a folder" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_prefix_names_one_batch(lake_of_first: tuple[Path, Path]) -> None:
    lake, _ = lake_of_first
    assert resolve_batch_id(lake, FIRST[:6].upper()) == FIRST


def test_an_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "r.835"
    write_atomically(target, b"old")
    write_atomically(target, b"new text")
    assert target.read_bytes() == b"new text"
    assert [p.name for p in target.parent.iterdir()] == ["r.835"]


def test_the_default_out_is_under_reports_remits(
    lake_of_first: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, _ = lake_of_first
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = invoke("remit", FIRST, "--lake", str(lake))
    assert code == 0, stdout
    written = tmp_path / "reports" / "remits" / f"{FIRST}.835"
    assert re.search(r"\bST\*835\*0001~", written.read_text(encoding="ascii"))
