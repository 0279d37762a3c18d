"""Imports run one way (docs/architecture.md, "Layers"): each layer imports only the
layers below it, and nothing below `tasks/` imports Prefect.

Every import statement of the shipped code is read (module level and inside
functions), so a lazy import cannot break the layering unnoticed either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

# Bottom up. A layer may import its own modules and any layer of a lower rank.
RANK = {
    "schemas": 0,
    "claimsflow": 0,  # vocabulary, text, settings, faults
    "claimsflow.core": 1,
    "claimsflow.x12": 1,  # the X12 formats: pure text <-> frames, nothing else of ours
    "claimsflow.lake": 2,
    "claimsflow.ingest": 3,
    "claimsflow.pipeline": 4,
    "claimsflow.analysis": 5,
    "claimsflow.ops": 5,
    "claimsflow.tools": 5,
    "tasks": 6,
    "flows": 7,
    "adjudicate": 8,
}
# Same rank, different layers: allowed only where listed (none today).
SIDEWAYS: set[tuple[str, str]] = set()
# Layers that must not import Prefect (or Dask): the decision core, the lake, the
# operations code and everything else below the Prefect tasks.
NO_PREFECT = {layer for layer, rank in RANK.items() if rank < RANK["tasks"]}
OURS = ("schemas", "claimsflow", "tasks", "flows", "adjudicate")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "claimsflow" and len(parts) > 1 and f"claimsflow.{parts[1]}" in RANK:
        return f"claimsflow.{parts[1]}"
    return parts[0]


def shipped_modules() -> Iterator[tuple[str, Path]]:
    for package in OURS:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            yield ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts), path


def imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


MODULES = list(shipped_modules())


def test_every_layer_is_known() -> None:
    assert {layer_of(m) for m, _ in MODULES} == set(RANK)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_one_way(module: str, path: Path) -> None:
    mine = layer_of(module)
    wrong = []
    for imported in imports_of(path):
        if imported.split(".")[0] not in OURS:
            continue
        theirs = layer_of(imported)
        if theirs == mine or (mine, theirs) in SIDEWAYS:
            continue
        if RANK[theirs] >= RANK[mine]:
            wrong.append(f"{module} ({mine}) imports {imported} ({theirs})")
    assert wrong == []


@pytest.mark.parametrize(
    ("module", "path"),
    [(m, p) for m, p in MODULES if layer_of(m) in NO_PREFECT],
    ids=[m for m, _ in MODULES if layer_of(m) in NO_PREFECT],
)
def test_nothing_below_the_tasks_imports_prefect(module: str, path: Path) -> None:
    found = [i for i in imports_of(path) if i.split(".")[0] in ("prefect", "prefect_dask")]
    assert found == [], f"{module} imports {found}"


def test_the_layers_hold_on_a_known_wrong_import(tmp_path: Path) -> None:
    """The check itself can fail: a core module importing the lake is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from claimsflow.lake import eventlog\n", encoding="utf-8")
    imported = next(imports_of(bad))
    assert RANK[layer_of(imported)] > RANK[layer_of("claimsflow.core.pricing")]
