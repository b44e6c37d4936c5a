"""Where a client connects, read cheaply: the ``[client]`` settings without ``dynamo.config``.

``dynamo`` starts on every call, and its start counts in the time to an application's
first output line. ``dynamo.config`` (dataclasses, pathlib, tomllib, typing) costs more
than the rest of the command, and a client needs only where to connect. So:

* no ``--config`` and no ``$DYNAMO_CONFIG``: the embedded default's socket,
  ``$DYNAMO_HOME/dynamo.sock`` (else ``~/.dynamo``), computed as ``dynamo.config`` computes it,
  with nothing imported;
* a file: :func:`plain_toml` reads it when every line is of the few plain forms a
  configuration file is written in (``tomllib``, which costs more than the rest of the command,
  reads any other), the section and setting names are checked as ``dynamo.config`` checks
  them, and ``[client] server`` (else ``[server] home``) gives the socket. The values of the
  other settings are dynamod's, which refuses a file it cannot use; a client does not read them.

Anything out of the ordinary goes to :func:`dynamo.config.load_config`, so its answer and
its error messages are the ones users get: an unreadable or malformed file, a wrong name,
a value of the wrong type, ``[client]`` certificate settings (TLS, where a handshake costs
more than reading the whole file), or a path that ``pathlib`` would normalise.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dynamo.config import Config

SETTINGS: dict[str, frozenset[str]] = {
    "server": frozenset({"home", "admins", "service_user", "pid_file", "log_file", "change_log", "log_level"}),
    "store": frozenset({"url", "password_file", "journal_keep_days", "journal_keep_entries", "compact_every"}),
    "listen": frozenset({"socket", "tls_address", "tls_cert", "tls_key", "tls_ca", "max_frame", "client_timeout",
                         "max_connections", "max_connections_per_peer", "max_incoming", "max_incoming_per_user"}),
    "applications": frozenset({"work_area", "timeout", "kill_grace", "max_running", "retain_days", "max_changes",
                               "max_output", "max_memory", "max_cpu", "max_processes", "max_open_files",
                               "max_file_size", "write_nice", "uid_range", "group"}),
    "client": frozenset({"server", "cert", "key", "ca"}),
    "web": frozenset({"address", "tls_cert", "tls_key", "tls_ca", "workers", "threads", "modules_config",
                      "module_dirs", "max_requests", "max_private_memory", "max_body", "timeout", "debug"}),
}
"""Every section and setting name of ``dynamo.config`` (a unit test holds the two equal)."""


class ClientSettings:
    """The ``[client]`` section, as ``dynamo.config.ClientConfig`` has it (no certificate here:
    certificate settings are read by ``dynamo.config``)."""

    __slots__ = ("ca", "cert", "key", "server")

    def __init__(self, server: str):
        self.server = server
        self.cert: str | None = None
        self.key: str | None = None
        self.ca: str | None = None


class ClientView:
    """What a client needs of a configuration: ``.client`` (as ``Config.client``)."""

    __slots__ = ("client",)

    def __init__(self, server: str):
        self.client = ClientSettings(server)


def _plain(path: str) -> bool:
    """True when ``str(pathlib.PurePosixPath(path)) == path``: an absolute path without empty or
    ``.`` components or a trailing slash (anything else is left to pathlib)."""
    return (path.startswith("/") and "//" not in path and "/./" not in path
            and not path.endswith(("/", "/.")) or path == "/")


def _full(path: str | None) -> Config:
    from dynamo.config import load_config
    return load_config(path)


def default_home() -> str:
    """``str(dynamo.config.default_home())``."""
    given = os.environ.get("DYNAMO_HOME")
    if given is None or given == "":
        home = os.path.expanduser("~")
        if _plain(home):
            return "/.dynamo" if home == "/" else home + "/.dynamo"
    elif not given.startswith("~") and _plain(given):
        return given
    from dynamo.config import default_home as full
    return str(full())


def _socket_of(home: str) -> str:
    return f"unix:{home.rstrip('/')}/dynamo.sock" if home != "/" else "unix:/dynamo.sock"


def client_config(path: str | None = None) -> Config | ClientView:
    """Where to connect: the file ``path``, else ``$DYNAMO_CONFIG``, else the embedded default (see the
    module's docstring). Raises ``ConfigurationError`` as ``load_config`` does."""
    path = path or os.environ.get("DYNAMO_CONFIG")
    if not path:
        return ClientView(_socket_of(default_home()))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return _full(path)  # its error message
    data = plain_toml(raw)
    if data is None:
        import tomllib
        try:
            data = tomllib.loads(raw.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return _full(path)  # its error message
    server = _from_file(data)
    return ClientView(server) if server is not None else _full(path)


_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_BLANK = " \t"


def _bare_key(text: str) -> str | None:
    key = text.strip(_BLANK)
    return key if key and _BARE.issuperset(key) else None


def _plain_chars(text: str) -> bool:
    """No ASCII control character but the tab (what TOML allows in comments and one-line strings)."""
    return text.isprintable() or all(c >= " " and c != "\x7f" for c in text if c != "\t")


def _plain_value(text: str) -> object:
    """The value of ``key = text`` for the plain forms (a string without escapes, a decimal integer
    without underscores, true, false), ``text`` holding no comment; else ``_OTHER``."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        inner = text[1:-1]
        if text[0] not in inner and "\\" not in inner and _plain_chars(inner):
            return inner
        return _OTHER
    if text in ("true", "false"):
        return text == "true"
    digits = text[1:] if text[:1] in "+-" else text
    if digits.isdigit() and digits.isascii() and (digits == "0" or digits[0] != "0"):
        return int(text)
    return _OTHER


_OTHER = object()


def plain_toml(raw: bytes) -> dict[str, object] | None:
    """``tomllib.loads(raw.decode())`` for a file of plain lines, else None (then ``tomllib`` must read it).

    Plain lines: blank, a comment, ``[section]`` or ``key = value`` (bare names; a value as
    ``_plain_value`` has it), each optionally indented and followed by a comment. A string value
    holding ``#`` is left to ``tomllib``, and so is a file with a table or a key given twice, keys
    before the first table, or carriage returns. Whatever this reads, ``tomllib`` reads the same
    (tests/unit/test_clientconfig.py compares the two on generated files)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if "\r" in text:
        return None
    data: dict[str, object] = {}
    table: dict[str, object] | None = None
    for line in text.split("\n"):
        content, _, comment = line.partition("#")
        if not _plain_chars(comment):
            return None
        content = content.strip(_BLANK)
        if not content:
            continue
        if content[0] == "[":
            name = _bare_key(content[1:-1]) if content[-1] == "]" else None
            if name is None or name in data:
                return None
            table = data[name] = {}
            continue
        key, equals, value_text = content.partition("=")
        name = _bare_key(key)
        if not equals or name is None or table is None or name in table:
            return None
        value = _plain_value(value_text.strip(_BLANK))
        if value is _OTHER:
            return None
        table[name] = value
    return data


def _from_file(data: dict[str, object]) -> str | None:
    """``[client] server`` as ``parse_config`` makes it; None for anything it would refuse or that
    needs more than this module does."""
    for section, given in data.items():
        names = SETTINGS.get(section)
        if names is None or not isinstance(given, dict) or not names.issuperset(given):
            return None
    client = data.get("client", {})
    assert isinstance(client, dict)
    if any(key in client for key in ("cert", "key", "ca")):
        return None
    server = client.get("server")
    if server is not None:
        return os.path.expandvars(server) if isinstance(server, str) else None
    home = data.get("server", {})
    assert isinstance(home, dict)
    given = home.get("home")
    if given is None:
        return _socket_of(default_home())
    if not isinstance(given, str) or not given:
        return None
    expanded = os.path.expandvars(given)
    if expanded.startswith("~") or not _plain(expanded):
        return None
    return _socket_of(expanded)
