"""Exit codes: one namespace each for the server, the commands and the children (no dependencies).

BSD sysexits values where one fits, the shell's conventions for signals and
timeouts. ``dynamo`` exits with the application's own exit code when the
application ran to its end; otherwise with a :class:`ClientExit`.

Namespaces of plain ``int`` constants, not ``IntEnum`` classes: every command imports this module,
and ``enum`` alone costs the ``dynamo`` command more than its request to the server
(docs/performance.md, "First line").
"""

from __future__ import annotations


class ServerExit:
    """``dynamod``'s exit status."""

    OK = 0                 # stopped by SIGTERM/SIGINT, cleanly
    START_FAILED = 1       # could not start (a port in use, another dynamod, the store unreachable, ...)
    SOFTWARE = 70          # an unexpected error ended the main loop (EX_SOFTWARE); the log has the traceback
    CONFIG = 78            # the configuration is missing or invalid (EX_CONFIG)


class ClientExit:
    """Exit codes of the commands (``dynamo``, ``dynamo-inject``, ``dynamo-exec-auth``, ...)."""

    OK = 0
    NOT_FOUND = 1          # what was asked for does not exist
    USAGE = 64             # bad command line (EX_USAGE)
    CHANGES_REFUSED = 65   # the application exited 0 but its change set was invalid (EX_DATAERR)
    UNAVAILABLE = 69       # the server cannot be reached or cannot serve now (EX_UNAVAILABLE)
    SOFTWARE = 70          # protocol error or server-side failure (EX_SOFTWARE)
    TEMPFAIL = 75          # the server is at a limit (connections, memory): try again later (EX_TEMPFAIL)
    NO_PERMISSION = 77     # refused: unknown user, unauthorized write, missing role (EX_NOPERM)
    TIMEOUT = 124          # the application ran past its deadline (as timeout(1))
    KILLED = 137           # killed (128 + SIGKILL), by a user or by the server


class ChildExit:
    """Codes a child uses besides the script's own ``sys.exit`` value."""

    OK = 0
    EXCEPTION = 1          # the script raised an uncaught exception (as python does)
    SETUP_FAILED = 125     # the runner could not start the script (privileges, work area, ...)
