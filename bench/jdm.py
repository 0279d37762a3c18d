"""The rule set as a GoRules JSON Decision Model: one decision table, hit policy collect.

Each expression rule is a row whose condition is the rule's `when`, translated
(bench/conditions.py); outputs are the reason code and the outcome. A stateful
rule (kind `duplicate`) cannot be a row of a per-case table: its result is
handed to the decision as an input (`duplicate_claim` style field) computed by
the pipeline, and the table only reads it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from bench.conditions import zen_condition
from claimsflow.core.decide import BatchDecision
from claimsflow.core.reference import Reference
from claimsflow.core.rules.context import CONTEXT_SCHEMA, adjudication_context
from claimsflow.core.rules.ruleset import RuleSet


def _input_name(rule_id: str) -> str:
    return "fired_" + rule_id.replace("-", "_")


def rule_table(ruleset: RuleSet) -> tuple[dict[str, Any], list[str]]:
    """The JDM graph, and the ids of the rules given to it as inputs."""
    rows = []
    given = []
    for number, rule in enumerate(ruleset.rules, start=1):
        if rule.condition is not None:
            condition = zen_condition(rule.condition)
        else:
            given.append(rule.id)
            condition = f"{_input_name(rule.id)} == true"
        rows.append(
            {
                "_id": f"r{number}",
                "condition": condition,
                "code": f'"{rule.reason_code}"',
                "outcome": f'"{rule.outcome}"',
            }
        )
    hit_policy = "first" if ruleset.hit_policy == "first" else "collect"
    table = {
        "contentType": "application/vnd.gorules.decision",
        "nodes": [
            {"id": "request", "type": "inputNode", "name": "Case", "position": {"x": 0, "y": 0}},
            {
                "id": "rules",
                "type": "decisionTableNode",
                "name": ruleset.label,
                "position": {"x": 200, "y": 0},
                "content": {
                    "hitPolicy": hit_policy,
                    "inputs": [
                        {"id": "condition", "name": "Condition", "type": "expression", "field": ""}
                    ],
                    "outputs": [
                        {"id": "code", "name": "Code", "type": "expression", "field": "code"},
                        {
                            "id": "outcome",
                            "name": "Outcome",
                            "type": "expression",
                            "field": "outcome",
                        },
                    ],
                    "rules": rows,
                },
            },
            {
                "id": "response",
                "type": "outputNode",
                "name": "Decision",
                "position": {"x": 400, "y": 0},
            },
        ],
        "edges": [
            {"id": "e1", "type": "edge", "sourceId": "request", "targetId": "rules"},
            {"id": "e2", "type": "edge", "sourceId": "rules", "targetId": "response"},
        ],
    }
    return table, given


def jdm_inputs(
    decision: BatchDecision, reference: Reference, given: list[str]
) -> list[dict[str, Any]]:
    """One input document per decided case, in the order of its decisions (a batch
    without corrections: its cases' order): its rule context (dates as day numbers)
    and the results of the rules given as inputs. The decisions carry what a decision
    records, not the context: it is built again from the cases."""
    epoch = dt.date(1970, 1, 1)
    dates = [c for c, t in CONTEXT_SCHEMA.items() if t == pl.Date()]
    frame = adjudication_context(decision.cases, reference).select(
        *[
            ((pl.col(c) - pl.lit(epoch)).dt.total_days() if c in dates else pl.col(c)).alias(c)
            for c in CONTEXT_SCHEMA
        ],
        *[
            pl.col("case_id")
            .is_in(decision.rule_hits.filter(pl.col("rule_id") == rule_id)["case_id"].implode())
            .alias(_input_name(rule_id))
            for rule_id in given
        ],
    )
    return frame.to_dicts()
