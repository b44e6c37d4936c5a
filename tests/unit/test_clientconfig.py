"""Where ``dynamo`` connects, read without ``dynamo.config``: the same answer, the same errors."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo import config as full
from dynamo.cli.clientconfig import SETTINGS, ClientView, client_config, plain_toml
from dynamo.errors import ConfigurationError


def test_the_names_are_dynamo_configs() -> None:
    sections = {name: cls for name, cls in full._SECTIONS.items()}
    assert set(SETTINGS) == set(sections)
    for name, cls in sections.items():
        assert SETTINGS[name] == {f.name for f in dataclasses.fields(cls)}, name


@pytest.mark.parametrize("home", [None, "", "/srv/dyn", "/srv/dyn/", "/srv//dyn", "/srv/./dyn", "rel/dyn", "~/dyn",
                                  "/"])
@pytest.mark.parametrize("user_home", ["/root", "/home/x/", "/"])
def test_the_embedded_default(monkeypatch: pytest.MonkeyPatch, home: str | None, user_home: str) -> None:
    monkeypatch.delenv("DYNAMO_CONFIG", raising=False)
    monkeypatch.setenv("HOME", user_home)
    if home is None:
        monkeypatch.delenv("DYNAMO_HOME", raising=False)
    else:
        monkeypatch.setenv("DYNAMO_HOME", home)
    lean = client_config(None)
    assert isinstance(lean, ClientView)
    assert lean.client.server == full.load_config(None).client.server


FILES = [
    "",
    '[client]\nserver = "unix:/run/dynamo.sock"\n',
    '[client]\nserver = "unix:$DYNAMO_TEST_DIR/x.sock"\n',
    '[client]\nserver = "tls://h:1"\n[store]\nurl = "mysql://u@h/db"\n',
    '[server]\nhome = "/srv/dynamo"\n[store]\nurl = "sqlite:////srv/dynamo/x.db"\n',
    '[server]\nhome = "$DYNAMO_TEST_DIR/state/"\n',
    '[server]\nhome = "relative"\n',
    '[server]\nhome = "~/state"\n',
    '[listen]\nsocket = "/elsewhere.sock"\n',
    '[client]\nserver = ""\n',
]
BAD = [
    "[client\n",                                     # not TOML
    "[clinet]\nserver = 'unix:/x'\n",                # unknown section
    "[client]\nsevrer = 'unix:/x'\n",                # unknown setting
    "[client]\nserver = 3\n",                        # wrong type
    "[server]\nhome = ''\n",
    "client = 1\n",                                  # a section that is not a table
    "[client]\nserver = 'tls://h:1'\ncert = ''\n",    # certificate settings: dynamo.config's
]


@pytest.mark.parametrize("text", FILES)
def test_a_file_gives_dynamo_configs_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("DYNAMO_TEST_DIR", str(tmp_path))
    path = tmp_path / "dynamo.toml"
    path.write_text(text)
    assert client_config(str(path)).client.server == full.load_config(path).client.server
    monkeypatch.setenv("DYNAMO_CONFIG", str(path))
    assert client_config(None).client.server == full.load_config(None).client.server


@pytest.mark.parametrize("text", BAD)
def test_a_bad_file_gives_dynamo_configs_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "dynamo.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as expected:
        full.load_config(path)
    with pytest.raises(ConfigurationError) as got:
        client_config(str(path))
    assert str(got.value) == str(expected.value)


def test_a_missing_file_gives_dynamo_configs_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read configuration"):
        client_config(str(tmp_path / "none.toml"))


def test_certificate_settings_are_read_by_dynamo_config(tmp_path: Path) -> None:
    path = tmp_path / "dynamo.toml"
    path.write_text('[client]\nserver = "tls://h:1"\ncert = "~/c.pem"\n')
    got = client_config(str(path))
    assert not isinstance(got, ClientView) and got.client.cert == Path("~/c.pem").expanduser()


HEAVY = ("argparse", "tomllib", "dataclasses", "pathlib", "shlex", "dynamo.config", "json", "socket", "enum",
         "typing", "re", "struct")
PLAIN_FILE = '[client]\nserver = "unix:{sock}"\n[store]\nurl = "sqlite:///x"  # the store\n'
OTHER_FILE = '[client]\nserver = "unix:{sock}"\n[server]\nadmins = ["root"]\n'  # an array: tomllib's


@contextlib.contextmanager
def hanging_up(tmp_path: Path, sock_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A server on ``sock_path`` that takes one request and hangs up; a script to ask it to run, and the
    environment of a client with no configuration file (``DYNAMO_HOME`` = ``tmp_path``)."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen()

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    env = dict(os.environ, DYNAMO_HOME=str(tmp_path))
    env.pop("DYNAMO_CONFIG", None)
    try:
        yield script, env
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.parametrize("config", [None, PLAIN_FILE, OTHER_FILE])
def test_running_a_script_imports_nothing_heavy(tmp_path: Path, config: str | None) -> None:
    """``dynamo script.py`` against a server (here one that hangs up after the request): no argparse,
    no dynamo.config, no json, socket, enum or typing, and tomllib only to read a configuration file
    that is not written in plain lines."""
    with_file = config is not None
    # without a file the client finds the server at $DYNAMO_HOME/dynamo.sock
    sock_path = tmp_path / ("s.sock" if with_file else "dynamo.sock")
    code = ("import sys\nfrom dynamo.cli.dynamo import main\ntry:\n    main([sys.argv[1], '--title', 't'])\n"
            "except SystemExit as exc:\n    print(exc.code, file=sys.stderr)\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    with hanging_up(tmp_path, sock_path) as (script, env):
        if config is not None:
            path = tmp_path / "dynamo.toml"
            path.write_text(config.format(sock=sock_path))
            env["DYNAMO_CONFIG"] = str(path)
        done = subprocess.run([sys.executable, "-c", code, str(script)], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
    assert "the server closed the connection" in done.stderr and "69" in done.stderr, done.stderr
    imported = set(done.stdout.split())
    if config == OTHER_FILE:
        assert "tomllib" in imported
        imported -= {"tomllib", "re", "typing", "enum"}  # what tomllib imports
    assert imported == set()


def test_the_installed_command_imports_nothing_heavy(tmp_path: Path) -> None:
    """The ``dynamo`` command as installed (next to this interpreter: the suite runs on the installed
    package) imports none of the heavy modules either: pip's console_scripts wrapper imported ``re``,
    ``enum`` and ``functools`` before the client's first line (setup.py installs a script of its own)."""
    command = Path(sys.executable).parent / "dynamo"
    assert command.exists(), "the suite runs on the installed package, commands included"
    with hanging_up(tmp_path, tmp_path / "dynamo.sock") as (script, env):
        done = subprocess.run([sys.executable, "-X", "importtime", str(command), str(script)], env=env,
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "the server closed the connection" in done.stderr, done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "dynamo.cli.dynamo" in imported
    assert imported & set(HEAVY) == set()


# --- plain_toml: what it reads, tomllib reads the same ------------------------------------------

_NAMES = st.sampled_from(["client", "server", "store", "a-b_1", "x", "home", "url", "1", "", "a b", "a.b", "é"])
_VALUES = st.one_of(
    st.sampled_from(['"unix:/x.sock"', "'unix:/x'", '""', "''", '"a#b"', '"a\\\\b"', "'a\\\\b'", '"a\'b"', "'a\"b'",
                     "true", "false", "True", "0", "00", "-0", "+7", "12", "1_000", "1.5", "[1]", "{}", '"""x"""',
                     '"x" "y"', '"x"y', "", "'\t'", '"\x01"', '"\x7f"', '"\u00a0é\u0085"', "inf", "0x10"]),
    st.text(min_size=0, max_size=8),
)
_LINES = st.one_of(
    st.builds(lambda n, pad: f"{pad}[{n}]", _NAMES, st.sampled_from(["", " ", "\t"])),
    st.builds(lambda n, v, eq: f"{n}{eq}{v}", _NAMES, _VALUES, st.sampled_from(["=", " = ", "\t=  ", " "])),
    st.builds(lambda c: f"# {c}", st.text(max_size=6)),
    st.sampled_from(["", "  ", "[[client]]", "[client", "client]", "\ufeff[client]", "x = 1 # c", "[client] # c"]),
    st.text(max_size=10),
)


# files that are mostly plain, so that most are read (the lines above: mostly left to tomllib)
_BARE = st.text(alphabet="abXY09_-", min_size=1, max_size=4)
_PLAIN_VALUES = st.one_of(
    st.builds(lambda t: f'"{t}"', st.text(max_size=6)),
    st.builds(lambda t: f"'{t}'", st.text(max_size=6)),
    st.integers(-(10 ** 20), 10 ** 20).map(str),
    st.sampled_from(["true", "false", "+1", "-0", "007", "1e3"]),
)
_PLAIN_LINES = st.one_of(
    st.builds(lambda n, pad: f"{pad}[{n}]{pad}", _BARE, st.sampled_from(["", " ", "\t"])),
    st.builds(lambda n, v, eq, c: f"{n}{eq}{v}{c}", _BARE, _PLAIN_VALUES, st.sampled_from(["=", " = ", "\t= "]),
              st.sampled_from(["", " # c", "#", "  # é\t#"])),
    st.sampled_from(["", "# note", "  "]),
)
_MOSTLY_PLAIN = st.builds(lambda head, lines: [head, *lines], st.sampled_from(["[client]", "[ x ]", "\t[a-b]"]),
                          st.lists(_PLAIN_LINES, max_size=8))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.lists(_LINES, max_size=8), _MOSTLY_PLAIN), st.sampled_from(["\n", "\r\n"]))
def test_plain_toml_reads_what_tomllib_reads(lines: list[str], end: str) -> None:
    raw = end.join(lines).encode("utf-8", "surrogatepass")
    got = plain_toml(raw)
    if got is None:
        return
    assert got == tomllib.loads(raw.decode())


@pytest.mark.parametrize("text", [f.format(sock="/s") for f in (PLAIN_FILE, *FILES)] +
                         ['[client]\nserver = "unix:/s" # where\n\n# the end\n', "  [ client ]\n\tserver='unix:/s'\n"])
def test_plain_files_are_read_without_tomllib(text: str) -> None:
    assert plain_toml(text.encode()) == tomllib.loads(text)


@pytest.mark.parametrize("text", [OTHER_FILE, '[client]\nserver = "unix:/a#b"\n', "server = 'unix:/x'\n",
                                  "[client]\r\nserver = 'unix:/x'\r\n", '[client]\nserver = "\\u0041"\n',
                                  "[client]\n[client]\n", "[client]\nserver = 'a'\nserver = 'b'\n"])
def test_other_files_are_left_to_tomllib(text: str) -> None:
    assert plain_toml(text.encode()) is None
