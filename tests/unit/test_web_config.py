"""The [web] section: defaults, the embedded default's HTTP, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo.config import embedded_default, load_config, parse_config
from dynamo.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_default_serves_plain_http_on_localhost() -> None:
    web = embedded_default(Path("/tmp/x")).web
    assert web.address == "127.0.0.1:0" and web.tls_cert is None


def test_a_file_serves_http_only_with_a_web_section() -> None:
    assert parse_config({}, "t").web.address is None
    assert parse_config({"web": {"address": ""}}, "t").web.address is None
    web = parse_config({"web": {"address": "127.0.0.1:8080", "debug": True, "module_dirs": ["/a", "/b"],
                                "workers": 3, "modules_config": "mods.json"}}, "t").web
    assert (web.address, web.debug, web.module_dirs, web.workers) == ("127.0.0.1:8080", True, ("/a", "/b"), 3)
    assert web.modules_config == Path("mods.json")


def test_the_example_file_documents_the_web_section() -> None:
    web = load_config(ROOT / "etc" / "dynamo.toml").web
    assert web.address == "0.0.0.0:8443" and web.tls_ca is not None


@pytest.mark.parametrize(("section", "message"), [
    ({"address": "nohostport"}, "address must be host:port"),
    ({"address": "127.0.0.1:99999"}, "address must be host:port"),
    ({"address": "127.0.0.1:80", "tls_cert": "c.pem"}, "HTTPS needs tls_cert, tls_key and tls_ca"),
    ({"address": "127.0.0.1:80", "workers": 0}, "at least 1"),
    ({"debug": "yes"}, "expected true or false"),
    ({"bogus": 1}, "unknown setting"),
])
def test_bad_web_settings(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_config({"web": section}, "t")
