"""The 835's order and the read behind it, on small inline frames (issue 15).

`remit_order` sorts by one integer key (provider rank, then case rank) instead of the
two string columns; `_with_adjudication` puts a batch's cases and its adjudications
side by side when they line up and joins them otherwise. Both must give what the
plain sort and the plain join give.
"""

from __future__ import annotations

import datetime as dt
from random import Random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claimsflow.analysis.remittance import (
    _later_decisions_win,
    _remitted_in_order,
    _with_adjudication,
)
from claimsflow.x12.write835 import dense_ranks, in_remit_order, remit_order
from tests.hypothesis_support import examples

UTC = dt.UTC
NONE_LATER = pl.Series([], dtype=pl.String)
AT = dt.datetime(2026, 11, 29, 20, 0, tzinfo=UTC)


def test_providers_then_case_ids_in_text_order() -> None:
    frame = pl.DataFrame(
        {
            "provider_id": ["P2", "P10", "P2", "P1", "P10"],
            "case_id": ["C9", "C3", "C10", "C5", "C1"],
            "n": [1, 2, 3, 4, 5],
        }
    )
    # By hand: P1 < P10 < P2 as text; within P10, C1 < C3; within P2, "C10" < "C9".
    assert in_remit_order(frame)["n"].to_list() == [4, 5, 2, 3, 1]


def test_a_frame_in_order_is_returned_as_it_is() -> None:
    frame = pl.DataFrame({"provider_id": ["P1", "P1", "P2"], "case_id": ["A", "B", "A"]})
    assert remit_order(frame) is None
    assert remit_order(frame.head(1)) is None


def test_nulls_sort_as_the_plain_sort_puts_them() -> None:
    frame = pl.DataFrame({"provider_id": ["P2", None, "P1"], "case_id": ["C1", "C2", None]})
    assert in_remit_order(frame).equals(frame.sort("provider_id", "case_id"))


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["P1", "P10", "P2", "Q", "P01"]), st.text("AC019", max_size=4)),
        min_size=0,
        max_size=60,
        unique_by=lambda row: row[1],
    )
)
def test_the_key_sort_is_the_plain_sort(rows: list[tuple[str, str]]) -> None:
    frame = pl.DataFrame(
        {"provider_id": [p for p, _ in rows], "case_id": [c for _, c in rows]},
        schema={"provider_id": pl.String, "case_id": pl.String},
    )
    assert in_remit_order(frame).equals(frame.sort("provider_id", "case_id"))


def _cases(*case_ids: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "case_id": list(case_ids),
            "member_id": [f"M-{c}" for c in case_ids],
            "provider_id": ["P1"] * len(case_ids),
            "procedure_code": ["99213"] * len(case_ids),
            "units": [1] * len(case_ids),
            "service_date": [dt.date(2026, 11, 1)] * len(case_ids),
            "billed_cents": [1000 * (i + 1) for i in range(len(case_ids))],
        },
        schema={
            **dict.fromkeys(("case_id", "member_id", "provider_id", "procedure_code"), pl.String),
            "units": pl.Int64,
            "service_date": pl.Date,
            "billed_cents": pl.Int64,
        },
    )


def _decisions(*rows: tuple[str, str, int], at: dt.datetime = AT) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "case_id": [c for c, _, _ in rows],
            "status": [s for _, s, _ in rows],
            "reason_codes": [[] if s == "APPROVED" else ["CO-29"] for _, s, _ in rows],
            "allowed_cents": [p for _, _, p in rows],
            "deductible_cents": [0] * len(rows),
            "coinsurance_cents": [0] * len(rows),
            "paid_cents": [p for _, _, p in rows],
            "decided_at": [at] * len(rows),
        },
        schema={
            "case_id": pl.String,
            "status": pl.String,
            "reason_codes": pl.List(pl.String),
            **dict.fromkeys(
                ("allowed_cents", "deductible_cents", "coinsurance_cents", "paid_cents"),
                pl.Int64,
            ),
            "decided_at": pl.Datetime("us", "UTC"),
        },
    )


def test_lined_up_tables_are_put_side_by_side() -> None:
    # C3 is a void row: last among the cases, without an adjudication. Nothing later
    # decides it, so nothing could remit it: it is left out.
    cases = _cases("C1", "C2", "C3")
    adjudications = _decisions(("C1", "APPROVED", 1000), ("C2", "DENIED", 0))
    decided = _with_adjudication(cases, adjudications, NONE_LATER)
    assert decided["case_id"].to_list() == ["C1", "C2"]
    assert decided["status"].to_list() == ["APPROVED", "DENIED"]
    assert decided["billed_cents"].to_list() == [1000, 2000]
    assert decided["paid_cents"].to_list() == [1000, 0]
    # A later decision of C3 keeps it, with no adjudication of its own.
    decided = _with_adjudication(cases, adjudications, pl.Series(["C3"]))
    assert decided["case_id"].to_list() == ["C1", "C2", "C3"]
    assert decided["status"].to_list() == ["APPROVED", "DENIED", None]
    assert decided["billed_cents"].to_list() == [1000, 2000, 3000]


def test_tables_in_other_orders_are_joined() -> None:
    cases = _cases("C1", "C2", "C3")
    decided = _with_adjudication(
        cases, _decisions(("C3", "APPROVED", 300), ("C1", "DENIED", 0)), NONE_LATER
    )
    assert decided["case_id"].to_list() == ["C1", "C2", "C3"]
    assert decided["status"].to_list() == ["DENIED", None, "APPROVED"]
    assert decided["paid_cents"].to_list() == [0, None, 300]


def test_a_later_decision_wins_and_only_remitted_cases_stay() -> None:
    cases = _cases("C2", "C1", "C3", "C4")
    # C2's review approves it (at the same instant: it still comes after); C3 is voided
    # by a correction an hour later; C4 (no adjudication) has none.
    again = pl.concat(
        [
            _decisions(("C2", "APPROVED", 1500)),
            _decisions(("C3", "VOIDED", 0), at=AT + dt.timedelta(hours=1)),
        ]
    )
    decided = _with_adjudication(
        cases,
        _decisions(("C2", "PENDED", 0), ("C1", "APPROVED", 1000), ("C3", "DENIED", 0)),
        again["case_id"],
    )
    remitted = _remitted_in_order(_later_decisions_win(decided, again))
    assert remitted.select("case_id", "status", "paid_cents", "billed_cents").rows() == [
        ("C1", "APPROVED", 1000, 2000),
        ("C2", "APPROVED", 1500, 1000),
    ]
    assert "decided_at" not in remitted.columns


def test_dense_ranks_follow_the_text_order() -> None:
    values = pl.Series(["P2", "P10", "P2", "P1", "Q", "P10"])
    # By hand: P1 < P10 < P2 < Q.
    assert dense_ranks(values) is not None
    assert dense_ranks(values).to_list() == [2, 1, 2, 0, 3, 1]  # type: ignore[union-attr]


def test_a_shared_hash_falls_back_to_the_plain_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pl.DataFrame({"provider_id": ["P2", "P1", "P3"], "case_id": ["C1", "C2", "C3"]})
    # Every value hashing alike: the ranks cannot be told apart, and say so.
    monkeypatch.setattr(
        pl.Series,
        "hash",
        lambda self, *a, **k: pl.repeat(7, self.len(), dtype=pl.UInt64, eager=True),
    )
    assert dense_ranks(frame["provider_id"]) is None
    assert in_remit_order(frame)["provider_id"].to_list() == ["P1", "P2", "P3"]


@settings(max_examples=examples(60), deadline=None)
@given(
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=0, max_value=3),
    st.booleans(),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_side_by_side_is_the_join(
    adjudicated: int, voids: int, shuffled: bool, voids_decided_later: bool, random: Random
) -> None:
    """Lined up (the void rows last, without an adjudication) or in any other order,
    each case that could be remitted (adjudicated, or decided later) gets its own
    adjudication: what a left join by case_id gives."""
    case_ids = [f"C{n:02d}" for n in range(adjudicated + voids)]
    cases = _cases(*case_ids)
    rows = [(c, "APPROVED" if n % 2 else "DENIED", 100 * n) for n, c in enumerate(case_ids)]
    decisions = rows[:adjudicated]
    if shuffled:
        random.shuffle(decisions)
    adjudications = _decisions(*decisions)
    later = pl.Series(case_ids[adjudicated:] if voids_decided_later else [], dtype=pl.String)
    remittable = pl.col("status").is_not_null() | pl.col("case_id").is_in(later.implode())
    decided = _with_adjudication(cases, adjudications, later)
    joined = cases.join(adjudications, on="case_id", how="left")
    assert (
        decided.filter(remittable).sort("case_id").equals(joined.filter(remittable).sort("case_id"))
    )
