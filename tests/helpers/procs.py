"""Waiting with a deadline, and `flowgit watch` as a real process (as a user runs it)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from helpers.repo import Repo

PY = sys.executable
BIN = str(Path(sys.executable).parent)  # the venv's bin: `flowgit` for hooks and watchers

T = TypeVar("T")

LIVE: list[Watcher] = []  # the watchers of the running test, for failure messages


def wait_for(pred: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `pred` until it returns something true, and return that. Fails after `timeout`
    seconds, showing the output of the running test's watchers."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n---\n".join(w.output for w in LIVE)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}".rstrip())
        time.sleep(0.02)


def wait_seconds(pred: Callable[[], Any], timeout: float, what: str) -> float:
    """`wait_for`, returning the seconds it took."""
    begin = time.monotonic()
    wait_for(pred, timeout, what)
    return time.monotonic() - begin


def flowgit_proc(repo: Repo, *args: str, stderr: int = subprocess.STDOUT) -> subprocess.Popen[str]:
    """`python -m flowgit --repo REPO ARGS` in the background, output piped."""
    return subprocess.Popen([PY, "-m", "flowgit", "--repo", str(repo.path), *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


class Watcher:
    """`flowgit watch` in its own process; its output collected line by line. Started once it
    says it is watching; the `watchers` fixture kills what a test leaves running."""

    def __init__(self, repo: Repo, *args: str) -> None:
        self.proc = flowgit_proc(repo, "watch", *args)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        LIVE.append(self)
        wait_for(lambda: any("watching" in line for line in self.lines) or self.proc.poll() is not None,
                 10, "the watcher to start")
        assert self.proc.poll() is None, self.output

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the watcher did not stop on signal {sig}:\n{self.output}")
        self.reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in LIVE:
            LIVE.remove(self)


def stop_cleanly(w: Watcher, sig: int = signal.SIGTERM) -> None:
    """Stop a watcher; it exits 0, says it stopped, and no traceback was printed."""
    assert w.stop(sig) == 0, w.output
    assert w.lines[-1].endswith("stopped"), w.output
    assert "Traceback" not in w.output, w.output
