"""The reader benchmark runs end to end at a small size (figures in docs/x12.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claimsflow.x12 import CASE_COLUMNS, read_837
from claimsflow.x12.bench import bench_cases, main
from claimsflow.x12.write837 import write_837


def test_bench_sample_is_multi_line_claims_that_read_back() -> None:
    cases = bench_cases(500)
    assert cases.columns == list(CASE_COLUMNS)
    lines = cases.get_column("case_id").str.extract(r"-(\d+)$", 1).cast(int)
    assert 2 <= 500 / int((lines == 1).sum()) <= 3  # about 2.5 lines per claim
    assert read_837(write_837(cases).encode()).select(CASE_COLUMNS).equals(cases)


def test_bench_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lines", "300", "--repeat", "1", "--dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| pl.read_csv |" in table and "| read_837 |" in table
    assert table.count("| 300 |") == 2
    assert (tmp_path / "bench.837").exists() and (tmp_path / "bench.csv").exists()
