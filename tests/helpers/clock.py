"""Moving flowgit's wall clock instead of sleeping (flowgit/clock.py): the offset is an
environment variable, so it applies to the next in-process command and to every process
started after the move, and never to one already running."""
from __future__ import annotations

import pytest

from flowgit import clock


class WallClock:
    """flowgit's clock for one test: `advance(seconds)` moves it, `now()` reads it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.offset = 0.0
        monkeypatch.setenv(clock.FLAG, "1")
        monkeypatch.setenv(clock.OFFSET, "0")

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.monkeypatch.setenv(clock.OFFSET, repr(self.offset))

    def now(self) -> float:
        return clock.wall_now()
