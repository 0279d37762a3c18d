"""The benchmark's peers (bench/workloads.py) still run on the pipeline's outputs and
agree with it, case by case, on a small sample: `make bench` is not part of the suite,
and a change to what the core returns once broke the ZEN comparison unseen."""

from __future__ import annotations

import pytest

from bench import workloads


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    out = tmp_path_factory.mktemp("sample")
    workloads.generate(str(out), cases=400, batches=1, seed=7)
    return str(out / "inbox" / "batch-0001.csv"), str(out / "reference")


def test_zen_engine_agrees_with_the_pipeline_on_every_decided_case(
    sample: tuple[str, str],
) -> None:
    pytest.importorskip("zen")
    batch, reference = sample
    result = workloads.zen_engine(batch, reference)
    # 400 rows less the sample's invalid ones: every decided case, and all agree.
    assert 350 <= result["rows"] < 400
    assert result["agree"] == result["rows"]


def test_row_at_a_time_loop_agrees_with_the_pipeline(sample: tuple[str, str]) -> None:
    batch, reference = sample
    result = workloads.row_loop(batch, reference)
    assert result["rows"] == 400
    assert result["agree"] == result["decided"]
    assert 350 <= result["decided"] < 400
