"""The DuckDB twin: the same rule set as one SQL query over a batch in Parquet.

A peer for the benchmark (`make bench`) and a differential check of the Polars
pipeline (tests/test_duckdb_twin.py): validation (spec §1, §3), the context
joins, every rule (the `when` conditions are SQL already and go in verbatim),
the duplicate rule's window and the deductible accumulator with its span carry
(a recursive CTE) are written independently of the Polars code, in SQL.

Scope: one batch with no history (no earlier decisions, no resubmissions), the
batch as text columns (what reading produces). Rejected rows come out with
status REJECTED and no error text: the twin checks *which* rows are rejected,
not the messages.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from claimsflow.reference import Reference
from claimsflow.rules.engine import APPROVED, DENIED, PENDED, STATUS_OF_OUTCOME
from claimsflow.rules.ruleset import Rule, RuleSet
from schemas.case_batch import (
    CASE_ID_PATTERN,
    DIAGNOSIS_CODE_PATTERN,
    MAX_BILLED_CENTS,
    PROCEDURE_CODE_PATTERN,
)

REJECTED = "REJECTED"
TWIN_COLUMNS = (
    "row_number",
    "case_id",
    "status",
    "reason_codes",
    "allowed_cents",
    "deductible_cents",
    "coinsurance_cents",
    "paid_cents",
)
_ISO_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_DECIMAL_2DP = r"[0-9]+(\.[0-9]{1,2})?"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _full(pattern: str) -> str:
    """A Python-anchored pattern (^...$) for regexp_full_match, which anchors itself."""
    return _text(pattern.removeprefix("^").removesuffix("$"))


def _hit(rule: Rule) -> str:
    return '"hit:' + rule.id + '"'


def _status(ruleset: RuleSet, rules: list[Rule]) -> str:
    if not rules:
        return _text(APPROVED)
    if ruleset.hit_policy == "first":
        arms = " ".join(f"WHEN {_hit(r)} THEN {_text(STATUS_OF_OUTCOME[r.outcome])}" for r in rules)
        return f"CASE {arms} ELSE {_text(APPROVED)} END"
    deny = " OR ".join(_hit(r) for r in rules if r.outcome == "DENY") or "FALSE"
    pend = " OR ".join(_hit(r) for r in rules if r.outcome == "PEND") or "FALSE"
    return (
        f"CASE WHEN {deny} THEN {_text(DENIED)} WHEN {pend} THEN {_text(PENDED)} "
        f"ELSE {_text(APPROVED)} END"
    )


def _reason_codes(ruleset: RuleSet) -> str:
    items = ", ".join(f"CASE WHEN {_hit(r)} THEN {_text(r.reason_code)} END" for r in ruleset.rules)
    codes = f"list_filter([{items}]::VARCHAR[], lambda x: x IS NOT NULL)"
    return f"list_slice({codes}, 1, 1)" if ruleset.hit_policy == "first" else codes


def _duplicate(rule: Rule) -> str:
    key = ", ".join(rule.key)
    order = ", ".join(rule.order_by)
    return (
        f"coalesce(sum(CASE WHEN _base_status <> {_text(DENIED)} THEN 1 ELSE 0 END) OVER ("
        f"PARTITION BY {key} ORDER BY {order} "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) > 0 AS {_hit(rule)}"
    )


def twin_query(ruleset: RuleSet, batch: str, *, has_prior_auth: bool = True) -> str:
    """The whole adjudication of the Parquet batch at `batch` as one SQL query.

    Reads tables `members`, `providers` and `fee_schedule` (the typed reference
    frames, registered by `register_reference`).
    """
    plain = [r for r in ruleset.rules if r.kind == "expression"]
    duplicates = [r for r in ruleset.rules if r.kind == "duplicate"]
    conditions = ",\n    ".join(f"coalesce(({r.when}), FALSE) AS {_hit(r)}" for r in plain)
    base = _status(ruleset, [r for r in ruleset.rules if r.kind != "duplicate"])
    duplicate_hits = "".join(f",\n    {_duplicate(r)}" for r in duplicates)
    prior_auth = "prior_auth_id" if has_prior_auth else "NULL::VARCHAR"
    order = "service_date, received_date, case_id"
    # Built from the rule set's own conditions and quoted literals, never from user input.
    return f"""
WITH RECURSIVE
src AS (
  SELECT file_row_number + 1 AS "row_number", case_id, member_id, provider_id,
    service_date AS service_text, received_date AS received_text, procedure_code,
    diagnosis_code, units AS units_text, billed_amount AS billed_text,
    {prior_auth} AS prior_auth_text
  FROM read_parquet({_text(batch)}, file_row_number = true)
),
parsed AS (
  SELECT *,
    CASE WHEN regexp_full_match(service_text, '{_ISO_DATE}')
      THEN CAST(try_strptime(service_text, '%Y-%m-%d') AS DATE) END AS service_date,
    CASE WHEN regexp_full_match(received_text, '{_ISO_DATE}')
      THEN CAST(try_strptime(received_text, '%Y-%m-%d') AS DATE) END AS received_date,
    CASE WHEN regexp_full_match(units_text, '[0-9]{{1,9}}')
      THEN TRY_CAST(units_text AS BIGINT) END AS units,
    CASE WHEN regexp_full_match(billed_text, '{_DECIMAL_2DP}')
        AND length(ltrim(split_part(billed_text, '.', 1), '0')) <= 13
      THEN TRY_CAST(split_part(billed_text, '.', 1) AS BIGINT) * 100
        + TRY_CAST(rpad(split_part(billed_text, '.', 2), 2, '0') AS BIGINT) END AS billed_cents,
    row_number() OVER (PARTITION BY case_id ORDER BY "row_number") AS case_id_seen
  FROM src
),
checked AS (
  SELECT *, coalesce(
    regexp_full_match(case_id, {_full(CASE_ID_PATTERN)})
    AND length(member_id) BETWEEN 1 AND 32
    AND length(provider_id) BETWEEN 1 AND 32
    AND received_date >= service_date
    AND regexp_full_match(procedure_code, {_full(PROCEDURE_CODE_PATTERN)})
    AND regexp_full_match(diagnosis_code, {_full(DIAGNOSIS_CODE_PATTERN)})
    AND units BETWEEN 1 AND 999
    AND billed_cents BETWEEN 1 AND {MAX_BILLED_CENTS}
    AND case_id_seen = 1, FALSE) AS valid
  FROM parsed
),
cases AS (
  SELECT "row_number", case_id, member_id, provider_id, service_date, received_date,
    procedure_code, diagnosis_code, units, billed_cents,
    nullif(prior_auth_text, '') AS prior_auth_id
  FROM checked WHERE valid
),
first_start AS (
  SELECT member_id, min(coverage_start) AS first_coverage_start FROM members GROUP BY member_id
),
joined AS (
  SELECT c.*, f.first_coverage_start, s.coverage_start, s.coverage_end,
    s.deductible_cents, s.coinsurance_percent AS span_coinsurance,
    p.provider_id IS NOT NULL AS provider_known, p.provider_status, p.in_network,
    fs.procedure_code IS NOT NULL AS fee_known, fs.fee_allowed_cents,
    fs.prior_auth_required, fs.max_units
  FROM cases c
  LEFT JOIN first_start f ON f.member_id = c.member_id
  ASOF LEFT JOIN members s
    ON s.member_id = c.member_id AND c.service_date >= s.coverage_start
  LEFT JOIN providers p ON p.provider_id = c.provider_id
  LEFT JOIN fee_schedule fs ON fs.procedure_code = c.procedure_code
),
context AS (
  SELECT * EXCLUDE (coverage_start, coverage_end, deductible_cents, span_coinsurance),
    prior_auth_id IS NULL AS prior_auth_missing,
    first_coverage_start IS NOT NULL AS member_known,
    coalesce(coverage_start IS NOT NULL
      AND (coverage_end IS NULL OR service_date <= coverage_end), FALSE) AS covered,
    CASE WHEN coverage_start IS NOT NULL
      AND (coverage_end IS NULL OR service_date <= coverage_end)
      THEN deductible_cents END AS annual_deductible_cents,
    CASE WHEN coverage_start IS NOT NULL
      AND (coverage_end IS NULL OR service_date <= coverage_end)
      THEN span_coinsurance END AS coinsurance_percent,
    CAST(received_date - service_date AS BIGINT) AS days_to_receive
  FROM joined
),
hits AS (
  SELECT *,
    {conditions}
  FROM context
),
based AS (
  SELECT *, {base} AS _base_status FROM hits
),
flagged AS (
  SELECT *{duplicate_hits} FROM based
),
decided AS (
  SELECT *, {_status(ruleset, list(ruleset.rules))} AS status,
    {_reason_codes(ruleset)} AS reason_codes
  FROM flagged
),
approved AS (
  SELECT "row_number", member_id, year(service_date) AS service_year, service_date,
    received_date, case_id, annual_deductible_cents AS d, coinsurance_percent,
    least(billed_cents, fee_allowed_cents * units) AS allowed
  FROM decided WHERE status = {_text(APPROVED)}
),
marked AS (
  SELECT *, sum(CASE WHEN d IS NULL OR previous_d IS NULL OR d <> previous_d THEN 1 ELSE 0 END)
      OVER (PARTITION BY member_id, service_year ORDER BY {order}
            ROWS UNBOUNDED PRECEDING) AS run
  FROM (
    SELECT *, lag(d) OVER (PARTITION BY member_id, service_year ORDER BY {order}) AS previous_d
    FROM approved
  )
),
within AS (
  SELECT *, CAST(coalesce(sum(allowed) OVER (
      PARTITION BY member_id, service_year, run ORDER BY {order}
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS allowed_before
  FROM marked
),
runs AS (
  SELECT member_id, service_year, run, any_value(d) AS d, CAST(sum(allowed) AS BIGINT) AS total
  FROM within GROUP BY member_id, service_year, run
),
starts(member_id, service_year, run, start) AS (
  SELECT member_id, service_year, run, CAST(0 AS BIGINT) FROM runs WHERE run = 1
  UNION ALL
  SELECT n.member_id, n.service_year, n.run,
    greatest(s.start, least(r.d, s.start + r.total))
  FROM starts s
  JOIN runs r ON r.member_id = s.member_id AND r.service_year = s.service_year AND r.run = s.run
  JOIN runs n ON n.member_id = s.member_id AND n.service_year = s.service_year
    AND n.run = s.run + 1
),
balanced AS (
  SELECT w.*, greatest(s.start, least(w.d, s.start + w.allowed_before)) AS used_before
  FROM within w
  JOIN starts s USING (member_id, service_year, run)
),
priced AS (
  SELECT "row_number", allowed,
    least(allowed, greatest(0, d - used_before)) AS deductible, coinsurance_percent
  FROM balanced
),
amounts AS (
  SELECT "row_number", allowed, deductible,
    ((allowed - deductible) * coinsurance_percent + 50) // 100 AS coinsurance
  FROM priced
)
SELECT d."row_number", d.case_id, d.status, d.reason_codes,
  CAST(coalesce(a.allowed, 0) AS BIGINT) AS allowed_cents,
  CAST(coalesce(a.deductible, 0) AS BIGINT) AS deductible_cents,
  CAST(coalesce(a.coinsurance, 0) AS BIGINT) AS coinsurance_cents,
  CAST(coalesce(a.allowed - a.deductible - a.coinsurance, 0) AS BIGINT) AS paid_cents
FROM decided d LEFT JOIN amounts a USING ("row_number")
UNION ALL
SELECT "row_number", case_id, {_text(REJECTED)}, []::VARCHAR[], 0, 0, 0, 0
FROM checked WHERE NOT valid
ORDER BY "row_number"
"""  # noqa: S608


def register_reference(con: duckdb.DuckDBPyConnection, reference: Reference) -> None:
    """The typed reference frames as the twin's tables (Arrow, no copy)."""
    con.register("members", reference.members.to_arrow())
    con.register("providers", reference.providers.to_arrow())
    con.register("fee_schedule", reference.fee_schedule.to_arrow())


def _has_prior_auth(batch: Path) -> bool:
    return "prior_auth_id" in pl.read_parquet_schema(batch)


def twin_decisions(
    batch: Path, reference: Reference, ruleset: RuleSet, *, threads: int | None = None
) -> pl.DataFrame:
    """Every row of the batch: its status (or REJECTED), reason codes and amounts."""
    with duckdb.connect() as con:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        register_reference(con, reference)
        query = twin_query(ruleset, str(batch), has_prior_auth=_has_prior_auth(batch))
        result: pl.DataFrame = con.sql(query).pl()
        return result


def write_twin_decisions(
    batch: Path, reference: Reference, ruleset: RuleSet, out: Path, *, threads: int | None = None
) -> int:
    """Run the twin and write its decisions to Parquet (the benchmark's measure)."""
    with duckdb.connect() as con:
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        register_reference(con, reference)
        query = twin_query(ruleset, str(batch), has_prior_auth=_has_prior_auth(batch))
        con.execute(f"COPY ({query}) TO {_text(str(out))} (FORMAT parquet, COMPRESSION zstd)")
    return int(pl.scan_parquet(out).select(pl.len()).collect().item())
