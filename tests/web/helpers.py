"""A small inventory, an HTTP client on real sockets and a test web module for the web tests."""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from dynamo.core.inventory import Inventory
from dynamo.dataformat import Block, BlockReplica, Dataset, File, Group, Partition, Site, SitePartition

TEST_MODULE = '''
from dynamo.web.modules._base import WebModule
from dynamo.web.modules._html import HTMLMixin
from dynamo.web.errors import MissingParameter

class Echo(WebModule):
    def run(self, caller, request, inventory):
        return {"caller": list(caller[:3]), "request": request, "sites": sorted(inventory.sites),
                "config": self.config.get("echo", {}).get("greeting"), "input": self.input_data}

class Fail(WebModule):
    def run(self, caller, request, inventory):
        raise RuntimeError("secret detail")

class Need(WebModule):
    def run(self, caller, request, inventory):
        raise MissingParameter("thing")

class Admin(WebModule):
    required_role = ("admin", "inventory")
    def run(self, caller, request, inventory):
        return "ok"

class Page(WebModule, HTMLMixin):
    def __init__(self, config):
        WebModule.__init__(self, config)
        HTMLMixin.__init__(self, "Test page", "<p id='x'>{X}</p>")
    def run(self, caller, request, inventory):
        return self.form_html({"X": "hello &amp; welcome"})

export_data = {"echo": Echo, "fail": Fail, "need": Need, "admin": Admin, "deep/er": Echo}
export_web = {"page": Page}
'''

PACKAGE_INIT = '''
from . import impl
export_data = {"hello": impl.Hello}
'''

PACKAGE_IMPL = '''
from dynamo.web.modules._base import WebModule
class Hello(WebModule):
    def run(self, caller, request, inventory):
        return "hello from a package"
export_data = {"not_mapped": Hello}
'''


def small_inventory() -> Inventory:
    inv = Inventory()
    inv.update(Site("T2_US_A", "a.example.org", backend="root://a.example.org/",
                    filename_mapping={"xrootd": [[("/store/(.*)", "root://a.example.org//data/store/{0}")]]}))
    inv.update(Site("T2_US_B", "b.example.org"))
    inv.update(Site("T1_DE_C", "c.example.org", "mss"))
    inv.update(Group("AnalysisOps"))
    inv.update(Group("DataOps"))
    inv.update(Partition("Physics"))
    inv.update(SitePartition("T2_US_A", "Physics", 10 ** 12))
    for d, status in (("/A/Run1/RAW", "valid"), ("/A/Run2/AOD", "production"), ("/B/Run1/RAW", "valid")):
        inv.update(Dataset(d, status, "production"))
        for b in ("b1", "b2"):
            inv.update(Block(b, d, 3000, 2, last_update=100))
            inv.update(File(f"/store{d}/{b}/1.root", f"{d}#{b}", 1000, "adler32:0a0b0c0d"))
            inv.update(File(f"/store{d}/{b}/2.root", f"{d}#{b}", 2000))
    inv.update(BlockReplica("/A/Run1/RAW#b1", "T2_US_A", "AnalysisOps", False, 500))
    inv.update(BlockReplica("/A/Run1/RAW#b2", "T2_US_A", "AnalysisOps", False, 600,
                            ("/store/A/Run1/RAW/b2/1.root",)))
    inv.update(BlockReplica("/A/Run1/RAW#b1", "T2_US_B", "DataOps", True, 700))
    inv.update(BlockReplica("/B/Run1/RAW#b1", "T1_DE_C", None, True, 800))
    inv.version = 7
    return inv


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> Reply:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=30, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are and read the answer until the server closes. A server may answer a
    request it refuses (414, 431, 413) and close before all of it is sent: what it answered is read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if not isinstance(exc, (BrokenPipeError, ConnectionResetError)) and exc.errno != errno.ENOTCONN:
                raise
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
