"""Who is on the other end: Unix peer credentials or an X.509 client certificate."""

from __future__ import annotations

import pwd
import socket
import struct
from typing import Any

# OpenSSL short names for the attributes Python's ssl module reports
_SHORT = {"countryName": "C", "stateOrProvinceName": "ST", "localityName": "L", "organizationName": "O",
          "organizationalUnitName": "OU", "commonName": "CN", "emailAddress": "emailAddress",
          "domainComponent": "DC", "userId": "UID", "streetAddress": "STREET"}


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def unix_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def subject_dn(cert: dict[str, Any]) -> str:
    """``getpeercert()`` subject -> ``/C=US/O=Example/CN=Alice`` (OpenSSL one-line form)."""
    parts = []
    for rdn in cert.get("subject", ()):
        parts.append("+".join(f"{_SHORT.get(k, k)}={v}" for k, v in rdn))
    return "".join("/" + p for p in parts)
