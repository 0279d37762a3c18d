"""Rule-set files: loading errors, version selection, v1 vs v2, hit policy `first`."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimsflow.core.reference import Reference
from claimsflow.core.rules.ruleset import (
    RuleSet,
    RuleSetError,
    load_ruleset,
    load_rulesets,
    select_ruleset,
)
from claimsflow.settings import RULES_DIR
from tests.spec_helpers import (
    V1_FILE,
    Fee,
    Provider,
    Span,
    amounts,
    case,
    decide,
    ruleset_v1,
    ruleset_v2,
    verdicts,
    write_reference,
)

SPEC_CODES = [
    "CO-31",
    "CO-26",
    "CO-27",
    "CO-B7",
    "CO-242",
    "CO-29",
    "CO-96",
    "CO-197",
    "CO-151",
    "CO-18",
    "P-HIGH-DOLLAR",
]

Document = dict[str, Any]


def v1_document() -> Document:
    document = yaml.safe_load(V1_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def rule_of(document: Document, rule_id: str) -> dict[str, Any]:
    matches = [r for r in document["rules"] if r["id"] == rule_id]
    assert len(matches) == 1
    rule: dict[str, Any] = matches[0]
    return rule


def write_rules(directory: Path, document: Document, name: str = "rules.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return write_reference(
        tmp_path_factory.mktemp("reference"),
        members=[Span(f"M{i}", "2024-01-01") for i in range(1, 10)],
        providers=[Provider("P1"), Provider("POUT", in_network=False)],
        fees=[Fee("99213", "20000.00"), Fee("J1100", "20000.00", prior_auth=True)],
    )


# --- the real files ---------------------------------------------------------------


def test_v1_file_has_the_spec_table_in_order() -> None:
    v1 = ruleset_v1()
    assert (v1.name, v1.version, v1.hit_policy) == ("claims-standard", "1", "collect")
    assert v1.draft is False
    assert [r.reason_code for r in v1.rules] == SPEC_CODES
    assert [r.outcome for r in v1.rules] == ["DENY"] * 10 + ["PEND"]
    timely = next(r for r in v1.rules if r.reason_code == "CO-29")
    assert timely.when == "days_to_receive > 365"  # parameter substituted


def test_v2_differs_from_v1_only_in_the_threshold() -> None:
    v1, v2 = ruleset_v1(), ruleset_v2()
    assert v2.draft is True
    assert v2.parameters == {**v1.parameters, "high_dollar_threshold_cents": 500000}
    assert v1.parameters["high_dollar_threshold_cents"] == 1000000
    assert [r.reason_code for r in v2.rules] == SPEC_CODES
    assert v1.parameters_hash != v2.parameters_hash


# --- loading errors -----------------------------------------------------------------

Mutation = Callable[[Document], None]


def _set(rule_id: str, **fields: Any) -> Mutation:
    def mutate(document: Document) -> None:
        rule_of(document, rule_id).update(fields)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "rule_id", "field", "detail"),
    [
        pytest.param(
            _set("timely-filing", when="days_to_recieve > 365"),
            "timely-filing",
            "when",
            "days_to_recieve",
            id="unknown-column-in-when",
        ),
        pytest.param(
            _set("high-dollar", kind="lookup"), "high-dollar", "kind", "lookup", id="unknown-kind"
        ),
        pytest.param(
            _set("high-dollar", when="billed_cents +"),
            "high-dollar",
            "when",
            "bad expression",
            id="bad-sql-expression",
        ),
        pytest.param(
            _set("high-dollar", when="billed_cents > 5 AND nosuch(1)"),
            "high-dollar",
            "when",
            "bad expression",
            id="unknown-sql-function",
        ),
        pytest.param(
            _set("high-dollar", when="provider_status > 3"),
            "high-dollar",
            "when",
            "bad expression",
            id="type-error-in-when",
        ),
        pytest.param(
            _set("out-of-network", id="provider-ineligible"),
            "provider-ineligible",
            "id",
            "duplicate",
            id="duplicate-rule-id",
        ),
        pytest.param(
            _set("high-dollar", when="billed_cents > ${high_dollar_limit}"),
            "high-dollar",
            "when",
            "high_dollar_limit",
            id="unknown-parameter",
        ),
        pytest.param(
            _set("member-unknown", outcome="REJECT"),
            "member-unknown",
            "outcome",
            "DENY or PEND",
            id="bad-outcome",
        ),
        pytest.param(
            _set("high-dollar", when="billed_cents + 1"),
            "high-dollar",
            "when",
            "condition",
            id="non-boolean-condition",
        ),
        pytest.param(
            _set("high-dollar", when="provider_status"),
            "high-dollar",
            "when",
            "condition",
            id="text-condition",
        ),
        pytest.param(
            _set("duplicate-claim", key=["member_id", "provider"]),
            "duplicate-claim",
            "key",
            "provider",
            id="unknown-column-in-duplicate-key",
        ),
        pytest.param(
            _set("high-dollar", reason_code=""),
            "high-dollar",
            "reason_code",
            "",
            id="empty-reason-code",
        ),
    ],
)
def test_loading_error_names_file_rule_and_field(
    tmp_path: Path, mutate: Mutation, rule_id: str, field: str, detail: str
) -> None:
    document = v1_document()
    mutate(document)
    path = write_rules(tmp_path, document, "broken-rules.yaml")
    with pytest.raises(RuleSetError) as info:
        load_ruleset(path)
    message = str(info.value)
    assert str(path) in message
    assert f"rule {rule_id}" in message
    assert f"field {field}" in message
    assert detail in message


def test_unknown_hit_policy_names_file_and_field(tmp_path: Path) -> None:
    document = v1_document()
    document["hit_policy"] = "majority"
    path = write_rules(tmp_path, document)
    with pytest.raises(RuleSetError, match="field hit_policy") as info:
        load_ruleset(path)
    assert str(path) in str(info.value)


def test_not_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(RuleSetError) as info:
        load_ruleset(path)
    assert str(path) in str(info.value)


# --- version selection ------------------------------------------------------------------


def test_selection_by_run_date_never_picks_the_draft() -> None:
    rulesets = load_rulesets(RULES_DIR)
    assert [(r.version, r.draft) for r in rulesets] == [("1", False), ("2", True)]
    assert select_ruleset(rulesets, dt.date(2024, 6, 1)).version == "1"
    assert select_ruleset(rulesets, dt.date(2020, 1, 1)).version == "1"  # effective day
    # v2's effective_from has passed but it is a draft: still v1.
    assert select_ruleset(rulesets, dt.date(2027, 1, 1)).version == "1"
    assert select_ruleset(rulesets, dt.date(2031, 1, 1)).version == "1"


def test_selection_before_any_rule_set_is_in_effect_fails() -> None:
    rulesets = load_rulesets(RULES_DIR)
    with pytest.raises(RuleSetError, match="2019-12-31"):
        select_ruleset(rulesets, dt.date(2019, 12, 31))


def test_explicit_version_selects_even_a_draft() -> None:
    rulesets = load_rulesets(RULES_DIR)
    assert select_ruleset(rulesets, dt.date(2024, 6, 1), "2").version == "2"
    assert select_ruleset(rulesets, dt.date(2024, 6, 1), "1").version == "1"
    assert select_ruleset(rulesets, dt.date(2024, 6, 1), "claims-standard v2").version == "2"


def test_unknown_explicit_version_fails_naming_it() -> None:
    rulesets = load_rulesets(RULES_DIR)
    with pytest.raises(RuleSetError, match="'7'"):
        select_ruleset(rulesets, dt.date(2024, 6, 1), "7")


def test_non_draft_successor_takes_over_on_its_effective_date(tmp_path: Path) -> None:
    v1 = v1_document()
    v2 = copy.deepcopy(v1)
    v2["version"] = "2"
    v2["effective_from"] = dt.date(2027, 1, 1)
    write_rules(tmp_path, v1, "a-v1.yaml")
    write_rules(tmp_path, v2, "b-v2.yaml")
    rulesets = load_rulesets(tmp_path)
    assert select_ruleset(rulesets, dt.date(2026, 12, 31)).version == "1"
    assert select_ruleset(rulesets, dt.date(2027, 1, 1)).version == "2"


def test_same_version_in_two_files_fails(tmp_path: Path) -> None:
    write_rules(tmp_path, v1_document(), "a.yaml")
    second = write_rules(tmp_path, v1_document(), "b.yaml")
    with pytest.raises(RuleSetError, match="field version") as info:
        load_rulesets(tmp_path)
    assert str(second) in str(info.value)


def test_empty_rules_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError):
        load_rulesets(tmp_path)


# --- v1 versus v2 -----------------------------------------------------------------------


def test_v2_pends_only_cases_billed_between_5000_01_and_10000_00(reference: Reference) -> None:
    # One member per case (deductible 0) so no case affects another's amounts.
    rows = [
        case("B4999", member="M1", billed="4999.99"),
        case("B5000", member="M2", billed="5000.00"),
        case("B5001", member="M3", billed="5000.01"),
        case("B7500", member="M4", billed="7500.00"),
        case("B10000", member="M5", billed="10000.00"),
        case("B10001", member="M6", billed="10000.01"),
        # Denied in range: stays DENIED (the PEND code joins the list under v2).
        case("OUT", member="M7", provider="POUT", billed="6000.00"),
        # A duplicate pair in range: the original is pended under v2, so the twin
        # is still a duplicate (base outcome PENDED is not DENIED).
        case("DUP1", member="M8", billed="6000.00", received="2024-03-02"),
        case("DUP2", member="M8", billed="6000.00", received="2024-03-03"),
        # Denied first twin in range: the second is the original in both versions.
        case("NA1", member="M9", procedure="J1100", billed="6000.00", received="2024-03-02"),
        case("NA2", member="M9", procedure="J1100", billed="6000.00", received="2024-03-03",
             auth="PA"),
    ]  # fmt: skip
    under_v1 = decide(rows, reference, ruleset_v1())
    under_v2 = decide(rows, reference, ruleset_v2())
    hd = "P-HIGH-DOLLAR"
    assert verdicts(under_v1) == {
        "B4999": ("APPROVED", []),
        "B5000": ("APPROVED", []),
        "B5001": ("APPROVED", []),
        "B7500": ("APPROVED", []),
        "B10000": ("APPROVED", []),
        "B10001": ("PENDED", [hd]),
        "OUT": ("DENIED", ["CO-242"]),
        "DUP1": ("APPROVED", []),
        "DUP2": ("DENIED", ["CO-18"]),
        "NA1": ("DENIED", ["CO-197"]),
        "NA2": ("APPROVED", []),
    }
    assert verdicts(under_v2) == {
        "B4999": ("APPROVED", []),
        "B5000": ("APPROVED", []),
        "B5001": ("PENDED", [hd]),
        "B7500": ("PENDED", [hd]),
        "B10000": ("PENDED", [hd]),
        "B10001": ("PENDED", [hd]),
        "OUT": ("DENIED", ["CO-242", hd]),
        "DUP1": ("PENDED", [hd]),
        "DUP2": ("DENIED", ["CO-18", hd]),
        "NA1": ("DENIED", ["CO-197", hd]),
        "NA2": ("PENDED", [hd]),
    }
    status_1 = {k: v[0] for k, v in verdicts(under_v1).items()}
    status_2 = {k: v[0] for k, v in verdicts(under_v2).items()}
    changed = {k for k in status_1 if status_1[k] != status_2[k]}
    assert changed == {"B5001", "B7500", "B10000", "DUP1", "NA2"}
    assert all(status_1[k] == "APPROVED" and status_2[k] == "PENDED" for k in changed)
    billed = {row["case_id"]: row["billed_amount"] for row in rows}
    assert all(Decimal("5000.01") <= Decimal(billed[k]) <= Decimal("10000.00") for k in changed)
    # Unchanged cases keep their amounts; newly pended ones carry zeros.
    money_1, money_2 = amounts(under_v1), amounts(under_v2)
    assert money_1["B5001"] == (500001, 0, 0, 500001)
    for k in status_1:
        assert money_2[k] == ((0, 0, 0, 0) if k in changed else money_1[k])


# --- hit policy `first` ------------------------------------------------------------------


def _first_policy(tmp_path: Path, document: Document) -> RuleSet:
    document["hit_policy"] = "first"
    return load_ruleset(write_rules(tmp_path, document, "first.yaml"))


def test_hit_policy_first_gives_only_the_first_hit(reference: Reference, tmp_path: Path) -> None:
    ruleset = _first_policy(tmp_path, v1_document())
    rows = [
        case("MANY", member="MX", provider="POUT", procedure="99999", billed="12000.00"),
        case("OUT_HD", member="M1", provider="POUT", billed="12000.00"),
        case("HD", member="M2", billed="12000.00"),
        case("OK", member="M3"),
    ]
    decision = decide(rows, reference, ruleset)
    assert verdicts(decision) == {
        "MANY": ("DENIED", ["CO-31"]),
        "OUT_HD": ("DENIED", ["CO-242"]),
        "HD": ("PENDED", ["P-HIGH-DOLLAR"]),
        "OK": ("APPROVED", []),
    }


def test_hit_policy_first_status_follows_the_first_hit(
    reference: Reference, tmp_path: Path
) -> None:
    # Move the PEND rule to the front: it now decides a case that also is out of network.
    document = v1_document()
    high = rule_of(document, "high-dollar")
    document["rules"] = [high, *[r for r in document["rules"] if r is not high]]
    ruleset = _first_policy(tmp_path, document)
    rows = [
        case("OUT_HD", member="M1", provider="POUT", billed="12000.00"),
        case("OUT", member="M2", provider="POUT", billed="100.00"),
    ]
    assert verdicts(decide(rows, reference, ruleset)) == {
        "OUT_HD": ("PENDED", ["P-HIGH-DOLLAR"]),
        "OUT": ("DENIED", ["CO-242"]),
    }
