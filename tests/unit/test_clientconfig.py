"""Where ``dynamo`` connects, read without ``dynamo.config``: the same answer, the same errors."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dynamo import config as full
from dynamo.cli.clientconfig import SETTINGS, ClientView, client_config
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


HEAVY = ("argparse", "tomllib", "dataclasses", "pathlib", "shlex", "dynamo.config")


@pytest.mark.parametrize("with_file", [False, True])
def test_running_a_script_imports_nothing_heavy(tmp_path: Path, with_file: bool) -> None:
    """``dynamo script.py`` against a server (here one that hangs up after the request): no argparse,
    no dynamo.config, and tomllib only to read a configuration file."""
    sock_path = tmp_path / "s.sock"
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
    if with_file:
        config = tmp_path / "dynamo.toml"
        config.write_text(f'[client]\nserver = "unix:{sock_path}"\n[store]\nurl = "sqlite:///x"\n')
        env["DYNAMO_CONFIG"] = str(config)
    code = ("import sys\nfrom dynamo.cli.dynamo import main\ntry:\n    main([sys.argv[1], '--title', 't'])\n"
            "except SystemExit as exc:\n    print(exc.code, file=sys.stderr)\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    if not with_file:
        sock_path.rename(tmp_path / "dynamo.sock")
    done = subprocess.run([sys.executable, "-c", code, str(script)], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    thread.join(10)
    listener.close()
    assert "the server closed the connection" in done.stderr and "69" in done.stderr, done.stderr
    assert done.stdout.split() == (["tomllib"] if with_file else [])
