"""End-to-end fixtures: ``dynamod`` started as a real process, driven by the real commands.

Each test gets a server with a state directory of its own (short, under /tmp,
because Unix socket paths are limited to 108 bytes), on the SQLite default or
on a fresh MariaDB database. The commands are the console scripts installed
next to the running Python (``pip install .``, by tests/run). A throwaway CA provides the
certificates for the TLS tests.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def command(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the {name} command is not installed: pip install . first (tests/run does)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    code: int
    out: str
    err: str


class Server:
    def __init__(self, home: Path, store_url: str, tls: dict[str, Path] | None = None, extra: str = ""):
        self.home = home
        self.socket = home / "dynamo.sock"
        self.config = home / "dynamo.toml"
        self.tls_port = free_port() if tls else None
        lines = [
            "[server]", f'home = "{home}"', 'log_level = "DEBUG"',
            "[store]", f'url = "{store_url}"',
            "[listen]", f'socket = "{self.socket}"',
        ]
        if tls:
            lines += [f'tls_address = "127.0.0.1:{self.tls_port}"', f'tls_cert = "{tls["server_cert"]}"',
                      f'tls_key = "{tls["server_key"]}"', f'tls_ca = "{tls["ca"]}"']
        lines += ["[applications]", "kill_grace = 2.0", extra, "[client]", f'server = "unix:{self.socket}"']
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.output = home / "dynamod.out"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DYNAMO_SERVER", None)
        env["DYNAMO_CONFIG"] = str(self.config)
        env.update(extra)
        return env

    def start(self, timeout: float = 60, umask: int = -1) -> None:
        """``umask``: dynamod's (-1: the tests' own)."""
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen([command("dynamod"), "--config", str(self.config)], stdout=out,
                                            stderr=subprocess.STDOUT, env=self.env(), umask=umask)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dynamod exited with {self.process.returncode}:\n{self.output.read_text()}")
            if self.socket.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.socket))
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        pytest.fail("dynamod did not come up")

    def children(self) -> list[int]:
        """dynamod's children but its own helpers (the keeper, the spare, a commit process, a zygote): the
        applications (and consoles) running."""
        return [pid for pid in self.all_children() if not cmdline_of(pid).startswith(HELPERS)]

    def spares(self) -> list[int]:
        """The child forked ahead for the next read-only application (dynamo.server.spare), waiting."""
        return [pid for pid in self.all_children() if cmdline_of(pid).startswith("dynamo: spare")]

    def keeper(self) -> int | None:
        """The keeper process (dynamo.server.keeper), which holds the secrets, if there is one."""
        return next((pid for pid in self.all_children() if cmdline_of(pid).startswith("dynamod: keeper")), None)

    def all_children(self) -> list[int]:
        assert self.process is not None
        return children_of(self.process.pid)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait: dynamod must leave no child behind."""
        assert self.process is not None
        children = self.all_children()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"dynamod did not stop within {timeout} s of SIGTERM")
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), \
                f"child {pid} survived dynamod"
        self.process = None
        return code

    def run(self, *args: str, input: str | None = None, timeout: float = 60, env: dict[str, str] | None = None,
            cmd: str = "dynamo") -> Result:
        done = subprocess.run([command(cmd), *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=env or self.env())
        return Result(done.returncode, done.stdout, done.stderr)

    def shell(self, text: str) -> Result:
        return self.run(input=text)

    def log(self) -> str:
        path = self.home / "log" / "server.log"
        return path.read_text() if path.exists() else ""

    def script(self, name: str, body: str) -> Path:
        path = self.home / name
        path.write_text(body)
        return path


HELPERS = ("dynamod: keeper", "dynamo: spare", "dynamo: writer spare", "dynamod: commit", "dynamod: zygote")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc; one that exits meanwhile is left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                pids.append(int(entry.name))
    return pids


def cmdline_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts): no race between the check and the read."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def wait_for(predicate: Callable[[], object], timeout: float = 15) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not reached within {timeout} s")


def run_as_nobody(server: Server, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` as the Unix user nobody (tests run as root), with the installed Dynamo (this
    source tree's when only /usr/bin/python3 is usable by nobody); skips when no Python >= 3.11 is."""
    import pwd
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another local user")
    nobody = pwd.getpwnam("nobody")

    def usable(python: str) -> bool:
        try:
            return subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                                  user=nobody.pw_uid, capture_output=True, cwd="/").returncode == 0
        except OSError:
            return False

    python = next((p for p in (sys.executable, "/usr/bin/python3") if usable(p)), None)
    if python is None:
        pytest.skip("no Python >= 3.11 that user nobody may run")
    # the installed package when nobody may run the tests' Python, else this tree's
    env = server.env() if python == sys.executable else server.env(PYTHONPATH=str(ROOT))
    return subprocess.run([python, "-m", module, *args], env=env, capture_output=True,
                          text=True, user=nobody.pw_uid, group=nobody.pw_gid, cwd="/", timeout=60)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store_url_e2e(request: Any) -> str:
    if request.param == "sqlite":
        return "sqlite"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
def server_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="dyn", dir="/tmp"))
    os.chmod(home, 0o711)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def server(store_url_e2e: str, server_home: Path) -> Iterator[Server]:
    url = f"sqlite:///{server_home}/inventory.db" if store_url_e2e == "sqlite" else store_url_e2e
    s = Server(server_home, url)
    s.start()
    yield s
    if s.process is not None:
        assert s.stop() == 0, s.output.read_text()


# --- a throwaway CA -----------------------------------------------------------------

def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Dynamo Test"),
                      *(x509.NameAttribute(NameOID.COMMON_NAME, part) for part in cn.split("/"))])


def _issue(directory: Path, stem: str, cn: str, issuer: tuple[Any, Any] | None, server: bool = False) -> \
        tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer[0].subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2)))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if server:
        import ipaddress
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    signer = issuer[1] if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = _issue(d, "ca", "Dynamo Test CA", None)
    _issue(d, "server", "localhost", ca, server=True)
    _issue(d, "alice", "alice", ca)
    _issue(d, "mallory", "mallory", ca)
    _issue(d, "lookalike", "alice/123", ca)  # a DN that looks like a proxy of alice's
    _issue(d, "other-ca", "Some Other CA", None)
    return {"ca": d / "ca.pem", "server_cert": d / "server.pem", "server_key": d / "server.key",
            "alice": d / "alice.pem", "alice_key": d / "alice.key", "mallory": d / "mallory.pem",
            "mallory_key": d / "mallory.key", "other_ca": d / "other-ca.pem",
            "lookalike": d / "lookalike.pem", "lookalike_key": d / "lookalike.key",
            "alice_dn": Path("/C=US/O=Dynamo Test/CN=alice")}
