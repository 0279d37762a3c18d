"""The DuckDB twin: the same rule set as one SQL query over a batch in Parquet.

A peer for the benchmark (`make bench`) and a differential check of the Polars
pipeline (tests/test_duckdb_twin.py): validation (spec §1, §3), the context
joins, every rule (the `when` conditions are SQL already and go in verbatim),
the duplicate rule's window and the deductible and out-of-pocket accumulators with
their span carry (window functions, and a recursive CTE from one span run of a
member-year to the next) are written independently of the Polars code, in SQL.

Scope: one batch as text columns (what reading produces), given what earlier
batches recorded: the raw `decisions` and `cases` event rows of the log before it
(`TwinHistory`; none for the benchmark's single batch). From those rows the twin
derives, in SQL, each earlier case's latest decision (last by decided_at), and from
it resubmissions (spec §3), the duplicate keys still live (§4) and the member-years'
`used` and `spent` (§5). Corrections (§9) are covered: the claim_frequency and
original_case_id checks and their rejections, the VOIDED decisions of the
originals (first, in the order of the rows that void them), the deductible and
out-of-pocket they consumed given back, their keys released, replacements
adjudicated and void rows recorded VOIDED. Examiners' reviews (§8) are not decided
by the twin (it has no review file path), but the decisions they recorded are in
the history it is given, so the batches after a review are compared as they
should be.

Rejected rows come out with status REJECTED and no error text: the twin checks
*which* rows are rejected, not the messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from claimsflow.core.reference import Reference
from claimsflow.core.rules.engine import STATUS_OF_OUTCOME
from claimsflow.core.rules.ruleset import Rule, RuleSet
from claimsflow.lake.layout import TABLE_SCHEMAS
from claimsflow.vocabulary import (
    ADJUDICATION,
    APPROVED,
    CORRECTION,
    DENIED,
    PENDED,
    VOIDED,
)
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
    "deductible_used_before_cents",
    "oop_spent_before_cents",
    "decision_source",
    "decided_by",
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
    """An earlier case of the batch with the key and a base outcome other than DENIED,
    or an earlier batch's case with the key whose latest decision is APPROVED or
    PENDED (after this batch's voids): `prior` holds those."""
    key = ", ".join(rule.key)
    order = ", ".join(rule.order_by)
    same = " AND ".join(f"p.{k} = b.{k}" for k in rule.key)
    # The rule set's column names, not user input.
    exists = f"EXISTS (SELECT 1 FROM prior p WHERE {same})"  # noqa: S608
    return (
        f"(coalesce(sum(CASE WHEN _base_status <> {_text(DENIED)} THEN 1 ELSE 0 END) OVER ("
        f"PARTITION BY {key} ORDER BY {order} "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) > 0 "
        f"OR {exists}) AS {_hit(rule)}"
    )


def _price_run(source: str, order: str) -> str:
    """§5 for the cases of span runs (same deductible d and maximum m in a row) given
    each run's start balances u0 and s0 (`source` has the columns of `within`, u0, s0).

    Within a run the uncapped deductible balance is a clamped running sum, the
    uncapped spent a running sum; with a maximum, spent stops at max(m, s0) and the
    amounts are capped by the room left (pricing.py derives it).
    """
    run = f"PARTITION BY member_id, service_year, run ORDER BY {order}"
    before = "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
    return f"""
  SELECT "row_number", member_id, service_year, run, service_date, received_date, case_id,
    u0, s0, allowed,
    CAST(u0 + coalesce(sum(deductible) OVER ({run} {before}), 0) AS BIGINT) AS used_before,
    spent_before, deductible, coinsurance
  FROM (
    SELECT *,
      CASE WHEN m IS NULL THEN d_u ELSE least(d_u, room) END AS deductible,
      CASE WHEN m IS NULL THEN c_u ELSE least(c_u, room - least(d_u, room)) END AS coinsurance
    FROM (
      SELECT *, greatest(0, m - spent_before) AS room
      FROM (
        SELECT *,
          CASE WHEN m IS NULL THEN spent_uncapped
            ELSE least(spent_uncapped, greatest(m, s0)) END AS spent_before
        FROM (
          SELECT *, CAST(s0 + coalesce(sum(d_u + c_u) OVER ({run} {before}), 0) AS BIGINT)
            AS spent_uncapped
          FROM (
            SELECT *, ((allowed - d_u) * p + 50) // 100 AS c_u
            FROM (
              SELECT *, least(allowed, greatest(0, d - greatest(u0, least(d, u0 + allowed_before))))
                AS d_u
              FROM ({source})
            )
          )
        )
      )
    )
  )"""  # noqa: S608


def twin_query(
    ruleset: RuleSet, batch: str, *, has_prior_auth: bool = True, has_corrections: bool = False
) -> str:
    """The whole adjudication of the Parquet batch at `batch` as one SQL query.

    Reads tables `members`, `providers` and `fee_schedule` (the typed reference
    frames, registered by `register_reference`), and `history_decisions` and
    `history_cases` (the log's event rows before the batch, `register_history`).
    """
    plain = [r for r in ruleset.rules if r.kind == "expression"]
    duplicates = [r for r in ruleset.rules if r.kind == "duplicate"]
    conditions = ",\n    ".join(f"coalesce(({r.when}), FALSE) AS {_hit(r)}" for r in plain)
    base = _status(ruleset, [r for r in ruleset.rules if r.kind != "duplicate"])
    duplicate_hits = "".join(f",\n    {_duplicate(r)}" for r in duplicates)
    prior_auth = "prior_auth_id" if has_prior_auth else "NULL::VARCHAR"
    frequency = "claim_frequency" if has_corrections else "NULL::VARCHAR"
    original = "original_case_id" if has_corrections else "NULL::VARCHAR"
    order = "service_date, received_date, case_id"
    # Built from the rule set's own conditions and quoted literals, never from user input.
    return f"""
WITH RECURSIVE
src AS (
  SELECT file_row_number + 1 AS "row_number", case_id, member_id, provider_id,
    service_date AS service_text, received_date AS received_text, procedure_code,
    diagnosis_code, units AS units_text, billed_amount AS billed_text,
    {prior_auth} AS prior_auth_text,
    CASE WHEN {frequency} IS NULL OR {frequency} = '' THEN '1' ELSE {frequency} END
      AS frequency,
    {original} AS original_text
  FROM read_parquet({_text(batch)}, file_row_number = true)
),
-- Each earlier case's latest decision: its last by decided_at (ties by batch_id).
latest AS (
  SELECT case_id, status, deductible_cents, coinsurance_cents
  FROM history_decisions
  QUALIFY row_number() OVER (PARTITION BY case_id ORDER BY decided_at DESC, batch_id DESC) = 1
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
    row_number() OVER (PARTITION BY case_id ORDER BY "row_number") AS case_id_seen,
    frequency IN ('7', '8') AS correcting,
    CASE WHEN frequency IN ('7', '8') THEN nullif(original_text, '') END AS original_case_id
  FROM src
),
screened AS (
  SELECT p.*, o.status AS original_status,
    p.case_id IN (SELECT case_id FROM latest) AS resubmitted
  FROM parsed p LEFT JOIN latest o ON o.case_id = p.original_case_id
),
-- Every rule of §1, §3 and §9 but "an earlier row already corrects this original".
screened_valid AS (
  SELECT *, coalesce(
    regexp_full_match(case_id, {_full(CASE_ID_PATTERN)})
    AND length(member_id) BETWEEN 1 AND 32
    AND length(provider_id) BETWEEN 1 AND 32
    AND received_date >= service_date
    AND regexp_full_match(procedure_code, {_full(PROCEDURE_CODE_PATTERN)})
    AND regexp_full_match(diagnosis_code, {_full(DIAGNOSIS_CODE_PATTERN)})
    AND units BETWEEN 1 AND 999
    AND billed_cents BETWEEN 1 AND {MAX_BILLED_CENTS}
    AND case_id_seen = 1
    AND frequency IN ('1', '7', '8')
    AND NOT resubmitted
    AND (NOT correcting OR (regexp_full_match(original_case_id, {_full(CASE_ID_PATTERN)})
      AND original_status IS NOT NULL AND original_status <> {_text(VOIDED)})), FALSE)
    AS valid_but_repeat
  FROM screened
),
checked AS (
  SELECT *, valid_but_repeat AND (NOT correcting OR row_number() OVER (
      PARTITION BY valid_but_repeat AND correcting, original_case_id ORDER BY "row_number"
    ) = 1) AS valid
  FROM screened_valid
),
-- §9: the originals the batch's valid corrections void, before anything is decided.
voiding AS (
  SELECT "row_number" AS voided_by_row, original_case_id AS case_id, case_id AS decided_by
  FROM checked WHERE valid AND correcting
),
-- Earlier cases once those are VOIDED: their keys and amounts no longer count.
live AS (
  SELECT l.*, c.* EXCLUDE (case_id)
  FROM latest l JOIN history_cases c USING (case_id)
  WHERE l.case_id NOT IN (SELECT case_id FROM voiding)
),
prior AS (
  SELECT * FROM live WHERE status IN ({_text(APPROVED)}, {_text(PENDED)})
),
accumulated AS (
  SELECT member_id, year(service_date) AS service_year,
    CAST(sum(deductible_cents) AS BIGINT) AS u0,
    CAST(sum(deductible_cents + coinsurance_cents) AS BIGINT) AS s0
  FROM live WHERE status = {_text(APPROVED)}
  GROUP BY ALL
),
cases AS (
  SELECT "row_number", case_id, member_id, provider_id, service_date, received_date,
    procedure_code, diagnosis_code, units, billed_cents,
    nullif(prior_auth_text, '') AS prior_auth_id
  FROM checked WHERE valid AND frequency <> '8'
),
first_start AS (
  SELECT member_id, min(coverage_start) AS first_coverage_start FROM members GROUP BY member_id
),
joined AS (
  SELECT c.*, f.first_coverage_start, s.coverage_start, s.coverage_end,
    s.deductible_cents, s.coinsurance_percent AS span_coinsurance,
    s.oop_max_cents AS span_oop_max,
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
  SELECT * EXCLUDE (coverage_start, coverage_end, deductible_cents, span_coinsurance,
      span_oop_max),
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
    CASE WHEN coverage_start IS NOT NULL
      AND (coverage_end IS NULL OR service_date <= coverage_end)
      THEN span_oop_max END AS oop_max_cents,
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
  SELECT *{duplicate_hits} FROM based b
),
decided AS (
  SELECT *, {_status(ruleset, list(ruleset.rules))} AS status,
    {_reason_codes(ruleset)} AS reason_codes
  FROM flagged
),
approved AS (
  SELECT "row_number", member_id, year(service_date) AS service_year, service_date,
    received_date, case_id,
    -- No terms (no covering span, under a rule set without the member rules): no
    -- deductible, no coinsurance, no maximum.
    coalesce(annual_deductible_cents, 0) AS d, coalesce(coinsurance_percent, 0) AS p,
    oop_max_cents AS m,
    least(billed_cents, fee_allowed_cents * units) AS allowed
  FROM decided WHERE status = {_text(APPROVED)}
),
marked AS (
  SELECT *, sum(CASE WHEN previous_d IS NULL OR d <> previous_d
      OR m IS DISTINCT FROM previous_m THEN 1 ELSE 0 END)
      OVER (PARTITION BY member_id, service_year ORDER BY {order}
            ROWS UNBOUNDED PRECEDING) AS run
  FROM (
    SELECT *, lag(d) OVER w AS previous_d, lag(m) OVER w AS previous_m
    FROM approved
    WINDOW w AS (PARTITION BY member_id, service_year ORDER BY {order})
  )
),
within AS (
  SELECT *, CAST(coalesce(sum(allowed) OVER (
      PARTITION BY member_id, service_year, run ORDER BY {order}
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS allowed_before
  FROM marked
),
-- The runs of a member-year one after the other: each run's cases priced from the
-- (used, spent) the run before it ended with (the first run's from nothing: no history).
priced_runs("row_number", member_id, service_year, run, service_date, received_date, case_id,
    u0, s0, allowed, used_before, spent_before, deductible, coinsurance) AS (
  {
        _price_run(
            "SELECT w.*, coalesce(a.u0, 0) AS u0, coalesce(a.s0, 0) AS s0 FROM within w"
            " LEFT JOIN accumulated a USING (member_id, service_year) WHERE run = 1",
            order,
        )
    }
  UNION ALL
  {
        _price_run(
            "SELECT w.*, e.u0, e.s0 FROM ("
            " SELECT member_id, service_year, run,"
            "  CAST(any_value(u0) + sum(deductible) AS BIGINT) AS u0,"
            "  CAST(any_value(s0) + sum(deductible + coinsurance) AS BIGINT) AS s0"
            " FROM priced_runs GROUP BY member_id, service_year, run) e"
            " JOIN within w ON w.member_id = e.member_id AND w.service_year = e.service_year"
            " AND w.run = e.run + 1",
            order,
        )
    }
),
amounts AS (
  SELECT "row_number", allowed, deductible, coinsurance, used_before, spent_before
  FROM priced_runs
)
SELECT * EXCLUDE (_phase, _order) FROM (
  SELECT 1 AS _phase, d."row_number" AS _order, d."row_number", d.case_id, d.status,
    d.reason_codes,
    CAST(coalesce(a.allowed, 0) AS BIGINT) AS allowed_cents,
    CAST(coalesce(a.deductible, 0) AS BIGINT) AS deductible_cents,
    CAST(coalesce(a.coinsurance, 0) AS BIGINT) AS coinsurance_cents,
    CAST(coalesce(a.allowed - a.deductible - a.coinsurance, 0) AS BIGINT) AS paid_cents,
    a.used_before AS deductible_used_before_cents,
    a.spent_before AS oop_spent_before_cents,
    {_text(ADJUDICATION)} AS decision_source, NULL::VARCHAR AS decided_by
  FROM decided d LEFT JOIN amounts a USING ("row_number")
  UNION ALL
  -- A void row is not adjudicated: VOIDED under its own case_id, by itself.
  SELECT 1, "row_number", "row_number", case_id, {_text(VOIDED)}, []::VARCHAR[], 0, 0, 0, 0,
    NULL::BIGINT, NULL::BIGINT, {_text(CORRECTION)}, case_id
  FROM checked WHERE valid AND frequency = '8'
  UNION ALL
  SELECT 0, voided_by_row, NULL::BIGINT, case_id, {_text(VOIDED)}, []::VARCHAR[], 0, 0, 0, 0,
    NULL::BIGINT, NULL::BIGINT, {_text(CORRECTION)}, decided_by
  FROM voiding
  UNION ALL
  SELECT 2, "row_number", "row_number", case_id, {_text(REJECTED)}, []::VARCHAR[], 0, 0, 0, 0,
    NULL::BIGINT, NULL::BIGINT, NULL::VARCHAR, NULL::VARCHAR
  FROM checked WHERE NOT valid
)
ORDER BY _phase = 0 DESC, _order
"""  # noqa: S608


def register_reference(con: duckdb.DuckDBPyConnection, reference: Reference) -> None:
    """The typed reference frames as the twin's tables (Arrow, no copy)."""
    con.register("members", reference.members.to_arrow())
    con.register("providers", reference.providers.to_arrow())
    con.register("fee_schedule", reference.fee_schedule.to_arrow())


@dataclass(frozen=True)
class TwinHistory:
    """What earlier batches recorded, as the event log holds it: every `decisions` row
    (adjudications, reviews, corrections) and every `cases` row, of the batches (and
    review files) recorded before the batch. Empty: a batch with no history."""

    decisions: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=TABLE_SCHEMAS["decisions"])
    )
    cases: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TABLE_SCHEMAS["cases"]))


def register_history(con: duckdb.DuckDBPyConnection, history: TwinHistory) -> None:
    con.register("history_decisions", history.decisions.to_arrow())
    con.register("history_cases", history.cases.drop("batch_id", "row_number").to_arrow())


def _query_for(batch: Path, ruleset: RuleSet) -> str:
    columns = pl.read_parquet_schema(batch)
    return twin_query(
        ruleset,
        str(batch),
        has_prior_auth="prior_auth_id" in columns,
        has_corrections="claim_frequency" in columns and "original_case_id" in columns,
    )


def _connect(
    reference: Reference, history: TwinHistory | None, threads: int | None
) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    register_reference(con, reference)
    register_history(con, history or TwinHistory())
    return con


def twin_decisions(
    batch: Path,
    reference: Reference,
    ruleset: RuleSet,
    *,
    history: TwinHistory | None = None,
    threads: int | None = None,
) -> pl.DataFrame:
    """Every decision of the batch, as the pipeline orders them (the VOIDED decisions
    of the originals it corrects, then its rows in file order), its rejected rows
    (status REJECTED) among its rows."""
    with _connect(reference, history, threads) as con:
        result: pl.DataFrame = con.sql(_query_for(batch, ruleset)).pl()
        return result


def write_twin_decisions(
    batch: Path,
    reference: Reference,
    ruleset: RuleSet,
    out: Path,
    *,
    history: TwinHistory | None = None,
    threads: int | None = None,
) -> int:
    """Run the twin and write its decisions to Parquet (the benchmark's measure)."""
    with _connect(reference, history, threads) as con:
        query = _query_for(batch, ruleset)
        con.execute(f"COPY ({query}) TO {_text(str(out))} (FORMAT parquet, COMPRESSION zstd)")
    return int(pl.scan_parquet(out).select(pl.len()).collect().item())
