"""`adjudicate explain`: a case's whole story, from the event log alone.

The case's inputs (its received row, and for a replacement or a void the original it
corrects), then every decision of the case, oldest first, each with who, when and
why: the adjudication (the rules that fired, the pricing arithmetic), an examiner's
review (spec §8: who, the note, the pricing at review), a correction (spec §9: voided
by which case, a replacement or a void). Pricing shows the balances the decision saw,
`used` (deductible) and, when the log records them, `spent` (deductible + coinsurance)
and the span's out-of-pocket maximum.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.lake.catalog import CatalogError, connect_read_only, decision_order
from claimsflow.lake.storage import Location
from claimsflow.text import money
from claimsflow.vocabulary import ADJUDICATION, CORRECTION, REVIEW

INPUT_COLUMNS = tuple(
    c for c in CASE_PAYLOAD_COLUMNS if c not in ("case_id", "claim_frequency", "original_case_id")
)
FREQUENCIES = {"1": "original claim", "7": "replacement", "8": "void"}

_PAYLOAD_SQL = """
    SELECT c.*, b.source AS batch_source
    FROM cases c
    LEFT JOIN (SELECT batch_id, any_value(source) AS source FROM batches
               WHERE status = 'PROCESSED' GROUP BY batch_id) b USING (batch_id)
    WHERE c.case_id = ?
"""
_DECISIONS_SQL = f"""
    SELECT e.*, b.source AS batch_source, b.kind AS batch_kind
    FROM decision_events e
    LEFT JOIN (SELECT batch_id, any_value(source) AS source, any_value(kind) AS kind
               FROM batches WHERE status = 'PROCESSED' GROUP BY batch_id) b USING (batch_id)
    WHERE e.case_id = ?
    ORDER BY {decision_order("e", latest_first=False)}
"""  # noqa: S608 - built from constants; the case_id is a parameter
_HITS_SQL = """
    SELECT rule_id, outcome, reason_code, rule_description FROM rule_hits
    WHERE case_id = ? AND batch_id = ? ORDER BY rule_order
"""


def explain_case(lake: Location, case_id: str) -> str:
    """The story of `case_id` as text; CatalogError when the lake never saw it."""
    con = connect_read_only(lake)
    try:
        decisions = _all(con.execute(_DECISIONS_SQL, [case_id]))
        if not decisions:
            return _explain_rejection(con, case_id)
        payload = _one(con.execute(_PAYLOAD_SQL, [case_id]))
        hits = {
            d["batch_id"]: con.execute(_HITS_SQL, [case_id, d["batch_id"]]).fetchall()
            for d in decisions
            if _source(d) == ADJUDICATION
        }
        correctors = {
            str(d["decided_by"]): _one(con.execute(_PAYLOAD_SQL, [d["decided_by"]]))
            for d in decisions
            if _source(d) == CORRECTION and d["decided_by"] not in (None, case_id)
        }
    finally:
        con.close()
    latest = decisions[-1]
    lines = [
        f"Case {case_id}: {latest['status']} "
        f"({len(decisions)} decision(s); latest: {_who(latest, case_id)}, "
        f"{_when(latest['decided_at'])})",
        "",
        *input_lines(payload),
        "",
        "Decisions, oldest first:",
    ]
    for number, decision in enumerate(decisions, start=1):
        corrector = correctors.get(str(decision["decided_by"]))
        hit = hits.get(decision["batch_id"], [])
        lines += ["", *decision_lines(number, decision, payload, hit, corrector, case_id)]
    return "\n".join(lines)


def input_lines(payload: dict[str, Any] | None) -> list[str]:
    """The case as received (or a note that the log has no received row for it)."""
    if payload is None:
        return ["Inputs: no received row in the event log"]
    lines = [
        f"Inputs (received in batch {_batch(payload['batch_id'], payload.get('batch_source'))}, "
        f"row {payload['row_number']}, {_when(payload['received_at'])}):"
    ]
    for column in INPUT_COLUMNS:
        value = payload[column]
        if column == "billed_cents":
            lines.append(f"  {'billed_amount':<16}{money(value)}")
        else:
            lines.append(f"  {column:<16}{'' if value is None else value}")
    frequency = str(payload.get("claim_frequency") or "1")
    kind = FREQUENCIES.get(frequency, frequency)
    original = payload.get("original_case_id")
    corrects = f" of {original}" if frequency in ("7", "8") and original else ""
    lines.append(f"  {'claim_frequency':<16}{frequency} ({kind}{corrects})")
    return lines


def decision_lines(
    number: int,
    decision: dict[str, Any],
    payload: dict[str, Any] | None,
    hits: list[tuple[Any, ...]],
    corrector: dict[str, Any] | None,
    case_id: str,
) -> list[str]:
    """One decision: what, who, when, why, and the pricing it carries."""
    source = _source(decision)
    status = decision["status"]
    codes = ", ".join(decision["reason_codes"] or [])
    outcome = f"{status}{f' {codes}' if codes else ''}"
    when = _when(decision["decided_at"])
    batch = _batch(decision["batch_id"], decision.get("batch_source"))
    ruleset = f"{decision['ruleset_name']} v{decision['ruleset_version']}"
    if source == REVIEW:
        head = f"{number}. Review by {decision['decided_by']}, {when}, review file {batch}"
        why = [f"Rule set of the case's adjudication: {ruleset}"]
        note = decision.get("note")
        why.append(f"Note: {note}" if note else "Note: none")
    elif source == CORRECTION:
        head = f"{number}. Correction, {when}, batch {batch}"
        why = [_correction_text(decision, payload, corrector, case_id)]
    else:
        head = f"{number}. Adjudication, {when}, batch {batch}, rule set {ruleset}"
        why = ["Rules that fired:" if hits else "Rules that fired: none"]
        why += [
            f"  {n}. {rule_id} ({rule_outcome} {code}): {description}"
            for n, (rule_id, rule_outcome, code, description) in enumerate(hits, start=1)
        ]
        if payload is not None and payload.get("claim_frequency") == "7":
            original = payload.get("original_case_id")
            why.append(f"A replacement of {original}, which this batch voided first")
    return [f"{head}: {outcome}", *why, *pricing_lines(decision, payload)]


def pricing_lines(decision: dict[str, Any], payload: dict[str, Any] | None) -> list[str]:
    """Spec §5 step by step with the decision's own numbers (the terms and balances
    recorded with it); for a span with an out-of-pocket maximum, step 4 too."""
    if decision["status"] != "APPROVED" or payload is None:
        return [f"Pricing: none ({decision['status']} cases carry 0 in every amount)"]
    fee, units = decision["fee_allowed_cents"], payload["units"]
    allowed = decision["allowed_cents"]
    deductible, coinsurance = decision["deductible_cents"], decision["coinsurance_cents"]
    used = decision["deductible_used_before_cents"]
    annual = decision["annual_deductible_cents"]
    percent = decision["coinsurance_percent"]
    maximum = decision.get("oop_max_cents")
    spent = decision.get("oop_spent_before_cents")
    lines = [
        "Pricing (spec §5):",
        f"  allowed     = min(billed {money(payload['billed_cents'])}, "
        f"fee {money(fee)} x {units} units = {money(fee * units)}) = {money(allowed)}",
    ]
    if maximum is None or spent is None or used is None:
        lines += [
            f"  deductible  = min(allowed {money(allowed)}, max(0, annual {money(annual)} "
            f"- used before {money(used)})) = {money(deductible)}",
            f"  coinsurance = ({money(allowed)} - {money(deductible)}) x {percent}%, "
            f"half up = {money(coinsurance)}",
        ]
        if spent is not None:
            lines.append(f"  out-of-pocket: no maximum on this span (spent before {money(spent)})")
    else:
        # Steps 2 and 3 before the cap, worked out again from the recorded terms.
        uncapped_deductible = min(allowed, max(0, annual - used))
        uncapped_coinsurance = ((allowed - uncapped_deductible) * percent + 50) // 100
        room = max(0, maximum - spent)
        lines += [
            f"  deductible  = min(allowed {money(allowed)}, max(0, annual {money(annual)} "
            f"- used before {money(used)})) = {money(uncapped_deductible)}",
            f"  coinsurance = ({money(allowed)} - {money(uncapped_deductible)}) x {percent}%, "
            f"half up = {money(uncapped_coinsurance)}",
            f"  room        = max(0, out-of-pocket maximum {money(maximum)} "
            f"- spent before {money(spent)}) = {money(room)}",
            f"  deductible  = min({money(uncapped_deductible)}, room {money(room)}) "
            f"= {money(deductible)}",
            f"  coinsurance = min({money(uncapped_coinsurance)}, room {money(room)} "
            f"- deductible {money(deductible)}) = {money(coinsurance)}",
        ]
    lines.append(
        f"  paid        = {money(allowed)} - {money(deductible)} - "
        f"{money(coinsurance)} = {money(decision['paid_cents'])}"
    )
    return lines


def _correction_text(
    decision: dict[str, Any],
    payload: dict[str, Any] | None,
    corrector: dict[str, Any] | None,
    case_id: str,
) -> str:
    by = decision["decided_by"]
    if by == case_id or by is None:
        original = payload.get("original_case_id") if payload else None
        return (
            f"This case is a void of {original}: recorded VOIDED, not adjudicated"
            if original
            else "Recorded VOIDED by a correction"
        )
    if corrector is None:
        return f"Voided by {by}"
    frequency = str(corrector.get("claim_frequency") or "")
    kind = FREQUENCIES.get(frequency, "correction")
    batch = _batch(corrector["batch_id"], corrector.get("batch_source"))
    return (
        f"Voided by {by} ({kind}, claim_frequency {frequency}, received in batch {batch}): "
        "what it had consumed of the deductible and out-of-pocket is given back to its "
        "member-year, and its duplicate key no longer counts"
    )


def _explain_rejection(con: duckdb.DuckDBPyConnection, case_id: str) -> str:
    rows = con.execute(
        "SELECT batch_id, row_number, errors, raw FROM rejections WHERE case_id = ?"
        " ORDER BY rejected_at, row_number",
        [case_id],
    ).fetchall()
    if not rows:
        raise CatalogError(f"no case {case_id!r} in the lake (neither decided nor rejected)")
    lines = [f"Case {case_id}: not decided; rejected {len(rows)} time(s)"]
    for batch_id, row_number, errors, raw in rows:
        lines.append(f"  batch {batch_id[:12]}, row {row_number}:")
        lines += [f"    - {error}" for error in errors]
        lines.append(f"    raw: {raw}")
    return "\n".join(lines)


def _source(decision: dict[str, Any]) -> str:
    return str(decision.get("decision_source") or ADJUDICATION)


def _who(decision: dict[str, Any], case_id: str) -> str:
    source = _source(decision)
    if source == REVIEW:
        return f"review by {decision['decided_by']}"
    if source == CORRECTION:
        by = decision["decided_by"]
        return "correction (a void)" if by == case_id else f"correction by {by}"
    return "adjudication"


def _batch(batch_id: str, source: str | None) -> str:
    return f"{source} ({batch_id[:12]})" if source else batch_id[:12]


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _all(relation: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    columns = [d[0] for d in relation.description or []]
    return [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]


def _one(relation: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    rows = _all(relation)
    return rows[0] if rows else None
