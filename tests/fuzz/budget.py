"""How long the fuzz tests run: a short deterministic run in CI, as long as asked by hand.

``DYNAMO_FUZZ_MINUTES=10 ./tests/run tests/fuzz tests/e2e/test_fuzz_server.py`` runs each fuzz test
again and again with fresh random examples for that many minutes (see docs/server.md).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from hypothesis import HealthCheck, settings

MINUTES = float(os.environ.get("DYNAMO_FUZZ_MINUTES", "0") or 0)
_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}
# CI: the same examples every run (a failure reproduces); by hand: new ones on every round
settings.register_profile("dynamo-ci", derandomize=True, **_COMMON)
settings.register_profile("dynamo-long", derandomize=False, **_COMMON)
PROFILE = settings.get_profile("dynamo-long" if MINUTES else "dynamo-ci")


def fuzz(run: Callable[[], None]) -> int:
    """Run a @given test once, or for MINUTES minutes; returns the number of rounds."""
    deadline = time.monotonic() + MINUTES * 60
    rounds = 0
    while True:
        run()
        rounds += 1
        if time.monotonic() >= deadline:
            return rounds
