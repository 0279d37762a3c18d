"""Rule conditions translated for the per-case peers, with SQL's three-valued logic.

A rule's `when` is compiled by Polars; its expression tree (serialised as JSON)
is translated here into (a) a GoRules ZEN expression and (b) a Python closure
over one case (a dict). Both keep SQL semantics exactly: a NULL operand makes a
comparison unknown, unknown does not fire, `TRUE OR unknown` fires. Each boolean
node is translated into two predicates, "is TRUE" and "is FALSE" (both false
when unknown), which ZEN's two-valued operators can then combine.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

import polars as pl

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
Scalar = Callable[[Row], Any]

_COMPARE: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "Eq": ("==", operator.eq),
    "NotEq": ("!=", operator.ne),
    "Lt": ("<", operator.lt),
    "LtEq": ("<=", operator.le),
    "Gt": (">", operator.gt),
    "GtEq": (">=", operator.ge),
}
_ARITHMETIC: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "Plus": ("+", operator.add),
    "Minus": ("-", operator.sub),
    "Multiply": ("*", operator.mul),
}


class Untranslatable(Exception):
    """A condition uses something these peers do not support."""


def tree(expr: pl.Expr) -> Any:
    return json.loads(expr.meta.serialize(format="json"))


def _strip_cast(node: Any) -> Any:
    while isinstance(node, dict) and "Cast" in node:
        node = node["Cast"]["expr"]
    return node


# --- ZEN expressions ----------------------------------------------------------------------


def zen_condition(expr: pl.Expr) -> str:
    """A ZEN expression that is true exactly when the SQL condition is TRUE."""
    is_true, _ = _zen_bool(tree(expr))
    return is_true


def _zen_bool(node: Any) -> tuple[str, str]:
    node = _strip_cast(node)
    if "Column" in node:
        name = node["Column"]
        return f"({name} == true)", f"({name} == false)"
    if "Literal" in node:
        value = _literal(node)
        if not isinstance(value, bool):
            raise Untranslatable(f"literal {value!r} used as a condition")
        return ("true", "false") if value else ("false", "true")
    if "Function" in node:
        function = node["Function"]["function"].get("Boolean")
        (argument,) = node["Function"]["input"]
        if function == "Not":
            is_true, is_false = _zen_bool(argument)
            return is_false, is_true
        if function in ("IsNull", "IsNotNull"):
            value, known = _zen_scalar(argument)
            null = f"({value} == null)" if not known else "false"
            not_null = f"({value} != null)" if not known else "true"
            return (null, not_null) if function == "IsNull" else (not_null, null)
        raise Untranslatable(f"function {node['Function']['function']}")
    if "BinaryExpr" in node:
        binary = node["BinaryExpr"]
        op = binary["op"]
        if op in ("And", "LogicalAnd"):
            (lt, lf), (rt, rf) = _zen_bool(binary["left"]), _zen_bool(binary["right"])
            return f"({lt} and {rt})", f"({lf} or {rf})"
        if op in ("Or", "LogicalOr"):
            (lt, lf), (rt, rf) = _zen_bool(binary["left"]), _zen_bool(binary["right"])
            return f"({lt} or {rt})", f"({lf} and {rf})"
        if op in _COMPARE:
            symbol = _COMPARE[op][0]
            left, left_known = _zen_scalar(binary["left"])
            right, right_known = _zen_scalar(binary["right"])
            guards = [f"{v} != null" for v, known in ((left, left_known), (right, right_known))]
            guard = " and ".join(
                g for g, known in zip(guards, (left_known, right_known), strict=True) if not known
            )
            compared = f"{left} {symbol} {right}"
            if not guard:
                return f"({compared})", f"(not ({compared}))"
            return f"({guard} and {compared})", f"({guard} and not ({compared}))"
    raise Untranslatable(f"expression node {sorted(node)}")


def _zen_scalar(node: Any) -> tuple[str, bool]:
    """ZEN text of a value, and whether it is known never to be null."""
    node = _strip_cast(node)
    if "Column" in node:
        return str(node["Column"]), False
    if "Literal" in node:
        return json.dumps(_literal(node)), True
    if "BinaryExpr" in node and node["BinaryExpr"]["op"] in _ARITHMETIC:
        binary = node["BinaryExpr"]
        left, left_known = _zen_scalar(binary["left"])
        right, right_known = _zen_scalar(binary["right"])
        symbol = _ARITHMETIC[binary["op"]][0]
        if not (left_known and right_known):
            raise Untranslatable("arithmetic on nullable columns")
        return f"({left} {symbol} {right})", True
    raise Untranslatable(f"value node {sorted(node)}")


def _literal(node: Any) -> Any:
    literal = node["Literal"]
    scalar = literal.get("Scalar") or literal.get("Dyn")
    if not isinstance(scalar, dict) or len(scalar) != 1:
        raise Untranslatable(f"literal {literal}")
    ((kind, value),) = scalar.items()
    if kind in ("Int", "Int32", "Int64", "Float", "Float64", "String", "Boolean"):
        return value
    raise Untranslatable(f"literal {literal}")


# --- Python closures (the row-at-a-time loop) ---------------------------------------------


def python_condition(expr: pl.Expr) -> Predicate:
    """A function of one case (dict) that is True exactly when the condition is TRUE."""
    is_true, _ = _py_bool(tree(expr))
    return is_true


def _py_bool(node: Any) -> tuple[Predicate, Predicate]:
    node = _strip_cast(node)
    if "Column" in node:
        name = node["Column"]
        return (lambda r: r[name] is True), (lambda r: r[name] is False)
    if "Function" in node:
        function = node["Function"]["function"].get("Boolean")
        (argument,) = node["Function"]["input"]
        if function == "Not":
            is_true, is_false = _py_bool(argument)
            return is_false, is_true
        if function in ("IsNull", "IsNotNull"):
            value = _py_scalar(argument)
            null: Predicate = lambda r: value(r) is None  # noqa: E731
            not_null: Predicate = lambda r: value(r) is not None  # noqa: E731
            return (null, not_null) if function == "IsNull" else (not_null, null)
    if "BinaryExpr" in node:
        binary = node["BinaryExpr"]
        op = binary["op"]
        if op in ("And", "LogicalAnd", "Or", "LogicalOr"):
            (lt, lf), (rt, rf) = _py_bool(binary["left"]), _py_bool(binary["right"])
            if op in ("And", "LogicalAnd"):
                return (lambda r: lt(r) and rt(r)), (lambda r: lf(r) or rf(r))
            return (lambda r: lt(r) or rt(r)), (lambda r: lf(r) and rf(r))
        if op in _COMPARE:
            compare = _COMPARE[op][1]
            left, right = _py_scalar(binary["left"]), _py_scalar(binary["right"])

            def known(r: Row) -> tuple[Any, Any] | None:
                a, b = left(r), right(r)
                return None if a is None or b is None else (a, b)

            def is_true(r: Row) -> bool:
                pair = known(r)
                return pair is not None and bool(compare(*pair))

            def is_false(r: Row) -> bool:
                pair = known(r)
                return pair is not None and not compare(*pair)

            return is_true, is_false
    if "Literal" in node:
        value = _literal(node)
        return (lambda r: value is True), (lambda r: value is False)
    raise Untranslatable(f"expression node {sorted(node)}")


def _py_scalar(node: Any) -> Scalar:
    node = _strip_cast(node)
    if "Column" in node:
        name = node["Column"]
        return lambda r: r[name]
    if "Literal" in node:
        value = _literal(node)
        return lambda r: value
    if "BinaryExpr" in node and node["BinaryExpr"]["op"] in _ARITHMETIC:
        binary = node["BinaryExpr"]
        apply = _ARITHMETIC[binary["op"]][1]
        left, right = _py_scalar(binary["left"]), _py_scalar(binary["right"])

        def value(r: Row) -> Any:
            a, b = left(r), right(r)
            return None if a is None or b is None else apply(a, b)

        return value
    raise Untranslatable(f"value node {sorted(node)}")
