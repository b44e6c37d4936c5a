"""The child side of an application: set up, run the script (or the console), leave.

dynamod forks; the child calls :func:`child_main`, which never returns: it
leaves through ``os._exit`` from a ``finally``, so no server code (atexit
handlers, finalizers of inherited objects) runs in the child. This module
never imports ``dynamo.server``.

File descriptors on entry (arranged by the fork site): 0 is /dev/null (the
console's input pipe for a shell), 1 and 2 are pipes to dynamod, and
``spec.change_fd`` / ``spec.control_fd`` are the change stream of a write
application and the console's message channel; every other descriptor
inherited from dynamod (database, sockets, logs) has been closed.
"""

from __future__ import annotations

import builtins
import code
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

from dynamo import __version__
from dynamo.apps import containment
from dynamo.apps.recorder import PipeRecorder
from dynamo.core import executable
from dynamo.core.inventory import Inventory
from dynamo.exitcodes import ChildExit
from dynamo.proctitle import set_title
from dynamo.protocol import framing


@dataclass(frozen=True)
class ChildSpec:
    app_id: int
    title: str
    kind: str                     # "app" or "shell"
    script_name: str
    source: str
    args: tuple[str, ...]
    write: bool
    work_area: str
    uid: int | None = None        # drop to this user (dynamod runs as root)
    gid: int | None = None
    change_fd: int | None = None
    control_fd: int | None = None
    tty: bool = False
    limits: containment.Limits = containment.Limits()


def child_main(spec: ChildSpec, inventory: Inventory) -> NoReturn:
    status = int(ChildExit.SETUP_FAILED)
    try:
        _setup(spec)
        status = _run_shell(spec, inventory) if spec.kind == "shell" else _run_script(spec, inventory)
    except BaseException:  # the last line of defence in a child: report and leave
        try:
            traceback.print_exc()
        except BaseException:  # noqa: S110 - stderr itself may be gone
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: S110
                pass
        try:
            containment.kill_descendants()  # nothing the application started outlives it
        except BaseException:  # noqa: S110 - leaving is what matters now
            pass
        os._exit(status)


def _setup(spec: ChildSpec) -> None:
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The server's log handlers write to descriptors the fork site closed.
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
    logging.disable(logging.CRITICAL)
    if spec.gid is not None and spec.uid is not None:
        os.setgroups([])
        os.setgid(spec.gid)
        os.setuid(spec.uid)
    else:
        # The server's own uid (the embedded default; a configured server not run as root): a setuid
        # program that uid may run (sudo, for one) must not raise an application above it.
        containment.no_new_privileges()
    containment.forbid_tracing()  # after setuid, which would reset it
    containment.apply_limits(spec.limits)
    # a descendant that leaves the process group (double fork, setsid) stays ours, and is killed at the end
    containment.become_subreaper()
    os.chdir(spec.work_area)
    set_title(f"dynamo: {spec.kind} {spec.app_id} {spec.title}")
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115


def _wire(spec: ChildSpec, inventory: Inventory) -> None:
    executable.inventory = inventory
    executable.read_only = not spec.write
    executable.authorized = spec.write
    executable.app_id = spec.app_id
    inventory.recorder = PipeRecorder(spec.change_fd) if spec.write and spec.change_fd is not None else None


def _exit_status(exc: SystemExit) -> int:
    value = exc.code
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _run_script(spec: ChildSpec, inventory: Inventory) -> int:
    _wire(spec, inventory)
    path = os.path.join(spec.work_area, spec.script_name)
    sys.argv = [path, *spec.args]
    # The work area is deliberately not put on sys.path (Python would put a script's directory
    # there): nothing but the script is in it, and a module planted there must never be imported
    # by an authorized writer.
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": path, "__builtins__": builtins}
    try:
        compiled = compile(spec.source, path, "exec")
        exec(compiled, namespace)  # noqa: S102 - running the submitted script is the point
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:  # the script's own failure: its traceback, without our frame
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        status = int(ChildExit.EXCEPTION)
    sys.stdout.flush()
    sys.stderr.flush()
    recorder = inventory.recorder
    if status == 0 and isinstance(recorder, PipeRecorder):
        recorder.commit()
    return status


class _FrameWriter:
    """A text stream that sends what it is given as console frames (``{"out": ...}``)."""

    def __init__(self, fd: int, kind: str):
        self.fd = fd
        self.kind = kind

    # a character takes at most 6 bytes in a frame (a JSON escape): pieces stay far below the frame limit
    PIECE = 1 << 20

    def write(self, text: str) -> int:
        for start in range(0, len(text), self.PIECE):
            framing.write_fd(self.fd, {self.kind: text[start:start + self.PIECE]})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


class _Console(code.InteractiveConsole):
    """A console whose prompts travel to the client, which reads the line (with
    history and line editing when it has a terminal) and sends it back."""

    def __init__(self, namespace: dict[str, Any], control_fd: int):
        super().__init__(namespace, filename="<dynamo>")
        self.control_fd = control_fd

    def raw_input(self, prompt: str = "") -> str:
        framing.write_fd(self.control_fd, {"prompt": prompt})
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        if line == "\x03\n":  # Ctrl-C at the client's prompt
            raise KeyboardInterrupt
        return line.rstrip("\n")


def _run_shell(spec: ChildSpec, inventory: Inventory) -> int:
    import dynamo.dataformat as df
    _wire(spec, inventory)
    assert spec.control_fd is not None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # dynamod forwards the client's Ctrl-C
    sys.stdout = _FrameWriter(spec.control_fd, "out")
    sys.stderr = _FrameWriter(spec.control_fd, "err")
    namespace: dict[str, Any] = {"__name__": "__console__", "inventory": inventory, "read_only": True,
                                 **{name: getattr(df, name) for name in df.__all__}}
    banner = (f"Dynamo {__version__} shell, inventory version {inventory.version} (read-only: changes are "
              "discarded).\n>>> inventory.sites  >>> inventory.datasets['name'].blocks   Ctrl-D leaves."
              if spec.tty else "")
    try:
        _Console(namespace, spec.control_fd).interact(banner=banner, exitmsg="")
    except SystemExit as exc:
        return _exit_status(exc)
    return 0
