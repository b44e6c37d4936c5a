"""Who is on the other end: Unix peer credentials or an X.509 client certificate."""

from __future__ import annotations

import _ssl
import pwd
import socket
import ssl
import struct
from typing import Any

# RFC 3820 proxyCertInfo: the certificate is a proxy speaking for the one that signed it
PROXY_CERT_INFO = "1.3.6.1.5.5.7.1.14"

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


def peer_dn(sock: ssl.SSLSocket) -> str | None:
    """The subject DN of the client's end-entity certificate.

    Grid users connect with proxy certificates (RFC 3820) that their own certificate
    signed; OpenSSL has verified the chain (proxies included) against the CA, so the
    user is the first certificate in it that is not a proxy. Deriving the identity
    from the verified chain, not by trimming ``/CN=...`` off the leaf's DN, means a
    certificate whose DN merely looks like a proxy's cannot pass for someone else.
    """
    # Imported here, not with this module: only TLS peers need it, and it was ~30 ms of dynamod's start, before
    # its load (dynamod's own clients are local; the keeper's relay and the web server import it up front).
    from cryptography import x509

    # public in Python 3.13; the method of the underlying _ssl object before that
    getter = getattr(sock, "get_verified_chain", None) or sock._sslobj.get_verified_chain  # type: ignore[attr-defined]
    for cert in getter():
        parsed = x509.load_der_x509_certificate(cert.public_bytes(_ssl.ENCODING_DER))
        if not any(ext.oid.dotted_string == PROXY_CERT_INFO for ext in parsed.extensions):
            return subject_dn(cert.get_info())
    return None


def subject_dn(cert: dict[str, Any]) -> str:
    """``getpeercert()`` subject -> ``/C=US/O=Example/CN=Alice`` (OpenSSL one-line form)."""
    parts = []
    for rdn in cert.get("subject", ()):
        parts.append("+".join(f"{_SHORT.get(k, k)}={v}" for k, v in rdn))
    return "".join("/" + p for p in parts)
