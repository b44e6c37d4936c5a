"""What an application imports: ``from dynamo.core.executable import inventory, read_only``
(or the original's ``authorized`` and ``make_standard_logger``).

Inside ``dynamo '<script>'`` the runner sets ``inventory`` to the application's
forked image and ``read_only`` to its mode before the script starts. A script
run directly with python (outside the server) gets an empty inventory and
``read_only = True``, so it can be tried without a server.
"""

from __future__ import annotations

import logging
import sys

from dynamo.core.inventory import Inventory

inventory: Inventory = Inventory()
read_only: bool = True
app_id: int = 0
"""The application's id on the server (0 outside the server)."""
authorized: bool = False
"""The original's name: True in a write-enabled application (the inverse of ``read_only``)."""


def make_standard_logger(level: str) -> logging.Logger:
    """The original's helper: the root logger at ``level`` (a name such as 'info') writing to
    stdout, and ERROR and above to stderr too."""
    log_level = getattr(logging, level.upper(), None)
    if not isinstance(log_level, int):
        raise ValueError(f"make_standard_logger: unknown level {level!r}")
    formatter = logging.Formatter(fmt="%(asctime)s:%(levelname)s:%(name)s: %(message)s")
    out_handler = logging.StreamHandler(sys.stdout)
    out_handler.setLevel(log_level)
    out_handler.setFormatter(formatter)
    err_handler = logging.StreamHandler(sys.stderr)
    err_handler.setLevel(logging.ERROR)
    err_handler.setFormatter(formatter)
    logger = logging.getLogger()
    logger.setLevel(log_level)
    logger.addHandler(out_handler)
    logger.addHandler(err_handler)
    return logger
