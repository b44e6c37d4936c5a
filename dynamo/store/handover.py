"""Handing an authenticated MySQL connection from one process to another.

dynamod's keeper (``dynamo.server.keeper``) holds the database password; the main process,
whose memory every application inherits, must never see it. The keeper connects and
authenticates with PyMySQL, then passes the connected socket (SCM_RIGHTS) together with what
PyMySQL learnt during the handshake; the main process builds a ``Connection`` with
``defer_connect=True`` and fills in the state that ``Connection.connect`` would have set, so it
speaks the protocol on a session that is already logged in. The handshake's salt (scramble)
and the password are not handed over: the main process never authenticates.
"""

from __future__ import annotations

import socket
from typing import Any

import pymysql

# every connection's session: autocommit outside transactions, and strict column checks
SESSION = {"charset": "utf8mb4", "autocommit": True,
           "init_command": "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"}

# what Connection.connect() (and _get_server_information / _request_authentication) sets beyond
# what the constructor does; read by PyMySQL when it talks to the server
STATE = ("server_version", "server_thread_id", "server_capabilities", "server_language", "server_charset",
         "server_status", "protocol_version", "client_flag", "host_info")


def authenticate(params: dict[str, Any]) -> pymysql.connections.Connection:
    """A logged-in connection with dynamod's session settings (in the keeper: ``params`` has the password)."""
    return pymysql.connect(**params, **SESSION)


def state_of(conn: pymysql.connections.Connection) -> dict[str, Any]:
    """The handshake state to send along with the socket (JSON-able)."""
    state = {name: getattr(conn, name) for name in STATE}
    state["server_thread_id"] = list(state["server_thread_id"])
    return state


def release(conn: pymysql.connections.Connection) -> None:
    """Close the giving side's copy without COM_QUIT: the session lives on in the receiver's copy."""
    sock, rfile = conn._sock, conn._rfile
    conn._sock = conn._rfile = None
    if rfile is not None:
        rfile.close()
    if sock is not None:
        sock.close()


def adopt(params: dict[str, Any], fd: int, state: dict[str, Any]) -> pymysql.connections.Connection:
    """A Connection over the received socket ``fd``, already authenticated by the keeper."""
    params = {k: v for k, v in params.items() if k != "password"}
    conn = pymysql.connections.Connection(**params, **SESSION, defer_connect=True)
    sock = socket.socket(fileno=fd)
    sock.settimeout(conn._read_timeout)  # what connect() does (None: blocking)
    conn._current_timeout = conn._read_timeout
    conn._sock = sock
    conn._rfile = sock.makefile("rb")
    conn._next_seq_id = 0
    conn._closed = False
    for name in STATE:
        if name in state:
            setattr(conn, name, state[name])
    conn.server_thread_id = tuple(state.get("server_thread_id", ()))
    return conn
