"""The cases and batches the docs name exist in `make run`'s sample and show what the
docs say (issue 19 item 6): `adjudicate generate`'s defaults (2,000 cases, 3 batches,
seed 7), decided in memory in name order as `adjudicate run` decides them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from claimsflow.core.history import MemoryHistory
from claimsflow.core.reference import load_reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.ingest.reading import read_batch_bytes
from claimsflow.pipeline.batch import decide_batch
from claimsflow.tools.generate import write_sample

ROOT = Path(__file__).resolve().parents[1]
DENIED_EXAMPLE, HISTORY_EXAMPLE, REPLACEMENT = (
    "CLM007000000106",
    "CLM007000000141",
    "CLM007000000682",
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, ruleset_v1: RuleSet) -> pl.DataFrame:
    """Every decision of the sample's batches: batch file, case_id, status, codes,
    source and decided_by, in the order recorded."""
    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder, cases=2_000, batches=3, seed=7)
    reference = load_reference(folder / "reference")
    history, decided = MemoryHistory(), []
    for path in sorted((folder / "inbox").iterdir()):
        raw = read_batch_bytes(path.read_bytes(), path.suffix.removeprefix("."))
        decision = decide_batch(raw, reference, ruleset_v1, history)
        history = history.advanced_by(decision.cases, decision.decisions)
        decided.append(
            decision.decisions.select(
                pl.lit(path.name).alias("batch"),
                "case_id",
                "status",
                "reason_codes",
                "decision_source",
                "decided_by",
            )
        )
    return pl.concat(decided)


def test_the_why_denied_example_is_a_denied_case(sample: pl.DataFrame) -> None:
    assert DENIED_EXAMPLE in (ROOT / "docs" / "analyst-queries.md").read_text(encoding="utf-8")
    rows = sample.filter(pl.col("case_id") == DENIED_EXAMPLE).rows()
    assert rows == [
        (
            "batch-0001.csv",
            DENIED_EXAMPLE,
            "DENIED",
            ["CO-B7", "CO-29", "CO-197"],
            "ADJUDICATION",
            None,
        )
    ]


def test_the_history_example_is_a_replaced_case(sample: pl.DataFrame) -> None:
    assert HISTORY_EXAMPLE in (ROOT / "docs" / "analyst-queries.md").read_text(encoding="utf-8")
    rows = sample.filter(pl.col("case_id") == HISTORY_EXAMPLE).select(
        "batch", "status", "decision_source", "decided_by"
    )
    assert rows.rows() == [
        ("batch-0001.csv", rows["status"][0], "ADJUDICATION", None),
        ("batch-0002.jsonl", "VOIDED", "CORRECTION", REPLACEMENT),
    ]
    assert rows["status"][0] in ("APPROVED", "DENIED", "PENDED")


def test_the_ui_example_batch_is_new_to_the_sample(tmp_path: Path, sample: pl.DataFrame) -> None:
    """README's UI example: a batch `make run` has not processed, whose members and
    providers are in the sample's reference data."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "--out data/extra --cases 300 --batches 1\n   --seed 8" in readme
    sample_dir, extra = tmp_path / "data", tmp_path / "extra"
    write_sample(sample_dir, cases=2_000, batches=3, seed=7)
    (batch,) = (p for p in write_sample(extra, cases=300, batches=1, seed=8) if "inbox" in str(p))
    cases = pl.read_csv(batch, infer_schema=False)
    reference = load_reference(sample_dir / "reference")
    assert not cases["case_id"].is_in(sample["case_id"].implode()).any()
    known = cases.filter(
        pl.col("member_id").is_in(reference.members["member_id"].implode())
        & pl.col("provider_id").is_in(reference.providers["provider_id"].implode())
    )
    assert known.height > 0.9 * cases.height
