"""Configuration: embedded default, the shipped example, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo.config import embedded_default, load_config, parse_config
from dynamo.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_default_needs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DYNAMO_HOME", str(tmp_path))
    monkeypatch.delenv("DYNAMO_CONFIG", raising=False)
    config = load_config(None)
    assert config.source == "embedded default"
    assert config.store.url == f"sqlite:///{tmp_path}/inventory.db"
    assert config.client.server == f"unix:{tmp_path}/dynamo.sock"
    assert config.path(config.server.pid_file) == tmp_path / "dynamod.pid"
    assert config.listen.tls_address is None


def test_the_shipped_example_is_valid() -> None:
    config = load_config(ROOT / "etc" / "dynamo.toml")
    assert config.server.service_user == "dynamo"
    assert config.listen.tls_address == "0.0.0.0:39626"
    assert config.store.url.startswith("mysql://")
    assert config.store.password_file == Path("/etc/dynamo/db.password")
    assert ":" not in config.store.url.split("@")[0].removeprefix("mysql://")  # no password in the URL


def test_a_password_file_is_for_mysql_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="password_file is for MySQL URLs only"):
        parse_config({"store": {"url": f"sqlite:///{tmp_path}/x.db", "password_file": "/x"}}, "x")


def test_home_moves_the_defaults(tmp_path: Path) -> None:
    config = parse_config({"server": {"home": str(tmp_path)}}, "x")
    assert config.listen.socket == tmp_path / "dynamo.sock"
    assert config.store.url == f"sqlite:///{tmp_path}/inventory.db"


@pytest.mark.parametrize(("data", "message"), [
    ({"servr": {}}, "unknown section(s) servr"),
    ({"server": {"hoem": "/x"}}, "[server] unknown setting(s) hoem"),
    ({"applications": {"timeout": "long"}}, "[applications] timeout: expected a non-negative number"),
    ({"applications": {"max_running": -1}}, "[applications] max_running: expected a non-negative integer"),
    ({"applications": {"write_nice": 20}}, "[applications] write_nice 20: expected 0..19"),
    ({"applications": {"write_nice": -1}}, "[applications] write_nice: expected a non-negative integer"),
    ({"listen": {"tls_address": "0.0.0.0:1"}}, "tls_address needs tls_cert, tls_key, tls_ca"),
    ({"listen": {"socket": None}}, "[listen] needs a socket or a tls_address"),
    ({"store": {"url": "postgres://x"}}, "[store] url must start with sqlite: or mysql:"),
    ({"server": {"admins": "root"}}, "[server] admins: expected a list of strings"),
])
def test_bad_configuration(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(data, "test.toml")  # type: ignore[arg-type]
    assert message in str(info.value)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read configuration"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigurationError, match="bad.toml"):
        load_config(bad)


def test_the_embedded_default_serves_its_user_alone_and_a_file_a_multi_user_server() -> None:
    import os
    default = embedded_default()
    assert default.single_user and default.server.service_user is None
    configured = parse_config({}, "test.toml")
    assert not configured.single_user
    assert configured.server.service_user == ("nobody" if os.geteuid() == 0 else None)
