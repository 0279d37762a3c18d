"""The row-at-a-time baseline: the same batch and rule set, one case at a time in Python.

What a straightforward implementation would do: validate each text row with
`re` and `datetime`, look its member, provider and fee up in dicts, evaluate
each rule's condition (the same compiled conditions, interpreted per case with
SQL's NULL semantics, see bench/conditions.py), keep the duplicate keys and the
deductible and out-of-pocket balances in dicts, and price each case. Only the shape checks of
spec §1 that the generated data exercises are written out; the result is
compared with the pipeline's on the same rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.conditions import Predicate, python_condition
from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import RuleSet
from claimsflow.vocabulary import APPROVED, DENIED, PENDED

_CASE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PROCEDURE = re.compile(r"[A-Z0-9]{5}")
_DIAGNOSIS = re.compile(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")
_UNITS = re.compile(r"[0-9]{1,9}")
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")


@dataclass(frozen=True)
class LoopDecision:
    case_id: str
    status: str
    reason_codes: tuple[str, ...]
    paid_cents: int


def _date(text: str | None) -> dt.date | None:
    if text is None or not _DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _cents(text: str | None) -> int | None:
    match = _AMOUNT.fullmatch(text or "")
    if match is None or len(match[1].lstrip("0")) > 13:
        return None
    return int(match[1]) * 100 + int((match[2] or "").ljust(2, "0"))


def _typed(row: dict[str, Any]) -> dict[str, Any] | None:
    """The typed case, or None when any §1 check fails."""
    service, received = _date(row["service_date"]), _date(row["received_date"])
    units_text = row["units"] or ""
    units = int(units_text) if _UNITS.fullmatch(units_text) else None
    billed = _cents(row["billed_amount"])
    ok = (
        _CASE_ID.fullmatch(row["case_id"] or "") is not None
        and 1 <= len(row["member_id"] or "") <= 32
        and 1 <= len(row["provider_id"] or "") <= 32
        and service is not None
        and received is not None
        and received >= service
        and _PROCEDURE.fullmatch(row["procedure_code"] or "") is not None
        and _DIAGNOSIS.fullmatch(row["diagnosis_code"] or "") is not None
        and units is not None
        and 1 <= units <= 999
        and billed is not None
        and 1 <= billed <= 999_999_999
    )
    if not ok:
        return None
    return {
        "case_id": row["case_id"],
        "member_id": row["member_id"],
        "provider_id": row["provider_id"],
        "service_date": service,
        "received_date": received,
        "procedure_code": row["procedure_code"],
        "diagnosis_code": row["diagnosis_code"],
        "units": units,
        "billed_cents": billed,
        "prior_auth_id": row.get("prior_auth_id") or None,
    }


class RowAtATime:
    """The reference data as dicts and the rule set as per-case predicates."""

    def __init__(self, reference: Reference, ruleset: RuleSet) -> None:
        self.spans: dict[str, list[dict[str, Any]]] = {}
        for span in reference.members.sort("coverage_start").iter_rows(named=True):
            self.spans.setdefault(span["member_id"], []).append(span)
        self.providers = {p["provider_id"]: p for p in reference.providers.iter_rows(named=True)}
        self.fees = {f["procedure_code"]: f for f in reference.fee_schedule.iter_rows(named=True)}
        self.ruleset = ruleset
        self.rules: list[tuple[int, Predicate | None]] = [
            (i, python_condition(r.condition) if r.condition is not None else None)
            for i, r in enumerate(ruleset.rules)
        ]

    def context(self, case: dict[str, Any]) -> dict[str, Any]:
        spans = self.spans.get(case["member_id"], [])
        sd = case["service_date"]
        span = next((s for s in reversed(spans) if s["coverage_start"] <= sd), None)
        covered = span is not None and (span["coverage_end"] is None or sd <= span["coverage_end"])
        provider = self.providers.get(case["provider_id"])
        fee = self.fees.get(case["procedure_code"])
        return case | {
            "prior_auth_missing": case["prior_auth_id"] is None,
            "member_known": bool(spans),
            "covered": covered,
            "first_coverage_start": spans[0]["coverage_start"] if spans else None,
            "annual_deductible_cents": span["deductible_cents"] if covered and span else None,
            "coinsurance_percent": span["coinsurance_percent"] if covered and span else None,
            "oop_max_cents": span["oop_max_cents"] if covered and span else None,
            "provider_known": provider is not None,
            "provider_status": provider["provider_status"] if provider else None,
            "in_network": provider["in_network"] if provider else None,
            "days_to_receive": (case["received_date"] - sd).days,
            "fee_known": fee is not None,
            "fee_allowed_cents": fee["fee_allowed_cents"] if fee else None,
            "prior_auth_required": fee["prior_auth_required"] if fee else None,
            "max_units": fee["max_units"] if fee else None,
        }

    def _status(self, fired: list[int]) -> str:
        outcomes = [self.ruleset.rules[i].outcome for i in fired]
        if self.ruleset.hit_policy == "first":
            outcomes = outcomes[:1]
        return DENIED if "DENY" in outcomes else PENDED if "PEND" in outcomes else APPROVED

    def run(self, rows: Iterable[dict[str, Any]]) -> list[LoopDecision]:
        seen_ids: set[str | None] = set()
        cases = []
        for row in rows:
            first = row["case_id"] not in seen_ids
            seen_ids.add(row["case_id"])
            case = _typed(row)
            if case is not None and first:
                cases.append(self.context(case))
        # Rule 9 judges cases in (received_date, case_id) order.
        cases.sort(key=lambda c: (c["received_date"], c["case_id"]))
        live_keys: set[tuple[Any, ...]] = set()
        decided = []
        for case in cases:
            fired = [i for i, test in self.rules if test is not None and test(case)]
            for rule in self.ruleset.rules:
                if rule.kind == "duplicate":
                    key = tuple(case[k] for k in rule.key)
                    base_live = self._status(fired) != DENIED
                    if key in live_keys:
                        fired.append(self.ruleset.rules.index(rule))
                    if base_live:
                        live_keys.add(key)
            fired.sort()
            decided.append((case, fired, self._status(fired)))
        return self._priced(decided)

    def _priced(self, decided: list[tuple[dict[str, Any], list[int], str]]) -> list[LoopDecision]:
        # Spec §5: the deductible and the out-of-pocket maximum are used up in
        # (service_date, received_date, case_id) order.
        decided.sort(key=lambda d: (d[0]["service_date"], d[0]["received_date"], d[0]["case_id"]))
        used: dict[tuple[str, int], int] = {}
        spent: dict[tuple[str, int], int] = {}
        result = []
        for case, fired, status in decided:
            codes = tuple(self.ruleset.rules[i].reason_code for i in fired)
            if self.ruleset.hit_policy == "first":
                codes = codes[:1]
            paid = 0
            if status == APPROVED:
                fee = case["fee_allowed_cents"]
                allowed = min(case["billed_cents"], fee * case["units"])
                key = (case["member_id"], case["service_date"].year)
                before = used.get(key, 0)
                # No covering span (a rule set without the member rules): no terms.
                annual = case["annual_deductible_cents"] or 0
                deductible = min(allowed, max(0, annual - before))
                coinsurance = (
                    (allowed - deductible) * (case["coinsurance_percent"] or 0) + 50
                ) // 100
                if case["oop_max_cents"] is not None:
                    room = max(0, case["oop_max_cents"] - spent.get(key, 0))
                    deductible = min(deductible, room)
                    coinsurance = min(coinsurance, room - deductible)
                used[key] = before + deductible
                spent[key] = spent.get(key, 0) + deductible + coinsurance
                paid = allowed - deductible - coinsurance
            result.append(LoopDecision(case["case_id"], status, codes, paid))
        return result
