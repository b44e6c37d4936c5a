"""Exit codes of ``dynamod`` itself (the BSD sysexits values; children and commands have theirs in
``dynamo.apps.exitcodes``)."""

from __future__ import annotations

from enum import IntEnum


class ServerExit(IntEnum):
    OK = 0                 # stopped by SIGTERM or SIGINT
    START_FAILED = 1       # could not start (the reason is on stderr and in the log)
    SOFTWARE = 70          # an unexpected error in the main loop (EX_SOFTWARE)
    CONFIG = 78            # the configuration cannot be loaded (EX_CONFIG)
