"""One handler per request: check the request and the caller's rights, then act
through the ``Service`` (dynamod's ``dynamo.server.service.AppService``): the handlers
see the registry and these few operations, never the server itself."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, Protocol

from dynamo.appserver.connection import Connection
from dynamo.errors import ProtocolError, UnknownUser
from dynamo.protocol import replies
from dynamo.protocol.messages import REQUESTS, STREAM, check
from dynamo.protocol.replies import ErrorCode
from dynamo.store.registry import Registry, User

log = logging.getLogger("dynamo.appserver")

TITLE = re.compile(r"[A-Za-z0-9_.+-]{1,128}")
SCRIPT_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,200}")

# What anyone may see of another user's application: its status line. Its output, arguments, work
# area (whose random name is what keeps applications sharing a service user apart) and pid are for
# its owner and administrators.
PUBLIC_FIELDS = frozenset({"id", "title", "user", "write", "script", "checksum", "status", "exit_code", "message",
                           "server", "submitted", "started", "ended", "version"})


def may_see(user: User, owner: str) -> bool:
    """Whether ``user`` sees all of an application of ``owner``'s: its own, or as administrator."""
    return user.name == owner or user.has_role("admin", "application")


def public(found: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in found.items() if key in PUBLIC_FIELDS}


class Service(Protocol):
    registry: Registry

    def submit(self, conn: Connection, request: dict[str, Any], checksum: str) -> None: ...
    def open_shell(self, conn: Connection, tty: bool) -> None: ...
    def kill(self, user: User, app_id: int) -> dict[str, Any]: ...
    def poll(self, app_id: int) -> dict[str, Any] | None: ...
    def output(self, found: dict[str, Any]) -> dict[str, str]: ...
    def list_applications(self, show_all: bool, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]: ...
    def queue_inject(self, conn: Connection, delete: bool, document: str | list[str]) -> None: ...
    def send_input(self, conn: Connection, data: str | None) -> None: ...
    def interrupt(self, conn: Connection) -> None: ...


def checksum(script: str) -> str:
    """SHA-256 of the script's bytes (scripts travel as UTF-8 text, which round-trips exactly)."""
    return hashlib.sha256(script.encode()).hexdigest()


class Upload:
    """An inject document arriving in ``data`` frames."""

    def __init__(self, delete: bool, size: int, limit: int):
        if size > limit:
            raise ProtocolError(f"document of {size} characters exceeds the limit of {limit}")
        self.delete = delete
        self.size = size
        self.limit = limit
        self.parts: list[str] = []
        self.received = 0

    def add(self, text: str) -> None:
        self.received += len(text)
        if self.received > self.limit:
            raise ProtocolError(f"document exceeds the limit of {self.limit} characters")
        self.parts.append(text)


class Handlers:
    def __init__(self, service: Service, max_inject: int = 4 << 30):
        self.service = service
        self.max_inject = max_inject

    def handle(self, conn: Connection, message: dict[str, Any]) -> None:
        """Dispatch one message; protocol errors are answered and close the connection."""
        try:
            if conn.request is None:
                op = check(message, REQUESTS)
                conn.request = op
                getattr(self, f"on_{op}")(conn, message)
            else:
                op = check(message, STREAM)
                self.on_stream(conn, op, message)
        except ProtocolError as exc:
            self.refuse(conn, str(exc), ErrorCode.PROTOCOL)

    @staticmethod
    def refuse(conn: Connection, message: str, code: ErrorCode) -> None:
        log.info("%s: refused: %s", conn, message)
        conn.send(replies.error(message, code))
        conn.close_when_flushed = True

    def _require(self, conn: Connection, role: str, target: str) -> bool:
        user: User = conn.user
        if user.has_role(role, target):
            return True
        self.refuse(conn, f"user {user.name!r} needs role {role!r} on {target!r}", ErrorCode.PERMISSION)
        return False

    # --- requests ---------------------------------------------------------------

    def on_whoami(self, conn: Connection, message: dict[str, Any]) -> None:
        user: User = conn.user
        conn.send(replies.result({"user": user.name, "dn": user.dn, "roles": sorted(f"{r}:{t}" for r, t in user.roles),
                          "identified_as": conn.identity}))
        conn.close_when_flushed = True

    def on_run(self, conn: Connection, message: dict[str, Any]) -> None:
        if not SCRIPT_NAME.fullmatch(message["name"]):
            return self.refuse(conn, f"script name {message['name']!r}: use letters, digits and ._+-",
                               ErrorCode.PROTOCOL)
        title = message["title"]
        if not TITLE.fullmatch(title):
            return self.refuse(conn, f"title {title!r}: use 1-128 letters, digits and ._+-", ErrorCode.PROTOCOL)
        digest = checksum(message["script"])
        if message["write"]:
            problem = self.write_refusal(conn.user, title, digest)
            if problem:
                return self.refuse(conn, problem, ErrorCode.PERMISSION)
        self.service.submit(conn, message, digest)

    def write_refusal(self, user: User, title: str, digest: str) -> str | None:
        """Why ``user`` may not run a script with this checksum as write application ``title``, if not."""
        grants = self.service.registry.authorizations(title)
        if not grants:
            return (f"title {title!r} is not authorized for write access "
                    f"(an administrator runs: dynamo-exec-auth --executable <script> --title {title})")
        mine = [g for g in grants if g.user in ("", user.name)]
        if not mine:
            users = ", ".join(sorted(g.user for g in grants))
            return f"title {title!r} is authorized for user {users} only, not for {user.name!r}"
        if not any(g.checksum == digest for g in mine):
            return (f"the script has changed since it was authorized as {title!r} "
                    f"(sha256 {digest[:12]}... is not the authorized {mine[0].checksum[:12]}...); "
                    "it must be authorized again")
        return None

    def on_shell(self, conn: Connection, message: dict[str, Any]) -> None:
        self.service.open_shell(conn, bool(message.get("tty", False)))

    def on_poll(self, conn: Connection, message: dict[str, Any]) -> None:
        found = self.service.poll(message["id"])
        if found is None:
            return self.refuse(conn, f"no application {message['id']}", ErrorCode.NOT_FOUND)
        if may_see(conn.user, found["user"]):
            found.update(self.service.output(found))
        else:
            found = public(found)
        conn.send(replies.result(found))
        conn.close_when_flushed = True

    def on_kill(self, conn: Connection, message: dict[str, Any]) -> None:
        found = self.service.poll(message["id"])
        if found is None:
            return self.refuse(conn, f"no application {message['id']}", ErrorCode.NOT_FOUND)
        user: User = conn.user
        if found["user"] != user.name and not (user.has_role("admin", "application")
                                               or user.has_role("operator", "application")):
            return self.refuse(conn, f"application {message['id']} belongs to {found['user']!r}; killing it "
                               "needs role admin or operator on 'application'", ErrorCode.PERMISSION)
        conn.send(replies.result(self.service.kill(user, message["id"])))
        conn.close_when_flushed = True

    def on_list(self, conn: Connection, message: dict[str, Any]) -> None:
        user: User = conn.user
        show_all = bool(message.get("all", False))
        if "limit" in message or "offset" in message:  # a page (of all applications: newest first)
            rows = self.service.list_applications(show_all, message.get("limit", 100), message.get("offset", 0))
        else:
            rows = self.service.list_applications(show_all)
        conn.send(replies.result([row if may_see(user, row["user"]) else public(row) for row in rows]))
        conn.close_when_flushed = True

    def on_inject(self, conn: Connection, message: dict[str, Any]) -> None:
        if self._require(conn, "admin", "inventory"):
            conn.upload = Upload(message["delete"], message["size"], self.max_inject)
            conn.send(replies.accepted())

    def on_exec_auth(self, conn: Connection, message: dict[str, Any]) -> None:
        if not self._require(conn, "admin", "application"):
            return
        registry = self.service.registry
        action, title, user = message["action"], message.get("title"), message.get("user")
        if action == "list":
            data: Any = [g.__dict__ for g in registry.authorizations(title)]
        elif action == "add":
            script = message.get("script")
            if not title or not TITLE.fullmatch(title) or script is None:
                return self.refuse(conn, "exec_auth add needs a valid title and the script", ErrorCode.PROTOCOL)
            digest = checksum(script)
            try:
                registry.authorize(title, digest, user or "", conn.user.name)
            except UnknownUser:
                return self.refuse(conn, f"no user {user!r}", ErrorCode.NOT_FOUND)
            log.info("%s: authorized %r (sha256 %s) for %s", conn, title, digest, user or "any user")
            data = {"title": title, "user": user or "", "checksum": digest}
        else:  # "delete": the request table admits no other action
            if not title:
                return self.refuse(conn, "exec_auth delete needs a title", ErrorCode.PROTOCOL)
            data = {"removed": registry.revoke_authorization(title, user)}
        conn.send(replies.result(data))
        conn.close_when_flushed = True

    # --- stream frames ------------------------------------------------------------

    def on_stream(self, conn: Connection, op: str, message: dict[str, Any]) -> None:
        if op in ("stdin", "eof"):
            self.service.send_input(conn, message.get("data") if op == "stdin" else None)
        elif op == "interrupt":
            self.service.interrupt(conn)
        elif conn.upload is None:
            raise ProtocolError(f"{op!r} outside an inject")
        elif op == "data":
            conn.upload.add(message["text"])
        else:  # end
            upload, conn.upload = conn.upload, None
            # the parts: joined by the commit process, not in the loop (dynamo.server.offloop)
            self.service.queue_inject(conn, upload.delete, upload.parts)
