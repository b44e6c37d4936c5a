"""The state directories dynamod makes: private to its user in the embedded default, traversable by
the service user's applications in a configured server."""

from __future__ import annotations

import os
from pathlib import Path

from dynamo.config import embedded_default, parse_config
from dynamo.server.preflight import prepare


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_embedded_default_makes_its_home_private_even_an_existing_one(tmp_path: Path) -> None:
    home = tmp_path / "state"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    prepare(embedded_default(home), None, None)
    assert mode(home) == 0o700 and mode(home / "work") == 0o700


def test_a_configured_server_leaves_its_work_area_traversable_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "state"
    old = os.umask(0o077)
    try:
        prepare(parse_config({"server": {"home": str(home)}}, "test.toml"), None, None)
    finally:
        os.umask(old)
    assert mode(home) == 0o711 and mode(home / "work") == 0o711
