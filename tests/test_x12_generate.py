"""`adjudicate generate --format 837` and the 837 batch of the default sample."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from adjudicate.cli import app
from claimsflow.tools.generate import claims_of, write_837_batch
from claimsflow.x12.read837 import CASE_COLUMNS, read_837
from tests.test_x12_helpers import validate_837


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def test_the_default_sample_has_one_837_batch(tmp_path: Path) -> None:
    code, _ = invoke("generate", "--out", str(tmp_path), "--cases", "200", "--seed", "3")
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "inbox").iterdir())
    assert names == ["batch-0001.csv", "batch-0002.jsonl", "batch-0003.parquet", "batch-0004.837"]
    rows = read_837((tmp_path / "inbox" / "batch-0004.837").read_bytes())
    assert rows.height == 50  # 200 cases in 4 batches


def test_format_837_writes_every_batch_as_837(tmp_path: Path) -> None:
    code, _ = invoke(
        "generate", "--out", str(tmp_path), "--cases", "300", "--batches", "2", "--format", "837"
    )
    assert code == 0
    files = sorted((tmp_path / "inbox").iterdir())
    assert [p.name for p in files] == ["batch-0001.837", "batch-0002.837"]
    rows = pl.concat([read_837(p.read_bytes()) for p in files])
    assert rows.height == 300
    # Multi-line claims, ICD-10 diagnoses (dotted again by the reader).
    lines = rows["case_id"].str.extract(r"-(\d+)$").cast(pl.Int64)
    assert lines.max() is not None and int(lines.max()) >= 3  # type: ignore[arg-type]
    valid = rows["diagnosis_code"].str.contains(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
    assert valid.all()
    assert rows["diagnosis_code"].str.contains(".", literal=True).any()


def test_claims_share_member_provider_and_dates_and_read_back(tmp_path: Path) -> None:
    cases = pl.DataFrame(
        {
            "case_id": ["A1", "A2", "A3", "A4", "A5"],
            "member_id": ["M1", "M2", "M3", "M4", "M5"],
            "provider_id": ["P1", "P2", "P3", "P4", "P5"],
            "service_date": ["2024-01-0" + str(d) for d in range(1, 6)],
            "received_date": ["2024-02-0" + str(d) for d in range(1, 6)],
            "procedure_code": ["99213", "99214", "J1100", "99213", "99215"],
            "diagnosis_code": ["J45.909", "E11.9", "I10", "R51", "Z00.00"],
            "units": ["1", "2", "10", "1", "1"],
            "billed_amount": ["80.00", "150.00", "125.00", "80.00", "12.345"],
            "prior_auth_id": ["", "PA1", "", "", ""],
        }
    )
    claims = claims_of(cases, seed=1)
    # Every claim's lines carry its first row's member, provider and dates.
    ids = claims["case_id"].str.extract(r"^(.*)-\d+$")
    per_claim = claims.with_columns(ids.alias("claim")).group_by("claim")
    assert per_claim.agg(pl.col("member_id").n_unique())["member_id"].max() == 1
    path = write_837_batch(tmp_path / "x.837", cases, seed=1)
    text = path.read_text(encoding="ascii")
    assert validate_837(text) == []
    read = read_837(text.encode()).select(CASE_COLUMNS[:10])
    expected = claims.select(CASE_COLUMNS[:10]).with_columns(
        pl.col("prior_auth_id").replace("", None)
    )
    assert read.to_dicts() == expected.to_dicts()
