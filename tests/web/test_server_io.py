"""cheroot as dynamod uses it: an answer with a Content-Length leaves in one write (headers and body)."""

from __future__ import annotations

import http.client
import time
from typing import Any

from dynamo.dataformat.configuration import Configuration
from dynamo.web import server as web_server
from dynamo.web.app import WebApp
from dynamo.web.loader import load_modules
from dynamo.web.server import WebServer, listen
from tests.web.helpers import get, small_inventory


def test_headers_and_body_leave_in_one_write() -> None:
    writes: list[bytes] = []

    class Counting(web_server._Connection):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            real = self.wfile.write

            def write(data: bytes) -> int:
                writes.append(bytes(data))
                return int(real(data))

            self.wfile.write = write

    inventory = small_inventory()
    server = WebServer(WebApp(load_modules(), Configuration(), lambda: inventory), listen("127.0.0.1:0"), threads=2)
    server.server.ConnectionClass = Counting
    server.start()
    try:
        r = get(server.address[1], "/data/inventory/groups")
        assert r.status == 200 and r.json["data"]
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(r.body)
        writes.clear()
        head = get(server.address[1], "/data/inventory/groups", "HEAD")
        assert head.status == 200 and head.body == b"" and head.headers["content-length"] == str(len(r.body))
        time.sleep(0.2)
        assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n")  # the headers alone, never the body
        writes.clear()
        streamed = get(server.address[1], "/data/inventory/datasets")  # a listing: chunked, written as it comes
        assert streamed.status == 200 and streamed.headers["transfer-encoding"] == "chunked"
        assert b"".join(writes).endswith(b"0\r\n\r\n")
        # HEAD then GET on one keep-alive connection: the GET's answer is its own
        conn = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
        for method in ("HEAD", "GET", "HEAD", "GET"):
            conn.request(method, "/data/inventory/groups")
            answer = conn.getresponse()
            assert answer.status == 200 and answer.read() == (b"" if method == "HEAD" else r.body)
        conn.close()
    finally:
        server.stop()
