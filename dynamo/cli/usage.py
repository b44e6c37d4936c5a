"""Command-line parsing shared by the client commands: one usage exit code, no option silently ignored."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from dynamo.exitcodes import ClientExit


class UsageParser(argparse.ArgumentParser):
    """``argparse`` that exits with the documented usage code (64, EX_USAGE) rather than its own 2,
    so that every usage error of a client command, argparse's and ours, has the same code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ClientExit.USAGE, f"{self.prog}: error: {message}\n")


def refuse_unused(parser: argparse.ArgumentParser, args: argparse.Namespace, mode: str,
                  options: dict[str, str]) -> None:
    """A usage error if any of ``options`` (destination: flag) was given although ``mode`` ignores it:
    a command that silently did something other than what was asked would be worse."""
    given = [flag for dest, flag in options.items() if getattr(args, dest) != parser.get_default(dest)]
    if given:
        parser.error(f"{', '.join(given)} cannot be used with {mode}")
