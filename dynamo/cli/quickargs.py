"""The ``dynamo`` command's everyday command lines, parsed without ``argparse``.

Building the ``argparse`` parser costs more than connecting to the server, on every call.
:func:`quick` parses the forms people type — a script string, the options spelled out in
full (``--title T``, ``-t T``), ``--poll ID``, ``--list`` — into what
``dynamo.cli.dynamo.parse`` would return, and returns None for anything else: help, an
unknown, abbreviated, joined (``-WA``, ``--title=T``) or repeated option, a value that starts
with ``-``, a value argparse would refuse, or a combination ``parse`` refuses. The caller then
runs ``parse``, so help, errors and their exit code come from ``argparse`` as before
(``tests/unit/test_quickargs.py`` compares the two on generated command lines).
"""

from __future__ import annotations

import math

_FLAGS = {"-W": "write_request", "--write-request": "write_request", "-A": "asynchronous",
          "--asynchronous": "asynchronous", "-l": "list", "--list": "list", "--all": "all", "--json": "json"}
_VALUES = {"-t": "title", "--title": "title", "-m": "timeout", "--timeout": "timeout", "-p": "poll",
           "--poll": "poll", "-x": "kill", "--kill": "kill", "--config": "config", "-s": "server",
           "--server": "server", "-c": "cert", "--cert": "cert", "-k": "key", "--key": "key", "--ca": "ca"}
RUN_OPTIONS = ("write_request", "title", "asynchronous", "timeout")
"""What only a script uses (``--poll``, ``--kill`` and ``--list`` refuse them)."""


class Args:
    """``dynamo``'s arguments, with the attributes and defaults of ``parse``'s namespace."""

    def __init__(self) -> None:
        self.cmd: str | None = None
        self.write_request = False
        self.title: str | None = None
        self.asynchronous = False
        self.timeout: float | None = None
        self.poll: int | None = None
        self.kill: int | None = None
        self.list = False
        self.all = False
        self.json = False
        self.config: str | None = None
        self.server: str | None = None
        self.cert: str | None = None
        self.key: str | None = None
        self.ca: str | None = None


def hours_value(text: str) -> float | None:
    """A number of hours >= 0, or None when ``text`` is not one (``dynamo.cli.dynamo.hours`` says why)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _convert(dest: str, text: str) -> object:
    """The value argparse would store, or None where argparse would refuse ``text``."""
    if dest in ("poll", "kill"):
        try:
            return int(text)
        except ValueError:
            return None
    if dest == "timeout":
        return hours_value(text)
    return text


def quick(argv: list[str]) -> Args | None:
    """``argv`` parsed as ``parse`` would, or None: ``parse`` must decide (see the module's docstring)."""
    args = Args()
    seen: set[str] = set()
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word and word[0] != "-":
            if "cmd" in seen:
                return None
            seen.add("cmd")
            args.cmd = word
            continue
        dest = _FLAGS.get(word)
        if dest is not None:
            value: object = True
        else:
            dest = _VALUES.get(word)
            if dest is None or i == len(argv) or argv[i].startswith("-"):
                return None
            value = _convert(dest, argv[i])
            i += 1
            if value is None:
                return None
        if dest in seen:
            return None
        seen.add(dest)
        setattr(args, dest, value)
    return args if _consistent(seen) else None


def _consistent(seen: set[str]) -> bool:
    """False for what ``parse`` refuses: two modes, or an option the chosen mode would ignore."""
    modes = seen & {"cmd", "poll", "kill", "list"}
    if len(modes) > 1:
        return False
    mode = next(iter(modes), "")
    if mode in ("poll", "kill", "list"):
        return not (seen.intersection(RUN_OPTIONS) or ("all" in seen and mode != "list")
                    or ("json" in seen and mode == "kill"))
    return not ({"all", "json"} & seen or (mode == "" and seen.intersection(RUN_OPTIONS)))
