"""``dynamod``: the Dynamo server. Runs in the foreground (systemd style) unless --daemon.

SIGTERM or SIGINT stop it cleanly: applications are stopped and reaped, the
store is closed, nothing is half-applied. SIGHUP reopens the change log.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dynamo.config import load_config
from dynamo.errors import DynamoError
from dynamo.exitcodes import ServerExit

if TYPE_CHECKING:
    from dynamo.config import Config
    from dynamo.store.filesreader import FilesReader


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="dynamod", description=__doc__)
    p.add_argument("--config", help="configuration file (default: $DYNAMO_CONFIG, else the embedded default)")
    p.add_argument("--daemon", action="store_true",
                   help="detach; returns once the server is ready (or has failed to start)")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
    except DynamoError as exc:
        print(f"dynamod: {exc}", file=sys.stderr)
        sys.exit(ServerExit.CONFIG)
    # In the foreground, the load's second reader starts now, before the server's imports and setup (on
    # the other core meanwhile); a detached server starts it once detached (it must be the server's child).
    reader = None if args.daemon else _files_reader(config)
    try:
        # Imported before detaching: a broken installation says so on the terminal, not to /dev/null.
        try:
            from dynamo.server.main import Dynamod
        except ImportError as exc:
            print(f"dynamod: this installation of Dynamo is incomplete ({exc}): reinstall it", file=sys.stderr)
            sys.exit(ServerExit.START_FAILED)
        # the descriptor the detached server reports on, until it has reported
        report: list[int] = [_daemonize(config.path(config.server.log_file))] if args.daemon else []
        if args.daemon:
            reader = _files_reader(config)
        try:
            server = Dynamod(config, on_ready=(lambda d: _report(report, d)) if report else None,
                             files_reader=reader)
            reader = None  # the server's: its store's load takes it, a failed start ends it
            sys.exit(server.run())
        except DynamoError as exc:
            _fail(report, str(exc))
        except Exception as exc:
            if not report:
                raise  # in the foreground (or once ready) the traceback goes to stderr, as anywhere else
            # detached and not ready: the report pipe is the only way to the terminal before the log is open
            _fail(report, f"{type(exc).__name__}: {exc}")
    finally:
        if reader is not None:
            reader.close()


def _files_reader(config: Config) -> FilesReader | None:
    """The first load's second reader, started now (``dynamo.store.sqlite.start_files_reader``): for a SQLite
    store, and when no keeper is forked before the load (it would inherit the reader's pipe and memory
    files). None otherwise, or when it cannot be started: the load then starts its own, or loads alone."""
    from dynamo.server.keeper_link import needed as keeper_needed
    if not config.store.url.startswith("sqlite:") or keeper_needed(config):
        return None
    from dynamo.store.sqlite import start_files_reader
    try:
        return start_files_reader(config.store.url)
    except (OSError, DynamoError):
        return None  # the load says why, when it starts one itself


def _fail(report: list[int], reason: str) -> None:
    if report:
        os.write(report.pop(), reason.encode()[:4000])
    print(f"dynamod: {reason}", file=sys.stderr)
    sys.exit(ServerExit.START_FAILED)


def _report(report: list[int], server: object) -> None:
    names = ", ".join(server._listener_names())  # type: ignore[attr-defined]
    fd = report.pop()
    os.write(fd, f"ready, pid {os.getpid()}, {names}".encode())
    os.close(fd)


def _daemonize(log_file: Path) -> int:
    """Fork twice and detach; the first parent waits for the server's report and prints it.
    Returns the descriptor the server reports on."""
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        report = os.read(read_end, 4096).decode(errors="replace")
        if report.startswith("ready"):
            print(f"dynamod: {report}", flush=True)  # os._exit does not flush a pipe's buffer
            os._exit(ServerExit.OK)
        where = f" (see {log_file})" if log_file.exists() else ""
        print(f"dynamod: failed to start: {report or 'no reason given'}{where}", file=sys.stderr, flush=True)
        os._exit(ServerExit.START_FAILED)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(ServerExit.OK)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return write_end


if __name__ == "__main__":
    main()
