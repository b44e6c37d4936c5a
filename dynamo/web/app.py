"""The WSGI application: route, identify the caller, parse, run the module, wrap the answer.

``/web/<module>/<name>`` returns the module's HTML; ``/data/<module>/<name>`` returns the
envelope ``{"result": "OK", "message": ..., "inventory_version": N, "data": ...}`` (the
version also in the ``X-Dynamo-Inventory-Version`` header). Errors are JSON envelopes with a
status: 400 BadRequest, 403 AuthFailed, 404 NotFound, 405, 413, 500 Error (no traceback unless
``debug``), 503 Unavailable. Nothing a client sends can raise out of ``__call__``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from dynamo.dataformat.configuration import Configuration
from dynamo.web.errors import (
    AuthorizationError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    WebError,
)
from dynamo.web.loader import ModuleMap
from dynamo.web.modules._base import Listing, WebModule
from dynamo.web.request import Limits, parse
from dynamo.web.user import ANONYMOUS, User

log = logging.getLogger("dynamo.web")

StartResponse = Callable[..., Any]
CHUNK = 64 << 10
WRITE_ROLE = ("admin", "inventory")


class Channel(Protocol):
    """Native-protocol requests to dynamod as a given certificate DN (``dynamo.web.link.Dynamod``)."""

    def call(self, dn: str, peer: str, request: dict[str, Any], data: str | None = None) -> Any: ...


class AsCaller:
    """What a module that asks dynamod gets as ``self.dynamod``: the channel, bound to its caller."""

    def __init__(self, channel: Channel, caller: User, peer: str):
        self.channel = channel
        self.caller = caller
        self.peer = peer

    def call(self, request: dict[str, Any], data: str | None = None) -> Any:
        """The result's data; an error reply raises the WebError it maps to (403, 400, 404, 503, 500)."""
        from dynamo.web.link import ServerError

        try:
            return self.channel.call(self.caller.dn or "", self.peer, request, data)
        except ServerError as exc:
            raise server_refusal(exc.code, exc.message) from None


def server_refusal(code: str, message: str) -> WebError:
    """The web error for dynamod's refusal ``code`` (an ErrorCode value, or "unreachable")."""
    if code == "permission":
        return AuthorizationError(message)
    if code in ("invalid", "protocol"):
        return BadRequest(message)
    if code == "not_found":
        return NotFound(message)
    if code in ("unavailable", "overloaded", "unreachable"):
        return Unavailable(message)
    return WebError(f"dynamod failed: {message}")


@dataclass(frozen=True)
class Route:
    mode: str
    module: str
    command: str


def route(path_info: str) -> Route:
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadRequest("the path is not UTF-8") from None
    mode, _, rest = path.strip("/").partition("/")
    module, _, command = rest.partition("/")
    if mode not in ("web", "data") or not module:
        raise NotFound(f"Invalid request {path[:200]}")
    return Route(mode, module, command)


_date: list[tuple[int, str]] = [(0, "")]


def http_date() -> str:
    """The Date header's value, made once a second (cheroot formats it for every answer otherwise)."""
    now = int(time.time())
    second, text = _date[0]
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date[0] = (now, text)
    return text


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class WebApp:
    def __init__(self, modules: ModuleMap, modules_config: Configuration | None,
                 inventory: Callable[[], Any], users: Callable[[str], User | None] = lambda dn: None,
                 limits: Limits | None = None, debug: bool = False, dynamod: Channel | None = None):
        self.modules = modules
        self.modules_config = modules_config if modules_config is not None else Configuration()
        self.inventory = inventory
        self.users = users
        self.limits = limits or Limits()
        self.debug = debug
        self.dynamod = dynamod

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        version = None
        try:
            inventory = self.inventory()
            version = getattr(inventory, "version", None)
            return self._serve(environ, start_response, inventory)
        except WebError as exc:
            return self._error(start_response, exc.status, exc.result, exc.message, version, exc.headers)
        except Exception:
            log.exception("web request %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            message = "Internal server error"
            if self.debug:
                message += ":\n" + traceback.format_exc()
            return self._error(start_response, 500, "Error", message, version)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse, inventory: Any) -> Iterable[bytes]:
        where = route(environ.get("PATH_INFO", ""))
        cls = self.modules.find(where.mode, where.module, where.command)
        if cls is None:
            raise NotFound(f"Invalid request {where.mode}/{where.module}/{where.command}"[:300])
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("GET", "HEAD", "POST"):
            raise MethodNotAllowed(f"method {method[:20]} is not allowed")
        caller = self._identify(environ)
        parsed = parse(environ, self.limits)
        if inventory is None:
            raise Unavailable("the inventory is not loaded yet")
        provider = cls(self.modules_config)
        self._authorize(provider, caller, method)
        provider.input_data = parsed.input_data
        if provider.uses_dynamod or provider.write_enabled:
            if self.dynamod is None:
                raise Unavailable("this server does not take requests to dynamod over the web")
            provider.dynamod = AsCaller(self.dynamod, caller, str(environ.get("REMOTE_ADDR", "?")))
        result = provider.run(caller, parsed.params, inventory)
        # a write answers with the version it committed, a read with the image's
        version = provider.inventory_version if provider.inventory_version is not None else inventory.version
        headers = [("Cache-Control", "no-store"), ("Date", http_date()), *provider.additional_headers]
        if version is not None:
            headers.append(("X-Dynamo-Inventory-Version", str(version)))
        if provider.content_type.startswith("text/"):
            body = result if isinstance(result, bytes) else str(result).encode("utf-8")
            start_response("200 OK", [("Content-Type", provider.content_type),
                                      ("Content-Length", str(len(body))), *headers])
            return [body]
        head = {"result": "OK", "message": provider.message, "inventory_version": version}
        if isinstance(result, Listing):
            start_response("200 OK", [("Content-Type", "application/json"), *headers])
            return _stream(head, result)
        head["data"] = result
        try:
            body = (json.dumps(head) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"module {where.module}/{where.command} returned a value that is not JSON") from exc
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  *headers])
        return [body]

    def _identify(self, environ: dict[str, Any]) -> User:
        if environ.get("wsgi.url_scheme") != "https":
            return ANONYMOUS
        dn = environ.get("dynamo.client_dn")
        if not dn:
            raise AuthorizationError("a client certificate is required")
        user = self.users(dn)
        if user is None:
            raise AuthorizationError(f"Unknown user. Client name: {dn}")
        return user

    def _authorize(self, provider: WebModule, caller: User, method: str) -> None:
        if (provider.must_authenticate or provider.write_enabled) and caller.anonymous:
            raise AuthorizationError("this resource needs HTTPS and a registered user")
        if provider.write_enabled:
            if method != "POST":
                raise MethodNotAllowed("this resource changes the inventory: use POST")
            if not caller.has_role(*WRITE_ROLE):
                raise AuthorizationError(f"{caller.name} needs role 'admin' on 'inventory'")
        role = provider.required_role
        if role is not None and not caller.has_role(*role):
            who = caller.name or "an anonymous caller"
            raise AuthorizationError(f"{who} needs role {role[0]!r} on {role[1]!r}")

    def _error(self, start_response: StartResponse, code: int, result: str, message: str,
               version: int | None, extra: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
        envelope: dict[str, Any] = {"result": result, "message": message}
        if version is not None:
            envelope["inventory_version"] = version
        body = (json.dumps(envelope) + "\n").encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), ("Date", http_date()), *extra]
        if version is not None:
            headers.append(("X-Dynamo-Inventory-Version", str(version)))
        start_response(_status(code), headers)
        return [body]


def _stream(head: dict[str, Any], listing: Listing) -> Iterator[bytes]:
    """The envelope written piece by piece; the items are encoded as they come, in chunks."""
    prefix = json.dumps(head)[:-1] + ', "data": '
    extra = "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in listing.extra.items())
    yield (prefix + (("{" + extra + json.dumps(listing.key) + ": [") if listing.key is not None else "[")).encode()
    parts: list[str] = []
    size = 0
    first = True
    try:
        for item in listing.items:
            text = json.dumps(item)
            parts.append(text if first else ", " + text)
            first = False
            size += len(text)
            if size >= CHUNK:
                yield "".join(parts).encode("utf-8")
                parts.clear()
                size = 0
    except Exception:
        # the status is sent: the client gets invalid JSON, which it cannot mistake for a whole answer
        log.exception("web listing failed while streaming")
        yield "".join(parts).encode("utf-8")
        return
    parts.append("]}" if listing.key is not None else "]")
    parts.append("}\n")
    yield "".join(parts).encode("utf-8")
