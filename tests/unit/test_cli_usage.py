"""Conflicting or ignored options of the client commands are usage errors (exit 64) that say why.

Each call names a server socket that does not exist: a command that went on instead of refusing
its arguments would fail differently (unreachable server, 69), never pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from dynamo.cli import dynamo, exec_auth, inject, user_auth
from dynamo.exitcodes import ClientExit


def usage_error(main: Callable[[list[str]], None], argv: list[str], capsys: Any) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == ClientExit.USAGE
    return str(capsys.readouterr().err)


@pytest.fixture
def nowhere(tmp_path: Path) -> list[str]:
    return ["--server", f"unix:{tmp_path}/no-such-socket"]


@pytest.mark.parametrize(("argv", "why"), [
    (["--poll", "1", "--kill", "2"], "argument -x/--kill: not allowed with argument -p/--poll"),
    (["--kill", "2", "--list"], "argument -l/--list: not allowed with argument -x/--kill"),
    (["script.py", "--poll", "1"], "argument -p/--poll: not allowed with argument script"),
    (["--list", "script.py"], "argument script: not allowed with argument -l/--list"),
    (["--poll", "1", "--write-request"], "--write-request cannot be used with --poll"),
    (["--list", "--title", "t", "--timeout", "1"], "--title, --timeout cannot be used with --list"),
    (["--poll", "1", "--all"], "--all cannot be used with --poll"),
    (["--kill", "1", "--json"], "--json cannot be used with --kill"),
    (["script.py", "--all"], "--all cannot be used with a script or the shell"),
    (["--asynchronous"], "--asynchronous cannot be used with the shell (it is read-only and interactive"),
    (["--poll", "one"], "argument -p/--poll: invalid int value: 'one'"),  # argparse's own errors: the same code
])
def test_dynamo_refuses_conflicting_modes(argv: list[str], why: str, nowhere: list[str], capsys: Any) -> None:
    assert f"dynamo: error: {why}" in usage_error(dynamo.main, argv + nowhere, capsys)


@pytest.mark.parametrize(("argv", "why"), [
    (["--list", "--delete", "--title", "t"], "argument -D/--delete: not allowed with argument -L/--list"),
    (["--executable", "s.py", "--delete", "--title", "t"],
     "argument -D/--delete: not allowed with argument -x/--executable"),
    (["--list", "--executable", "s.py"], "argument -x/--executable: not allowed with argument -L/--list"),
    (["--list", "--user", "alice"], "--user cannot be used with --list"),
])
def test_exec_auth_refuses_conflicting_modes(argv: list[str], why: str, nowhere: list[str], capsys: Any) -> None:
    assert f"dynamo-exec-auth: error: {why}" in usage_error(exec_auth.main, argv + nowhere, capsys)


@pytest.mark.parametrize(("argv", "why"), [
    (["--list", "--delete", "--user", "a"], "argument -D/--delete: not allowed with argument -L/--list"),
    (["--user", "a", "--revoke", "--delete"], "argument -D/--delete: not allowed with argument -R/--revoke"),
    (["--list", "--user", "a"], "--user cannot be used with --list"),
    (["--user", "a", "--delete", "--role", "admin", "--target", "inventory"],
     "--role, --target cannot be used with --delete"),
    (["--user", "a", "--revoke", "--role", "admin", "--target", "inventory", "--dn", "/CN=a"],
     "--dn cannot be used with --revoke"),
])
def test_user_auth_refuses_conflicting_modes(argv: list[str], why: str, tmp_path: Path, capsys: Any) -> None:
    # a configuration whose store cannot be opened: going on would fail with 1, not 64
    config = tmp_path / "dynamo.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/missing-dir/x.db"\n')
    assert f"dynamo-user-auth: error: {why}" in usage_error(user_auth.main, [*argv, "--config", str(config)], capsys)


def test_inject_usage_errors_have_the_usage_code(nowhere: list[str], capsys: Any) -> None:
    # the file is optional since the original's builder options (--dataset, ...) can describe the document
    assert "give a JSON file (or -) or builder options such as --dataset" in usage_error(inject.main, nowhere, capsys)
