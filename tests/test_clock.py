"""flowgit/clock.py: tests move flowgit's wall clock; a user's environment cannot."""
from __future__ import annotations

import json
import os
import time

import pytest
from helpers import Repo
from helpers.clock import WallClock

from flowgit import clock


def test_the_offset_needs_the_test_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clock.OFFSET, "86400")
    assert abs(clock.wall_now() - time.time()) < 5  # ignored: no FLOWGIT_TESTING
    monkeypatch.setenv(clock.FLAG, "yes")
    assert abs(clock.wall_now() - time.time()) < 5  # only "1" turns it on
    monkeypatch.setenv(clock.FLAG, "1")
    assert abs(clock.wall_now() - time.time() - 86400) < 5


def test_the_fixture_moves_this_process_and_the_ones_started_after(repo: Repo,
                                                                   wall_clock: WallClock) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A\n")
    repo.ok("claim", "p/a", "--worker", "w1", "--lease", "60")
    wall_clock.advance(61)
    assert repo.ok("status", "p", "--json").json["ready"] == ["a"]
    proc = repo.proc("--json", "status", "p")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ready"] == ["a"], proc.stderr


def test_a_users_offset_moves_nothing(repo: Repo) -> None:
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: a\n    title: A\n")
    repo.ok("claim", "p/a", "--worker", "w1", "--lease", "60")
    env = {**os.environ, clock.OFFSET: "3600"}
    env.pop(clock.FLAG, None)
    proc = repo.proc("--json", "status", "p", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["ready"] == [], proc.stderr
