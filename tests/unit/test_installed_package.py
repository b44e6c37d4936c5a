"""The package the tests import is the one `pip install .` makes, and it holds the whole tree."""

from __future__ import annotations

import sys
from pathlib import Path

import dynamo
from dynamo.store.sql import schema_path

ROOT = Path(__file__).resolve().parents[2]


def _files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_dynamo_is_imported_from_the_installed_package() -> None:
    installed = Path(dynamo.__file__).resolve().parent
    assert installed != ROOT / "dynamo"
    assert installed.is_relative_to(Path(sys.prefix).resolve()), (installed, sys.prefix)


def test_the_installed_package_has_every_file_of_the_source_tree() -> None:
    missing = _files(ROOT / "dynamo") - _files(Path(dynamo.__file__).resolve().parent)
    assert not missing, f"left out of the installed package (an __init__.py or package data missing?): {missing}"


def test_the_schema_comes_from_the_installation() -> None:
    for ddl in sorted((ROOT / "schema").glob("*.sql")):
        installed = schema_path(ddl.name)
        assert installed == Path(sys.prefix) / "share" / "dynamo" / "schema" / ddl.name
        assert installed.read_text() == ddl.read_text()
