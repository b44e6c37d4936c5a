"""The web's users and roles, shared with the workers and refreshed while they run.

Workers have no database connection (dynamod's store, and its password, stay with dynamod and
its keeper). dynamod reads the registry's users and roles every ``USERS_TTL`` seconds (and at
every new generation) and, when they changed, publishes them in a shared memory region made
before the first worker was forked: a user registered, or a role granted or revoked, with
``dynamo-user-auth`` counts on the web within ``USERS_TTL`` seconds, without waiting for a
commit.

The region is a sequence lock: a counter (odd while dynamod writes), the length, then the
table as JSON. A worker compares the counter with the one it last decoded (8 bytes read per
HTTPS request) and decodes the table again only when it moved; a read that overlapped a write
is retried. The region's pages are touched only as far as the table reaches.
"""

from __future__ import annotations

import json
import logging
import mmap
import struct
from typing import Any

from dynamo.web.user import User

log = logging.getLogger("dynamo.web")

USERS_TTL = 5.0
SIZE = 16 << 20
_HEAD = struct.Struct("qq")  # sequence, length


def registry_users(registry: Any) -> dict[str, User]:
    """DN -> web User, from the registry's users and roles."""
    found = {}
    for u in registry.users():
        if u.dn:
            found[u.dn] = User(u.name, u.dn, u.id, tuple(sorted(u.roles)))
    return found


class SharedUsers:
    """dynamod ``publish``es; workers forked after it was made ``get`` (the caller lookup)."""

    def __init__(self, size: int = SIZE):
        self._map = mmap.mmap(-1, size)
        self._published = b""
        self._seen = -1                       # the worker's: the sequence it decoded
        self._users: dict[str, User] = {}

    # ----- dynamod -----

    def publish(self, users: dict[str, User]) -> bool:
        """Write ``users`` if they changed; False if the table does not fit (the old one stays)."""
        body = json.dumps(sorted([list(u[:3]) + [[list(r) for r in u.authlist]] for u in users.values()]),
                          separators=(",", ":")).encode()
        if body == self._published:
            return True
        if _HEAD.size + len(body) > len(self._map):
            log.error("web: %d users do not fit in the %d MiB shared table: the web keeps the old one",
                      len(users), len(self._map) >> 20)
            return False
        sequence = _HEAD.unpack_from(self._map)[0]
        _HEAD.pack_into(self._map, 0, sequence + 1, 0)            # odd: being written
        self._map[_HEAD.size:_HEAD.size + len(body)] = body
        _HEAD.pack_into(self._map, 0, sequence + 2, len(body))    # even: whole
        self._published = body
        self._users = users
        return True

    # ----- a worker -----

    def get(self, dn: str) -> User | None:
        if _HEAD.unpack_from(self._map)[0] != self._seen:
            self._reload()
        return self._users.get(dn)

    def _reload(self) -> None:
        for _ in range(100):
            sequence, length = _HEAD.unpack_from(self._map)
            if sequence % 2:
                continue
            body = self._map[_HEAD.size:_HEAD.size + length]
            if _HEAD.unpack_from(self._map)[0] != sequence:
                continue
            rows = json.loads(body) if body else []
            self._users = {row[1]: User(row[0], row[1], row[2], tuple(tuple(r) for r in row[3]))
                           for row in rows}
            self._seen = sequence
            return
        # dynamod is writing right now, again and again: keep the table we have for this request
