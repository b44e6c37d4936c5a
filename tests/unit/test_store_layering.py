"""Imports point one way (design.md): the store never imports the application side or the
server, and the application states depend on nothing but the error tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dynamo.core.appstate import AppState, check_transition
from dynamo.errors import DynamoError, TransitionError

DYNAMO = Path(__file__).resolve().parents[2] / "dynamo"


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((DYNAMO / "store").glob("*.py")), ids=lambda p: p.name)
def test_the_store_imports_neither_applications_nor_server(path: Path) -> None:
    bad = {n for n in imported(path) if n.split(".")[:2] in (["dynamo", "apps"], ["dynamo", "server"],
                                                             ["dynamo", "appserver"], ["dynamo", "cli"])}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_application_states_depend_on_the_error_tree_only() -> None:
    assert {n for n in imported(DYNAMO / "core" / "appstate.py") if n.startswith("dynamo")} == {"dynamo.errors"}
    assert not (DYNAMO / "apps" / "states.py").exists()  # no second home for them


def test_a_refused_transition_is_a_dynamo_error() -> None:
    check_transition(AppState.QUEUED, AppState.RUNNING)
    with pytest.raises(TransitionError, match="from done to running") as raised:
        check_transition(AppState.DONE, AppState.RUNNING)
    assert isinstance(raised.value, DynamoError)
