"""``dynamo``'s command line without argparse: the same namespace as argparse, or argparse decides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo.cli import dynamo
from dynamo.cli.quickargs import Args, quick

WORDS = ["script.py", "s.py a b", "--write-request", "-W", "--title", "-t", "T", "--asynchronous", "-A", "--timeout",
         "-m", "1.5", "0", "-1", "inf", "nan", "x", "--poll", "-p", "--kill", "-x", "3", " 4", "+5", "1_0", "--list",
         "-l", "--all", "--json", "--config", "c.toml", "--server", "-s", "unix:/s", "-c", "-k", "--ca", "--cert",
         "--key", "", "-", "--", "-h", "--help", "--tit", "--title=T", "-WA", "-tT", "-p3", "--bogus", "-1.5"]


def parsed(argv: list[str]) -> dict[str, Any] | str:
    """argparse's namespace, or how it refused (the exit code)."""
    try:
        return vars(dynamo.parse(argv))
    except SystemExit as exc:
        return f"exit {exc.code}"


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=6))
def test_quick_agrees_with_argparse_or_leaves_it_to_argparse(argv: list[str]) -> None:
    fast = quick(argv)
    if fast is not None:
        assert vars(fast) == parsed(argv)


@pytest.mark.parametrize("argv", [
    [], ["script.py"], ["examples/a.py T2_US_XYZ waitroom", "--write-request", "--title", "set-site-status"],
    ["-W", "-t", "t", "s.py"], ["-A", "s.py", "--timeout", "0.5"], ["--poll", "12"], ["-x", "3"],
    ["--list", "--all", "--json"], ["s.py", "--config", "c.toml", "--server", "unix:/tmp/s"],
    ["s.py", "-c", "cert.pem", "-k", "key.pem", "--ca", "ca.pem", "-s", "tls://h:1"],
])
def test_the_everyday_forms_take_the_quick_path(argv: list[str]) -> None:
    fast = quick(argv)
    assert fast is not None and vars(fast) == parsed(argv)


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--poll", "1", "--kill", "2"], ["--poll", "one"], ["--list", "--title", "t"],
    ["--asynchronous"], ["s.py", "--all"], ["--timeout", "-1", "s.py"], ["--tit", "t", "s.py"], ["-WA", "s.py"],
    ["--title=t", "s.py"], ["a.py", "b.py"], ["--title", "a", "--title", "b", "s.py"], [""], ["--kill", "1", "--json"],
])
def test_help_and_everything_unusual_go_to_argparse(argv: list[str]) -> None:
    assert quick(argv) is None


def test_the_namespaces_have_the_same_attributes() -> None:
    assert set(vars(Args())) == set(vars(dynamo.parse([])))


@pytest.mark.parametrize("cmd", ["a.py", "a.py  b   c ", "dir/a.py x=1 --flag", "a.py 'two words' b", 'a.py "x y"',
                                 "a.py back\\ slash", "a.py\ttab", "a.py\u00a0nbsp", "a.py é ü", ""])
def test_split_is_shlex_split(cmd: str) -> None:
    import shlex
    assert dynamo.split(cmd) == shlex.split(cmd)


@pytest.mark.parametrize("text", ["a.py", "dir/a.py", "/abs/dir/a.tar.gz", ".hidden", "a.", "./a.py", "a//b.py",
                                  "a/./b.py", "dir/", "dir/.", ".", "..", "../x.py", "/", "//x.py", ""])
def test_script_path_is_pathlibs(text: str) -> None:
    from pathlib import Path
    path = Path(text)
    assert dynamo.script_path(text) == (str(path), path.name, path.stem)
