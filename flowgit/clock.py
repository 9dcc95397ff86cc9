"""The wall clock of every decision (leases, retries, schedules, waits, event times): one
place, so that tests move time instead of sleeping. Timeouts that only measure a duration use
`time.monotonic()` and stay where they are; the pure core never reads a clock, it is handed `now`.

Tests move the clock with two environment variables, read on every call so that a change is
seen by the next command in-process and inherited by the processes started after it:

- `FLOWGIT_TEST_NOW_OFFSET`: seconds added to the real time (may be negative or fractional);
- `FLOWGIT_TESTING=1`: the test flag without which the offset is ignored, so that a stray
  variable in a user's environment can never move flowgit's time.
"""
from __future__ import annotations

import os
import time

FLAG = "FLOWGIT_TESTING"
OFFSET = "FLOWGIT_TEST_NOW_OFFSET"


def wall_now() -> float:
    """Seconds since the epoch, as `time.time()`, moved by a test's offset when enabled."""
    if os.environ.get(FLAG) == "1":
        text = os.environ.get(OFFSET)
        if text:
            return time.time() + float(text)
    return time.time()
