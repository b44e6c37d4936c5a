"""Exit codes.

The ``dynamo`` client exits with the application's own exit code when the
application ran to its end. Otherwise it uses one of these (the BSD sysexits
values where one fits, the shell's conventions for signals and timeouts):
"""

from __future__ import annotations

from enum import IntEnum


class ClientExit(IntEnum):
    OK = 0
    TIMEOUT = 124          # the application ran past its deadline (as timeout(1))
    USAGE = 64             # bad command line
    CHANGES_REFUSED = 65   # the application exited 0 but its change set was invalid (EX_DATAERR)
    UNAVAILABLE = 69       # the server cannot be reached (EX_UNAVAILABLE)
    SOFTWARE = 70          # protocol error or server-side failure (EX_SOFTWARE)
    NO_PERMISSION = 77     # refused: unknown user, unauthorized write, missing role (EX_NOPERM)
    KILLED = 137           # killed (128 + SIGKILL), by a user or by the server


class ChildExit(IntEnum):
    """Codes a child uses besides the script's own ``sys.exit`` value."""

    OK = 0
    EXCEPTION = 1          # the script raised an uncaught exception (as python does)
    SETUP_FAILED = 125     # the runner could not start the script (privileges, work area, ...)
