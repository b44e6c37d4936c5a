"""A web server (cheroot on a real port) around a small inventory, with a test module directory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynamo.dataformat.configuration import Configuration
from dynamo.web.app import WebApp
from dynamo.web.loader import load_modules
from dynamo.web.request import Limits
from dynamo.web.server import WebServer, listen
from dynamo.web.user import User
from tests.e2e.conftest import pki, server_home  # noqa: F401 - dynamod's fixtures, for the tests through it
from tests.web.helpers import PACKAGE_IMPL, PACKAGE_INIT, TEST_MODULE, small_inventory


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    d = tmp_path / "site_modules"
    (d / "sitepkg").mkdir(parents=True)
    (d / "testmod.py").write_text(TEST_MODULE)
    (d / "sitepkg" / "__init__.py").write_text(PACKAGE_INIT)
    (d / "sitepkg" / "impl.py").write_text(PACKAGE_IMPL)
    (d / "_private.py").write_text("raise RuntimeError('a helper is never imported as a module')\n")
    return d


@dataclass
class Served:
    port: int
    app: WebApp
    state: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def served(module_dir: Path) -> Iterator[Served]:
    state: dict[str, Any] = {"inventory": small_inventory()}
    users = {"/C=US/O=Dynamo Test/CN=alice": User("alice", "/C=US/O=Dynamo Test/CN=alice", 1,
                                                  (("admin", "inventory"),))}
    app = WebApp(load_modules((module_dir,)), Configuration({"echo": {"greeting": "hi"}}),
                 lambda: state["inventory"], users.get, Limits(max_body=1 << 16, max_params=50, max_value=1000))
    server = WebServer(app, listen("127.0.0.1:0"), threads=4, timeout=5)
    server.start()
    yield Served(server.address[1], app, state)
    server.stop()
