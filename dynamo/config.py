"""Configuration: declared once, typed, validated, documented next to its default, frozen.

Every command reads the TOML file named by ``--config`` or ``$DYNAMO_CONFIG``.
With neither, it uses the **embedded default**, which needs nothing installed:

* state under ``$DYNAMO_HOME`` (default ``~/.dynamo``);
* the SQLite store ``$DYNAMO_HOME/inventory.db``;
* the local socket ``$DYNAMO_HOME/dynamo.sock`` (no TLS listener);
* the invoking Unix user as administrator, and its only user: the state directory (and so the
  socket in it) is private to that user (mode 0700), and applications run as that user, with no
  privilege drop, even when it is root (``Config.single_user``).

The trade-off: in the embedded default an application can read whatever the invoking user can,
the store included. It is a single-user setup. A server shared by several users is configured:
with a file, dynamod run as root runs each application as a uid of its own from
``[applications] uid_range`` when set (``dynamo.server.identities``), else all of them as
``[server] service_user`` (``nobody`` unless set; never root; the weaker mode), and refuses to
start when they cannot reach the work area or use the interpreter (``dynamo.server.preflight``).

``etc/dynamo.toml`` documents every setting for a production server on MariaDB
with TLS. Relative paths in a file are relative to ``server.home``.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dynamo.errors import ConfigurationError


@dataclass(frozen=True)
class ServerConfig:
    home: Path
    """State directory: pid file, logs, application work areas."""
    admins: tuple[str, ...]
    """Unix users registered as administrators (roles admin on inventory and application) when
    the server starts and they are not registered yet."""
    service_user: str | None = None
    """When a configured dynamod runs as root, applications run as this user (``nobody`` unless
    set; never root). Not used by the embedded default, which serves the invoking user alone."""
    pid_file: Path = Path("dynamod.pid")
    log_file: Path = Path("log/server.log")
    change_log: Path = Path("log/changes.log")
    log_level: str = "INFO"


@dataclass(frozen=True)
class StoreConfig:
    url: str
    """``sqlite:///path`` or ``mysql://user@host:port/database``. A password in the URL still works but
    sits in dynamod's memory, which every application inherits: use ``password_file``."""
    password_file: Path | None = None
    """File holding the MySQL password (its first line). Read only by dynamod's keeper process, which
    never forks applications (``dynamo.server.keeper``); keep it readable by root alone."""
    journal_keep_days: float = 30.0
    """Journal records older than this may be compacted away (headers stay); see docs/journal.md."""
    journal_keep_entries: int = 10000
    """...but the newest this many change sets always keep their records."""
    compact_every: float = 3600.0
    """Seconds between journal compactions."""


@dataclass(frozen=True)
class ListenConfig:
    socket: Path | None
    """Local socket; users are identified by their Unix uid (peer credentials)."""
    tls_address: str | None = None
    """``host:port`` for TLS connections, users identified by certificate DN. Off by default."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    """CA bundle (file) client certificates must chain to."""
    max_frame: int = 16 << 20
    """Largest protocol frame accepted, in bytes."""
    client_timeout: float = 60.0
    """Seconds a client may take to complete its TLS handshake and send its request, or to take
    output the server is holding for it; after that the connection is dropped. A client that
    stops reading an application's output holds up the end of that application (and, for a
    writer, the next writer), so it may not do so for ever. While more than 4 MiB of output wait,
    the client must also take at least 16 KiB a second, averaged over this time (a trickle does
    not keep an application alive)."""
    max_connections: int = 2000
    """Client connections at once; one more is refused as overloaded."""
    max_connections_per_peer: int = 64
    """Client connections at once from one peer (a Unix uid on the local socket, an IP address
    over TLS): one peer cannot take every descriptor of the server."""
    max_incoming: int = 256 << 20
    """Bytes of incomplete requests the server holds for all clients together; a connection whose
    frame would pass it is dropped as overloaded."""
    max_incoming_per_user: int = 64 << 20
    """Bytes of incomplete requests the server holds for one user (local name or certificate DN)."""


@dataclass(frozen=True)
class ApplicationsConfig:
    work_area: Path = Path("work")
    """One directory per application run below this."""
    timeout: float = 7200.0
    """Seconds an application may run unless it asks for less (0 = no limit)."""
    kill_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when an application is stopped."""
    max_running: int = 16
    """Applications running at once (read-only ones; writers run one at a time)."""
    retain_days: float = 7.0
    """Work areas and records of finished applications are removed after this."""
    max_changes: int = 20_000_000
    """Records a write application may send."""
    max_output: int = 64 << 20
    """Bytes of an application's stdout (and as many of its stderr) the server keeps for --poll;
    its client still receives all of it."""
    max_memory: int = 8 << 30
    """Bytes of address space an application may add to the image it inherits (RLIMIT_AS above the
    server's size at fork time; 0 = no limit). A script that allocates past it gets MemoryError."""
    max_cpu: int = 0
    """CPU seconds an application may use (RLIMIT_CPU; 0 = only the wall-clock ``timeout``)."""
    write_nice: int = 5
    """How much lower than dynamod a write application runs (its nice value, 0..19 above dynamod's),
    as the commit process of its records does: a writer is a batch job, and on a machine with few
    cores one at dynamod's priority takes half of the CPU the calls served meanwhile get (issue 10).
    It still gets every CPU nothing else wants. 0: writers run at dynamod's priority."""
    max_processes: int = 256
    """Processes an application's user may have (RLIMIT_NPROC). Applied only when each application
    runs under a uid of its own (``uid_range``): a shared user's count is every application's."""
    max_open_files: int = 1024
    """Descriptors per process of an application (RLIMIT_NOFILE)."""
    max_file_size: int = 4 << 30
    """Largest file an application may write in its work area, in bytes (RLIMIT_FSIZE; 0 = no limit)."""
    uid_range: str | None = None
    """``FIRST-LAST`` (e.g. ``61184-62183``, systemd's dynamic users): when dynamod runs as root, each
    application runs as a uid of this range of its own, so applications cannot signal, trace or
    enter each other, and everything of that uid is killed when the application ends. No uid of it
    may belong to a user (or, unless ``group`` is set, its number to a group) or run processes.
    Unset: every application runs as ``[server] service_user`` (the weaker mode, docs/server.md)."""
    group: str | None = None
    """Group the per-application uids run in; unset, a gid of the same number as the uid."""


@dataclass(frozen=True)
class WebConfig:
    address: str | None = None
    """``host:port`` the web server (``/web`` pages, ``/data`` JSON) listens on; port 0 takes any
    free port (dynamod's ready line names it). Empty: no web server. A configuration file serves
    HTTP only when its ``[web]`` section names an address; the embedded default serves plain
    HTTP on ``127.0.0.1`` (anonymous and read-only)."""
    tls_cert: Path | None = None
    """With ``tls_key`` and ``tls_ca``: HTTPS, callers identified by client certificate DN with the
    native protocol's rules (RFC 3820 proxies included). Web workers hold this key: web modules are
    installed by administrators, unlike applications."""
    tls_key: Path | None = None
    tls_ca: Path | None = None
    workers: int = 2
    """Worker processes of one generation; they share the listening socket."""
    threads: int = 8
    """Request threads per worker."""
    modules_config: Path | None = None
    """The web modules configuration file (JSON or TOML), given to each module's constructor as a
    ``Configuration``."""
    module_dirs: tuple[str, ...] = ()
    """Extra directories of web modules (each ``name.py`` or ``name/__init__.py`` maps to
    ``/web/name/...`` and ``/data/name/...``), so a site adds modules without touching the package."""
    max_requests: int = 10000
    """Requests a worker serves before it is replaced (0 = no limit)."""
    max_private_memory: int = 1 << 30
    """Bytes of private (no longer shared) memory after which a worker is replaced (0 = no limit)."""
    max_body: int = 64 << 20
    """Largest request body in bytes."""
    timeout: float = 10.0
    """Seconds a client may stay silent (handshake, request, keep-alive)."""
    debug: bool = False
    """Show a failing module's traceback to the client."""


@dataclass(frozen=True)
class ClientConfig:
    server: str
    """Where clients connect: ``unix:/path/to/socket`` or ``tls://host:port``."""
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    """CA bundle the server's certificate must chain to."""


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    store: StoreConfig
    listen: ListenConfig
    applications: ApplicationsConfig
    client: ClientConfig
    web: WebConfig = WebConfig()
    source: str = "embedded default"
    single_user: bool = False
    """Serve the invoking user alone: private state directory, applications run as that user (no
    service user, even as root). True for the embedded default only; not a file setting."""

    def path(self, p: Path) -> Path:
        """A configured path, relative ones taken from ``server.home``."""
        return p if p.is_absolute() else self.server.home / p


def default_home() -> Path:
    return Path(os.environ.get("DYNAMO_HOME") or Path.home() / ".dynamo").expanduser().absolute()


def embedded_default(home: Path | None = None) -> Config:
    """The single-user server: see the module's docstring."""
    home = home or default_home()
    socket = home / "dynamo.sock"
    return Config(
        server=ServerConfig(home=home, admins=(getpass.getuser(),)),
        store=StoreConfig(url=f"sqlite:///{home / 'inventory.db'}"),
        listen=ListenConfig(socket=socket),
        applications=ApplicationsConfig(),
        client=ClientConfig(server=f"unix:{socket}"),
        single_user=True,
        web=WebConfig(address="127.0.0.1:0"),
    )


def _configured_base(home: Path | None) -> Config:
    """What a configuration file starts from: the embedded default's paths, but a multi-user
    server, which run as root runs applications as ``nobody`` unless told otherwise."""
    base = embedded_default(home)
    service_user = "nobody" if os.geteuid() == 0 else None
    return replace(base, server=replace(base.server, service_user=service_user), single_user=False)


_SECTIONS = {"server": ServerConfig, "store": StoreConfig, "listen": ListenConfig,
             "applications": ApplicationsConfig, "client": ClientConfig, "web": WebConfig}


def _convert(section: str, name: str, kind: Any, value: Any) -> Any:
    where = f"[{section}] {name}"
    text = str(kind)
    if value is None:
        if "None" in text:
            return None
        raise ConfigurationError(f"{where}: may not be empty")
    if "Path" in text:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{where}: expected a path")
        return Path(os.path.expandvars(value)).expanduser()
    if "tuple" in text:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f"{where}: expected a list of strings")
        return tuple(value)
    if text == "bool":
        if not isinstance(value, bool):
            raise ConfigurationError(f"{where}: expected true or false")
        return value
    if text == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"{where}: expected a non-negative number")
        return float(value)
    if text == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"{where}: expected a non-negative integer")
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: expected a string")
    return os.path.expandvars(value)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """The configuration from ``path``, else ``$DYNAMO_CONFIG``, else the embedded default."""
    path = path or os.environ.get("DYNAMO_CONFIG")
    if not path:
        return embedded_default()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"configuration {path}: {exc}") from exc
    return parse_config(data, str(path))


def parse_config(data: dict[str, Any], source: str) -> Config:
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigurationError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
    server_home = data.get("server", {}).get("home")
    base = _configured_base(Path(os.path.expandvars(server_home)).expanduser() if server_home else None)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        given = data.get(name, {})
        if not isinstance(given, dict):
            raise ConfigurationError(f"{source}: [{name}] must be a table")
        known = {f.name: f for f in fields(cls)}
        bad = set(given) - set(known)
        if bad:
            raise ConfigurationError(f"{source}: [{name}] unknown setting(s) {', '.join(sorted(bad))}")
        values = {key: _convert(name, key, known[key].type, value) for key, value in given.items()}
        # without a [web] section a file serves no HTTP (the embedded default's address is not inherited)
        start = WebConfig() if name == "web" and "web" not in data else getattr(base, name)
        sections[name] = replace(start, **values)
    if sections["web"].address == "":
        sections["web"] = replace(sections["web"], address=None)
    config = Config(**sections, source=source)
    _validate(config)
    return config


def parse_uid_range(text: str) -> range:
    """``"61184-62183"`` -> range(61184, 62184). Raises ConfigurationError."""
    first, sep, last = text.partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ConfigurationError(f"[applications] uid_range {text!r}: expected FIRST-LAST, e.g. 61184-62183")
    low, high = int(first), int(last)
    if not 1 <= low <= high < 1 << 31:
        raise ConfigurationError(f"[applications] uid_range {text!r}: uids must be within 1..{(1 << 31) - 1}, "
                                 "the first not above the last")
    return range(low, high + 1)


def _validate_applications(config: Config) -> None:
    apps = config.applications
    if apps.write_nice > 19:
        raise ConfigurationError(f"{config.source}: [applications] write_nice {apps.write_nice}: expected 0..19")
    if apps.uid_range is None:
        return
    pool = parse_uid_range(apps.uid_range)
    if len(pool) < apps.max_running + 1:
        raise ConfigurationError(f"{config.source}: [applications] uid_range holds {len(pool)} uid(s), fewer than "
                                 f"max_running + 1 (a writer) = {apps.max_running + 1}")


def _validate(config: Config) -> None:
    _validate_applications(config)
    listen = config.listen
    if listen.tls_address is not None:
        missing = [n for n in ("tls_cert", "tls_key", "tls_ca") if getattr(listen, n) is None]
        if missing:
            raise ConfigurationError(f"{config.source}: [listen] tls_address needs {', '.join(missing)}")
        host, _, port = listen.tls_address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"{config.source}: [listen] tls_address must be host:port")
    if listen.socket is None and listen.tls_address is None:
        raise ConfigurationError(f"{config.source}: [listen] needs a socket or a tls_address")
    if not config.store.url.startswith(("sqlite:", "mysql:", "mariadb:")):
        raise ConfigurationError(f"{config.source}: [store] url must start with sqlite: or mysql:")
    if config.store.password_file is not None and not config.store.url.startswith(("mysql:", "mariadb:")):
        raise ConfigurationError(f"{config.source}: [store] password_file is for MySQL URLs only")
    _validate_web(config)
    if config.server.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigurationError(f"{config.source}: [server] log_level must be DEBUG, INFO, WARNING or ERROR")


def _validate_web(config: Config) -> None:
    web = config.web
    if web.address is None:
        return
    host, _, port = web.address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"{config.source}: [web] address must be host:port")
    given = [n for n in ("tls_cert", "tls_key", "tls_ca") if getattr(web, n) is not None]
    if given and len(given) != 3:
        raise ConfigurationError(f"{config.source}: [web] HTTPS needs tls_cert, tls_key and tls_ca")
    if web.workers < 1 or web.threads < 1:
        raise ConfigurationError(f"{config.source}: [web] workers and threads must be at least 1")


__all__ = ["Config", "ConfigurationError", "embedded_default", "load_config", "parse_config", "parse_uid_range"]
