"""``dynamo``: run an application, open the interactive shell, poll, kill, list.

    dynamo '<script> [<options>]'                        run read-only; exit with its exit code
    dynamo '<script> [<options>]' --write-request --title T   run with write access (authorized scripts)
    dynamo                                               the interactive shell (read-only)
    dynamo --asynchronous '<script>'                     print the application id and return
    dynamo --poll ID | --kill ID | --list [--all]
"""

from __future__ import annotations

import os
import sys
import time

from dynamo.cli.client import Client, client_configuration, connect, fail, refused, request
from dynamo.cli.client import Replies as Reply
from dynamo.cli.quickargs import hours_value, quick
from dynamo.exitcodes import ClientExit

# The hot path (run a script, the defaults or a configuration file) imports no argparse, pathlib,
# shlex, typing, enum, socket, json or dynamo.config: see dynamo.cli.quickargs, dynamo.cli.clientconfig,
# dynamo.cli.client and dynamo.protocol.framing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from dynamo.cli.quickargs import Args


def hours(text: str) -> float:
    import argparse
    value = hours_value(text)
    if value is None:
        try:
            float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of hours >= 0")
    return value


_RUN_OPTIONS = {"write_request": "--write-request", "title": "--title", "asynchronous": "--asynchronous",
                "timeout": "--timeout"}


def parser() -> argparse.ArgumentParser:
    import argparse

    from dynamo.cli.client import add_connection_options
    from dynamo.cli.usage import UsageParser
    p = UsageParser(prog="dynamo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # one mode per call: `dynamo --poll 1 --kill 2` used to poll and silently ignore the kill
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("cmd", nargs="?", metavar="script", help="script path and its arguments, as one string")
    p.add_argument("-W", "--write-request", action="store_true", help="run with write access")
    p.add_argument("-t", "--title", help="application title (required with --write-request)")
    p.add_argument("-A", "--asynchronous", action="store_true", help="print the application id and return")
    p.add_argument("-m", "--timeout", type=hours, help="hours the application may run, at most the server's "
                   "limit (default and 0: the server's limit)")
    mode.add_argument("-p", "--poll", type=int, metavar="ID", help="show an application's status and output")
    mode.add_argument("-x", "--kill", type=int, metavar="ID", help="stop an application")
    mode.add_argument("-l", "--list", action="store_true", help="list queued and running applications")
    p.add_argument("--all", action="store_true", help="with --list: recent finished ones too")
    p.add_argument("--json", action="store_true", help="with --poll/--list: print JSON")
    add_connection_options(p)
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with every option the chosen mode would ignore refused as a usage error."""
    from dynamo.cli.usage import refuse_unused
    p = parser()
    args = p.parse_args(argv)
    if args.poll is not None or args.kill is not None or args.list:
        name = "--poll" if args.poll is not None else "--kill" if args.kill is not None else "--list"
        refuse_unused(p, args, name, _RUN_OPTIONS)
        if not args.list:
            refuse_unused(p, args, name, {"all": "--all"})
        if args.kill is not None:
            refuse_unused(p, args, name, {"json": "--json"})
    else:
        refuse_unused(p, args, "a script or the shell", {"all": "--all", "json": "--json"})
        if args.cmd is None:
            refuse_unused(p, args, "the shell (it is read-only and interactive: give a script to run)",
                          _RUN_OPTIONS)
    return args


def main(argv: list[str] | None = None) -> None:
    # the everyday forms without argparse; anything else (help, errors) goes through it
    args = quick(sys.argv[1:] if argv is None else argv) or parse(argv)
    config = client_configuration(args)
    if args.poll is not None:
        return show_poll(request(args, config, {"op": "poll", "id": args.poll}), args.json)
    if args.kill is not None:
        data = request(args, config, {"op": "kill", "id": args.kill})
        print(f"application {data['id']}: {data['result']}" + (f" ({data['detail']})" if data.get("detail") else ""))
        return None
    if args.list:
        return show_list(request(args, config, {"op": "list", "all": args.all}), args.json)
    if args.cmd is None:
        sys.exit(shell(connect(args, config)))
    sys.exit(run(args, connect(args, config)))


def split(cmd: str) -> list[str]:
    """``shlex.split(cmd)``; without shlex (and its ``re``) for a line of printable characters and no
    quotes or backslashes, which shlex splits at spaces alone."""
    if cmd.isprintable() and not any(c in cmd for c in "\"'\\"):
        return cmd.split()
    import shlex
    return shlex.split(cmd)


def script_path(text: str) -> tuple[str, str, str]:
    """``str(Path(text))``, its ``name`` and its ``stem`` (pathlib only for a path it would normalise)."""
    if text and "//" not in text and "/./" not in text and not text.endswith(("/", "/.")) \
            and not text.startswith("./") and text != ".":
        name = text.rpartition("/")[2]
        dot = name.rfind(".")
        return text, name, name[:dot] if 0 < dot < len(name) - 1 else name
    from pathlib import Path
    path = Path(text)
    return str(path), path.name, path.stem


def run(args: argparse.Namespace | Args, client: Client) -> int:
    words = split(args.cmd or "")
    if not words:
        fail("no script given", ClientExit.USAGE)
    path, name, stem = script_path(words[0])
    try:
        with open(path, "rb") as f:
            source = f.read().decode()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", ClientExit.USAGE)
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", ClientExit.USAGE)
    if args.write_request and not args.title:
        fail("--write-request needs --title (the title the script was authorized under)", ClientExit.USAGE)
    timeout = None if args.timeout is None else args.timeout * 3600
    client.send({"op": "run", "script": source, "name": name, "args": words[1:],
                 "title": args.title or stem, "write": args.write_request,
                 "async": args.asynchronous, "timeout": timeout})
    interrupted = False
    while True:
        try:
            message = client.receive()
            kind = message.get("type")
            if relay(message):
                continue
            if kind == Reply.ACCEPTED:
                print(message["id"])
                return 0
            elif kind == Reply.QUEUED:
                print(f"dynamo: application {message.get('id')} queued: {message.get('reason')}", file=sys.stderr)
            elif kind == Reply.EXIT:
                return exit_code(message)
            elif kind == Reply.ERROR:
                refused(message)
        except KeyboardInterrupt:
            if interrupted:  # a second Ctrl-C: leave the application to its fate
                fail("interrupted; the application may still be stopping", ClientExit.KILLED)
            interrupted = True
            print("\ndynamo: stopping the application (Ctrl-C again to leave at once)", file=sys.stderr)
            client.send({"op": "interrupt"})


def relay(message: dict[str, Any]) -> bool:
    """Print an application's output frame; False for any other message."""
    stream = {Reply.OUT: sys.stdout, Reply.ERR: sys.stderr}.get(message.get("type", ""))
    if stream is None:
        return False
    stream.write(message["data"])
    stream.flush()
    return True


def exit_code(message: dict[str, Any]) -> int:
    status, code = message.get("status"), message.get("code")
    text = message.get("message")
    if status == Reply.DONE:
        if text and message.get("version") is not None and "applied" in text:
            print(f"dynamo: {text}", file=sys.stderr)
        return 0
    print(f"dynamo: application {message.get('id')} {status}" + (f": {text}" if text else ""), file=sys.stderr)
    if status == Reply.FAILED and isinstance(code, int) and code > 0:
        return code
    if status == Reply.FAILED and isinstance(code, int) and code < 0:
        return 128 - code  # died of a signal: the shell's convention
    by_state: dict[str, int] = {Reply.TIMEOUT: ClientExit.TIMEOUT, Reply.KILLED: ClientExit.KILLED,
                                Reply.REFUSED: ClientExit.CHANGES_REFUSED, Reply.LOST: ClientExit.SOFTWARE}
    return by_state.get(str(status), ClientExit.SOFTWARE)


def shell(client: Client) -> int:
    tty = sys.stdin.isatty()
    if tty:
        _readline()
    client.send({"op": "shell", "tty": tty})
    while True:
        try:
            message = client.receive()
            kind = message.get("type")
            if relay(message):
                continue
            if kind == Reply.PROMPT:
                client.send(_next_line(message.get("text", ""), tty))
            elif kind == Reply.EXIT:
                return 0 if message.get("status") == Reply.DONE else exit_code(message)
            elif kind == Reply.ERROR:
                refused(message)
        except KeyboardInterrupt:  # while a statement runs: interrupt it, as Python's console does
            client.send({"op": "interrupt"})


def _next_line(prompt: str, tty: bool) -> dict[str, Any]:
    if not tty:
        line = sys.stdin.readline()
        return {"op": "stdin", "data": line} if line else {"op": "eof"}
    try:
        return {"op": "stdin", "data": _input(prompt) + "\n"}
    except EOFError:
        print()
        return {"op": "eof"}
    except KeyboardInterrupt:
        return {"op": "stdin", "data": "\x03\n"}  # the console resets its buffer, as Python's does


def _input(prompt: str) -> str:
    """``input(prompt)`` on a terminal, with a timer that wakes readline's wait every 0.1 s.

    CPython's readline notices a signal only when the ``select()`` it waits in for a key is interrupted:
    a Ctrl-C that comes after the prompt is drawn but before that wait begins (a busy machine) was
    noticed only at the next key. The timer interrupts the wait, and the pending Ctrl-C is then raised.
    """
    import signal

    previous = signal.signal(signal.SIGALRM, _tick)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    try:
        return input(prompt)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _tick(signum: int, frame: object) -> None:
    """SIGALRM during ``_input``: nothing to do (its interruption is the point)."""


def _readline() -> None:
    try:
        import atexit
        import readline
    except ImportError:
        return
    from pathlib import Path
    history = Path(os.environ.get("DYNAMO_HISTORY", Path.home() / ".dynamo_history"))
    try:
        readline.read_history_file(history)
    except OSError:
        pass
    readline.set_history_length(2000)
    atexit.register(_save_history, readline, history)


def _save_history(readline: Any, history: object) -> None:
    try:
        readline.write_history_file(history)
    except OSError:
        pass


def _when(value: float | None) -> str:
    return "-" if not value else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def show_poll(data: dict[str, Any], as_json: bool) -> None:
    import json
    if as_json:
        print(json.dumps(data, indent=1))
        return
    for key in ("id", "title", "user", "status", "exit_code", "message", "write", "server", "pid", "work_area",
                "version"):
        print(f"{key:10} {data.get(key)}")
    for key in ("submitted", "started", "ended"):
        print(f"{key:10} {_when(data.get(key))}")
    for key in ("stdout", "stderr"):
        if data.get(key):
            print(f"--- {key} (end) ---")
            sys.stdout.write(data[key] if data[key].endswith("\n") else data[key] + "\n")


def show_list(rows: list[dict[str, Any]], as_json: bool) -> None:
    import json
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'ID':>6}  {'STATUS':9} {'W':1}  {'USER':12} {'TITLE':24} {'STARTED':19}  EXIT")
    for r in rows:
        print(f"{r['id']:>6}  {r['status']:9} {'w' if r['write'] else '-'}  {r['user'][:12]:12} "
              f"{r['title'][:24]:24} {_when(r['started']):19}  {'' if r['exit_code'] is None else r['exit_code']}")


if __name__ == "__main__":
    main()
