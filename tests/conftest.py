"""Shared fixtures.

MariaDB: tests marked ``mysql`` use the server at ``$DYNAMO_TEST_MYSQL``
(default ``mysql://root@127.0.0.1:3306``); each test gets a database of its
own, dropped afterwards. Without a reachable server those tests are skipped
with a loud reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dynamo

# The suite tests Dynamo as `pip install .` installs it: a module left out of the package must
# fail here, which an import from this checkout (an editable install, `python -m pytest`, the
# default `prepend` import mode) would hide. tests/run installs it and runs pytest so.
SOURCE = Path(__file__).resolve().parents[1] / "dynamo"
if Path(dynamo.__file__).resolve().parent == SOURCE:
    raise pytest.UsageError(f"dynamo is imported from the checkout ({SOURCE}), not from the installed package: "
                            f"run ./tests/run (pip install . into .venv, then .venv/bin/pytest)")

from dynamo.store import InventoryStore, open_store  # noqa: E402

MYSQL_SERVER = os.environ.get("DYNAMO_TEST_MYSQL", "mysql://root@127.0.0.1:3306").rstrip("/")
_counter = itertools.count()
_mysql_skips: list[str] = []


def _mysql_problem() -> str | None:
    import pymysql

    from dynamo.store.mysql import parse_mysql_url

    params = parse_mysql_url(MYSQL_SERVER + "/probe")
    params.pop("database")
    try:
        pymysql.connect(**params, connect_timeout=3).close()
    except (pymysql.err.Error, OSError) as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def mysql_server() -> str:
    problem = _mysql_problem()
    if problem is not None:
        reason = f"MariaDB at {MYSQL_SERVER} is not reachable ({problem}); set DYNAMO_TEST_MYSQL"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: a MariaDB test cannot be skipped: {reason}")
        _mysql_skips.append(reason)
        pytest.skip(f"!!! SKIPPED, NOT TESTED: {reason}")
    return MYSQL_SERVER


def drop_mysql_database(url: str) -> None:
    import pymysql

    from dynamo.store.mysql import parse_mysql_url

    params = parse_mysql_url(url)
    database = params.pop("database")
    conn = pymysql.connect(**params)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    from dynamo.store.mysql import MySQLStore

    url = f"{mysql_server}/dynamo_test_{os.getpid()}_{next(_counter)}"
    drop_mysql_database(url)
    MySQLStore.create_database(url)
    yield url
    drop_mysql_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/inventory.db"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store_url(request: Any, tmp_path: Path) -> str:
    """One URL per store kind: every test using it runs against SQLite and MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/inventory.db"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[InventoryStore]:
    s = open_store(store_url)
    yield s
    s.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _mysql_skips:
        terminalreporter.section("MariaDB tests were NOT run", sep="!")
        terminalreporter.write_line(_mysql_skips[0])
