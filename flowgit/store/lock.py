"""One exclusive lock around read-decide-append-commit, shared by all worktrees."""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Callable

from flowgit import turns
from flowgit.errors import LockSymlink, RaceLost

LOCK_NAME = "flowgit.lock"


class RepoLock:
    def __init__(self, common_dir: Path, timeout: float,
                 on_acquire: Callable[[], None] | None = None) -> None:
        self.path = common_dir / LOCK_NAME
        self.timeout = timeout
        self.on_acquire = on_acquire
        self.fd: int | None = None

    def __enter__(self) -> RepoLock:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LockSymlink(f"{self.path} is a symlink: remove it (flowgit never follows one)") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with turns.aside():  # waiting is not CPU: another command may have this turn meanwhile
                self._wait(fd)
        self.fd = fd
        if self.on_acquire is not None:
            try:
                self.on_acquire()
            except BaseException:
                self.__exit__(None, None, None)
                raise
        return self

    def _wait(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RaceLost(
                        f"timed out after {self.timeout:g}s waiting for {self.path}: "
                        "another flowgit command holds it; retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
