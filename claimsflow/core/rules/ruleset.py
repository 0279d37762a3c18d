"""Rule-set files: loading, validation and compilation to Polars expressions.

A rule set is one YAML file in `rules/` (see docs/rules.md). Conditions are SQL
expressions over the adjudication context, compiled once by `pl.sql_expr`;
stateful checks are named built-in kinds. Any problem stops the run before
anything is written, with an error naming the file, the rule and the field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml

from claimsflow.core.rules.context import CASE_PAYLOAD_COLUMNS, CONTEXT_SCHEMA
from claimsflow.text import first_line

Outcome = Literal["DENY", "PEND"]
HitPolicy = Literal["collect", "first"]
OUTCOMES: tuple[str, ...] = ("DENY", "PEND")
HIT_POLICIES: tuple[str, ...] = ("collect", "first")
RULE_KINDS: tuple[str, ...] = ("expression", "duplicate")
_PARAMETER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_REASON_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class RuleSetError(Exception):
    """A rule set that cannot be used; the message names file, rule and field."""


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    kind: str
    outcome: Outcome
    reason_code: str
    condition: pl.Expr | None = None  # kind "expression"
    when: str | None = None  # the condition as written, parameters substituted
    key: tuple[str, ...] = ()  # kind "duplicate"
    order_by: tuple[str, ...] = ()  # kind "duplicate"


@dataclass(frozen=True)
class RuleSet:
    name: str
    version: str
    effective_from: dt.date
    description: str
    hit_policy: HitPolicy
    parameters: dict[str, Any]
    rules: tuple[Rule, ...]
    source: Path
    draft: bool = False
    parameters_hash: str = field(default="")

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def load_ruleset(path: Path) -> RuleSet:
    """Load, validate and compile one rule-set file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleSetError(f"{path}: cannot be read as YAML: {first_line(exc)}") from exc
    if not isinstance(document, dict):
        raise RuleSetError(f"{path}: a rule set must be a mapping with name, version and rules")
    where = _Where(path)
    name = _required_text(document, "name", where)
    version = _required_text(document, "version", where)
    effective_from = document.get("effective_from")
    if not isinstance(effective_from, dt.date):
        raise RuleSetError(f"{path}: field effective_from: must be a date YYYY-MM-DD")
    hit_policy = document.get("hit_policy", "collect")
    if hit_policy not in HIT_POLICIES:
        raise RuleSetError(f"{path}: field hit_policy: must be one of {', '.join(HIT_POLICIES)}")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RuleSetError(f"{path}: field parameters: must be a mapping of name to value")
    raw_rules = document.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleSetError(f"{path}: field rules: must be a non-empty list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, start=1):
        rule = _compile_rule(raw, index, parameters, where)
        if rule.id in seen:
            raise RuleSetError(f"{path}: rule {rule.id}, field id: duplicate rule id")
        seen.add(rule.id)
        rules.append(rule)
    canonical = json.dumps(parameters, sort_keys=True, default=str)
    return RuleSet(
        name=name,
        version=version,
        effective_from=effective_from,
        description=" ".join(str(document.get("description", "")).split()),
        hit_policy=hit_policy,
        parameters=parameters,
        rules=tuple(rules),
        source=path,
        draft=bool(document.get("draft", False)),
        parameters_hash=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def load_rulesets(directory: Path) -> list[RuleSet]:
    """Every rule set in a folder, oldest effective_from first."""
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise RuleSetError(f"{directory}: no rule-set files (*.yaml) found")
    rulesets = [load_ruleset(p) for p in files]
    versions: dict[tuple[str, str], Path] = {}
    for ruleset in rulesets:
        key = (ruleset.name, ruleset.version)
        if key in versions:
            raise RuleSetError(
                f"{ruleset.source}: field version: {ruleset.label} is also defined in "
                f"{versions[key]}"
            )
        versions[key] = ruleset.source
    return sorted(rulesets, key=lambda r: (r.effective_from, r.version))


def select_ruleset(
    rulesets: list[RuleSet], run_date: dt.date, version: str | None = None
) -> RuleSet:
    """The rule set asked for by version, else the one in effect on `run_date`.

    Drafts are never selected by date: they exist to be tried (what-if, --ruleset).
    """
    if version is not None:
        matches = [r for r in rulesets if r.version == version or r.label == version]
        if not matches:
            known = ", ".join(r.version for r in rulesets)
            raise RuleSetError(f"no rule set has version {version!r} (known: {known})")
        return matches[-1]
    in_effect = [r for r in rulesets if not r.draft and r.effective_from <= run_date]
    if not in_effect:
        raise RuleSetError(f"no rule set is in effect on {run_date.isoformat()}")
    return in_effect[-1]


@dataclass(frozen=True)
class _Where:
    path: Path

    def error(self, rule: str, field_name: str, problem: str) -> RuleSetError:
        return RuleSetError(f"{self.path}: rule {rule}, field {field_name}: {problem}")


def _compile_rule(raw: Any, index: int, parameters: dict[str, Any], where: _Where) -> Rule:
    if not isinstance(raw, dict):
        raise where.error(f"#{index}", "rules", "each rule must be a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise where.error(f"#{index}", "id", "must be lower-case letters, digits and dashes")
    kind = raw.get("kind", "expression")
    if kind not in RULE_KINDS:
        raise where.error(
            rule_id, "kind", f"unknown kind {kind!r} (known: {', '.join(RULE_KINDS)})"
        )
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        raise where.error(rule_id, "outcome", "must be DENY or PEND")
    reason_code = raw.get("reason_code")
    if not isinstance(reason_code, str) or not _REASON_CODE.match(reason_code):
        raise where.error(rule_id, "reason_code", "must be letters, digits and dashes (e.g. CO-29)")
    common: dict[str, Any] = {
        "id": rule_id,
        "description": " ".join(str(raw.get("description", "")).split()),
        "kind": kind,
        "outcome": outcome,
        "reason_code": reason_code,
    }
    if kind == "duplicate":
        key = _column_list(raw, "key", rule_id, where)
        if "case_id" in key or not set(key) <= set(CASE_PAYLOAD_COLUMNS):
            raise where.error(rule_id, "key", "must name received case columns other than case_id")
        order_by = _column_list(raw, "order_by", rule_id, where)
        return Rule(**common, key=key, order_by=order_by)
    when = raw.get("when")
    if not isinstance(when, str) or not when.strip():
        raise where.error(rule_id, "when", "must be a SQL condition")
    text = _substitute(when, parameters, rule_id, where)
    return Rule(**common, condition=_compile_condition(text, rule_id, where), when=text)


def _column_list(raw: dict[str, Any], name: str, rule_id: str, where: _Where) -> tuple[str, ...]:
    value = raw.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise where.error(rule_id, name, "must be a non-empty list of column names")
    unknown = [v for v in value if v not in CONTEXT_SCHEMA]
    if unknown:
        raise where.error(rule_id, name, f"unknown column {unknown[0]!r}")
    return tuple(value)


def _substitute(text: str, parameters: dict[str, Any], rule_id: str, where: _Where) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in parameters:
            raise where.error(rule_id, "when", f"unknown parameter ${{{name}}}")
        parameter = parameters[name]
        if isinstance(parameter, bool) or not isinstance(parameter, int | str | dt.date):
            raise where.error(rule_id, "when", f"parameter {name} must be an integer, text or date")
        if isinstance(parameter, int):
            return str(parameter)
        return "'" + str(parameter).replace("'", "''") + "'"

    return _PARAMETER.sub(value, text)


def _compile_condition(text: str, rule_id: str, where: _Where) -> pl.Expr:
    try:
        expr = pl.sql_expr(text)
    except Exception as exc:
        raise where.error(rule_id, "when", f"bad expression: {first_line(exc)}") from exc
    unknown = sorted(set(expr.meta.root_names()) - set(CONTEXT_SCHEMA))
    if unknown:
        raise where.error(rule_id, "when", f"unknown column {unknown[0]!r}")
    # Type-check on an empty context frame: a comparison of a date with a number,
    # say, fails here rather than in the middle of a night's run.
    try:
        result = pl.DataFrame(schema=CONTEXT_SCHEMA).select(expr.alias("hit"))
    except Exception as exc:
        raise where.error(rule_id, "when", f"bad expression: {first_line(exc)}") from exc
    if result.schema["hit"] != pl.Boolean:
        raise where.error(
            rule_id, "when", f"must be a condition (true/false), not {result.schema['hit']}"
        )
    return expr


def _required_text(document: dict[str, Any], name: str, where: _Where) -> str:
    value = document.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise RuleSetError(f"{where.path}: field {name}: required text")
    return value
