"""The caller of a web request, as the original's ``WebServer.User`` (name, dn, id, authlist).

Over plain HTTP the caller is anonymous (``name`` None, no roles); over HTTPS it is the
registered user whose DN the client certificate (or the end-entity certificate behind an
RFC 3820 proxy) carries."""

from __future__ import annotations

from typing import NamedTuple


class User(NamedTuple):
    name: str | None
    dn: str | None
    id: int
    authlist: tuple[tuple[str, str], ...]
    """(role, target) pairs."""

    @property
    def anonymous(self) -> bool:
        return self.name is None

    def has_role(self, role: str, target: str) -> bool:
        return (role, target) in self.authlist


ANONYMOUS = User(None, None, 0, ())
