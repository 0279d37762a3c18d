"""`adjudicate explain`: why a case was decided as it was, from the event log alone."""

from __future__ import annotations

from typing import Any

from claimsflow.catalog import CatalogError, connect_read_only
from claimsflow.rules.context import CASE_PAYLOAD_COLUMNS
from claimsflow.storage import Location

INPUT_COLUMNS = tuple(c for c in CASE_PAYLOAD_COLUMNS if c != "case_id")


def money(cents: int | None) -> str:
    """Cents as a decimal amount with thousands separators (no float involved)."""
    if cents is None:
        return "-"
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole:,}.{frac:02d}"


def explain_case(lake: Location, case_id: str) -> str:
    con = connect_read_only(lake)
    try:
        decision = _one(
            con.execute(
                """SELECT d.*, e.annual_deductible_cents, e.coinsurance_percent,
                          e.fee_allowed_cents
                   FROM case_decisions d
                   JOIN decision_events e USING (batch_id, case_id)
                   WHERE d.case_id = ?""",
                [case_id],
            )
        )
        if decision is None:
            return _explain_rejection(con, case_id)
        payload = _one(
            con.execute(
                "SELECT * FROM cases WHERE case_id = ? AND batch_id = ?",
                [case_id, decision["batch_id"]],
            )
        )
        hits = con.execute(
            """SELECT rule_id, outcome, reason_code, rule_description FROM rule_hits
               WHERE case_id = ? AND batch_id = ? ORDER BY rule_order""",
            [case_id, decision["batch_id"]],
        ).fetchall()
    finally:
        con.close()
    lines = [
        f"Case {case_id}: {decision['status']}"
        f" ({decision['ruleset_name']} v{decision['ruleset_version']},"
        f" batch {decision['batch_id'][:12]},"
        f" decided {decision['decided_at']:%Y-%m-%d %H:%M:%S %Z})",
        "",
        "Inputs:",
    ]
    if payload is not None:
        for column in INPUT_COLUMNS:
            value = payload[column]
            if column == "billed_cents":
                lines.append(f"  {'billed_amount':<15}{money(value)}")
            else:
                lines.append(f"  {column:<15}{'' if value is None else value}")
    lines += ["", "Rules that fired:" if hits else "Rules that fired: none"]
    for number, (rule_id, outcome, code, description) in enumerate(hits, start=1):
        lines.append(f"  {number}. {rule_id} ({outcome} {code}): {description}")
    lines += ["", *pricing_lines(decision, payload)]
    return "\n".join(lines)


def pricing_lines(decision: dict[str, Any], payload: dict[str, Any] | None) -> list[str]:
    if decision["status"] != "APPROVED" or payload is None:
        return [f"Pricing: none ({decision['status']} cases carry 0 in every amount)"]
    fee, units = decision["fee_allowed_cents"], payload["units"]
    allowed = decision["allowed_cents"]
    deductible = decision["deductible_cents"]
    used = decision["deductible_used_before_cents"]
    annual = decision["annual_deductible_cents"]
    percent = decision["coinsurance_percent"]
    return [
        "Pricing (spec §5):",
        f"  allowed     = min(billed {money(payload['billed_cents'])}, "
        f"fee {money(fee)} x {units} units = {money(fee * units)}) = {money(allowed)}",
        f"  deductible  = min(allowed {money(allowed)}, max(0, annual {money(annual)} "
        f"- used before {money(used)})) = {money(deductible)}",
        f"  coinsurance = ({money(allowed)} - {money(deductible)}) x {percent}%, "
        f"half up = {money(decision['coinsurance_cents'])}",
        f"  paid        = {money(allowed)} - {money(deductible)} - "
        f"{money(decision['coinsurance_cents'])} = {money(decision['paid_cents'])}",
    ]


def _explain_rejection(con: Any, case_id: str) -> str:
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


def _one(relation: Any) -> dict[str, Any] | None:
    columns = [d[0] for d in relation.description]
    row = relation.fetchone()
    return dict(zip(columns, row, strict=True)) if row is not None else None
