"""The web application over real HTTP: module mapping, run()'s arguments, the envelope, statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamo.errors import ConfigurationError
from dynamo.web.loader import load_modules
from tests.web.conftest import Served
from tests.web.helpers import get, raw


def test_extra_module_maps_to_data_and_web(served: Served) -> None:
    r = get(served.port, "/data/testmod/echo?a=1&b=x&b=y&empty=")
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json
    assert list(body) == ["result", "message", "inventory_version", "data"]
    assert body["result"] == "OK" and body["message"] == "" and body["inventory_version"] == 7
    assert r.headers["x-dynamo-inventory-version"] == "7"
    data = body["data"]
    assert data["caller"] == [None, None, 0]  # plain HTTP: anonymous
    assert data["request"] == {"a": "1", "b": ["x", "y"], "empty": ""}
    assert data["sites"] == ["T1_DE_C", "T2_US_A", "T2_US_B"]
    assert data["config"] == "hi"  # the Configuration from the modules configuration
    page = get(served.port, "/web/testmod/page")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "<p id='x'>hello &amp; welcome</p>" in page.text and "<title>Test page</title>" in page.text
    assert get(served.port, "/data/testmod/deep/er").json["result"] == "OK"


def test_package_maps_only_its_init_exports(served: Served) -> None:
    assert get(served.port, "/data/sitepkg/hello").json["data"] == "hello from a package"
    assert get(served.port, "/data/sitepkg/not_mapped").status == 404
    assert get(served.port, "/data/impl/not_mapped").status == 404
    assert get(served.port, "/data/_private/x").status == 404


def test_post_form_and_json_bodies(served: Served) -> None:
    r = get(served.port, "/data/testmod/echo?q=1", "POST", b"a=%C3%A9&a=2",
            {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.json["data"]["request"] == {"q": "1", "a": ["\u00e9", "2"]}
    doc = {"dataset": "x", "list": ["a", "b"], "n": 3}
    r = get(served.port, "/data/testmod/echo", "POST", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert r.json["data"]["request"] == {"dataset": "x", "list": ["a", "b"]}
    assert r.json["data"]["input"] == doc
    r = get(served.port, "/data/testmod/echo", "POST", b"[1, 2]", {"Content-Type": "application/json"})
    assert r.json["data"]["input"] == [1, 2] and r.json["data"]["request"] == {}


@pytest.mark.parametrize(("path", "method", "body", "status", "result"), [
    ("/data/nomodule/x", "GET", None, 404, "NotFound"),
    ("/data/testmod/nocommand", "GET", None, 404, "NotFound"),
    ("/web/testmod/echo", "GET", None, 404, "NotFound"),  # a data command is not a page
    ("/other/testmod/echo", "GET", None, 404, "NotFound"),
    ("/", "GET", None, 404, "NotFound"),
    ("/data/testmod/need", "GET", None, 400, "BadRequest"),
    ("/data/testmod/admin", "GET", None, 403, "AuthFailed"),
    ("/data/testmod/fail", "GET", None, 500, "Error"),
    ("/data/testmod/echo", "DELETE", None, 405, "BadRequest"),
    ("/data/testmod/echo?a=%ff", "GET", None, 400, "BadRequest"),
    ("/data/testmod/echo?" + "&".join(f"k{i}=1" for i in range(60)), "GET", None, 400, "BadRequest"),
    ("/data/testmod/echo?k=" + "x" * 2000, "GET", None, 400, "BadRequest"),
    ("/data/testmod/echo", "POST", b"{not json", 400, "BadRequest"),
    ("/data/testmod/echo", "POST", b"[" * 100000, 413, "BadRequest"),
])
def test_error_statuses(served: Served, path: str, method: str, body: bytes | None, status: int,
                        result: str) -> None:
    headers = {"Content-Type": "application/json"} if body else {}
    r = get(served.port, path, method, body, headers)
    assert r.status == status, r.body
    assert r.headers["content-type"] == "application/json"
    assert r.json["result"] == result
    assert r.json["message"]


def test_failing_module_shows_no_traceback_unless_debugging(served: Served) -> None:
    r = get(served.port, "/data/testmod/fail")
    assert r.status == 500 and "secret detail" not in r.text and "Traceback" not in r.text
    served.app.debug = True
    r = get(served.port, "/data/testmod/fail")
    assert r.status == 500 and "secret detail" in r.json["message"] and "Traceback" in r.json["message"]


def test_inventory_not_loaded_is_503(served: Served) -> None:
    served.state["inventory"] = None
    r = get(served.port, "/data/testmod/echo")
    assert r.status == 503 and r.json["result"] == "Unavailable"


def test_deeply_nested_json_is_a_bad_request(served: Served) -> None:
    body = b"[" * 30000 + b"]" * 30000
    r = get(served.port, "/data/testmod/echo", "POST", body, {"Content-Type": "application/json"})
    assert r.status == 400 and "nested" in r.json["message"]


def test_hostile_bytes_cost_only_their_connection(served: Served) -> None:
    answers = [
        raw(served.port, b"GET /data/testmod/echo?" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        raw(served.port, b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"y" * 200000 + b"\r\n\r\n"),
        raw(served.port, b"\x00\xff\xfe garbage\r\n\r\n"),
        raw(served.port, b"POST /data/testmod/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"),
        raw(served.port, b"POST /data/testmod/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"),
        raw(served.port, b"GET /data/testmod/\xc3\x28 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    for answer in answers:
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b""
        assert status.startswith(b"4"), answer[:200]
    # the server still answers
    assert get(served.port, "/data/testmod/echo").status == 200


def test_a_bad_module_stops_loading_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_anywhere\n")
    with pytest.raises(ConfigurationError, match="broken.py: ModuleNotFoundError"):
        load_modules((tmp_path,))
    (tmp_path / "broken.py").write_text("export_data = {'x': dict}\n")
    with pytest.raises(ConfigurationError, match="does not inherit from WebModule"):
        load_modules((tmp_path,))
    (tmp_path / "broken.py").write_text("")
    (tmp_path / "inventory.py").write_text("")
    with pytest.raises(ConfigurationError, match="inventory: defined twice"):
        load_modules((tmp_path,))
