"""store/lock.py: the one exclusive lock around read-decide-append-commit. flock locks belong to
an open file, so a second RepoLock in this same process contends as another process would."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from flowgit.errors import LockSymlink, RaceLost
from flowgit.store.lock import LOCK_NAME, RepoLock


def test_a_held_lock_makes_the_next_one_wait_then_time_out(tmp_path: Path) -> None:
    with RepoLock(tmp_path, timeout=5):
        begin = time.monotonic()
        with pytest.raises(RaceLost) as caught:
            with RepoLock(tmp_path, timeout=0.2):
                pass
        assert 0.2 <= time.monotonic() - begin < 2
    assert str(tmp_path / LOCK_NAME) in caught.value.message and "retry" in caught.value.message


def test_the_lock_is_taken_as_soon_as_it_is_let_go(tmp_path: Path) -> None:
    first = RepoLock(tmp_path, timeout=5).__enter__()
    got: list[float] = []

    def second() -> None:
        with RepoLock(tmp_path, timeout=5):
            got.append(time.monotonic())

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.1)
    assert got == []  # still waiting
    released = time.monotonic()
    first.__exit__(None, None, None)
    waiter.join(timeout=5)
    assert got and got[0] - released < 0.5


def test_a_failing_on_acquire_lets_the_lock_go(tmp_path: Path) -> None:
    def recover() -> None:
        raise RuntimeError("recovery failed")

    with pytest.raises(RuntimeError):
        with RepoLock(tmp_path, timeout=1, on_acquire=recover):
            pass
    with RepoLock(tmp_path, timeout=0.1) as lock:  # free again, at once
        assert lock.fd is not None
    assert lock.fd is None


def test_on_acquire_runs_under_the_lock(tmp_path: Path) -> None:
    seen: list[bool] = []

    def probe() -> None:
        with pytest.raises(RaceLost):
            with RepoLock(tmp_path, timeout=0.05):
                pass
        seen.append(True)

    with RepoLock(tmp_path, timeout=1, on_acquire=probe):
        pass
    assert seen == [True]


def test_a_symlink_in_place_of_the_lock_is_refused_and_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    os.symlink(target, tmp_path / LOCK_NAME)
    with pytest.raises(LockSymlink) as caught:
        with RepoLock(tmp_path, timeout=0.1):
            pass
    assert "symlink" in caught.value.message and not target.exists()
