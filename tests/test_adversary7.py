"""The seventh session's adversary: a hostile local user and a hostile teammate over the turns
on the cores (ADR 0015: flowgit/turns.py, main.py, store/lock.py, git._remote_run, proc.run)
and the claim round's fixes (claim refs of tasks a plan does not have, fetch errors that will
not come back, passed-over counts per plan). Real processes and real clones throughout: the
turns are flocks only other processes contend for.

Tests marked xfail(strict) are findings in files the lead is still tuning (turns.py, main.py,
store/lock.py): they pass once fixed there."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowgit import turns
from helpers import Repo
from helpers.procs import wait_for


def many(n: int) -> str:
    return "id: p\ntitle: many\ntasks:\n" + "".join(f"  - id: t{i}\n    title: task number {i}\n" for i in range(n))


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One turn, in a runtime folder of this test's own (as tests/test_turns.py)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv(turns.ENV, "1")
    nice = os.nice(0)
    return runtime / (f"flowgit-turns-{os.getuid()}" + (f"-nice{nice}" if nice else ""))


def probe(wait: float, env: dict[str, str] | None = None) -> str:
    """Another process asking for a turn, waiting at most `wait` seconds: 'True' or 'False'."""
    code = f"from flowgit import turns; turns.WAIT = {wait}; print(turns.take())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def argv(repo: Repo, *args: str) -> list[str]:
    """`python -m flowgit` (main.py takes its turn as the console script does)."""
    return [sys.executable, "-m", "flowgit", "--repo", str(repo.path), *args]


def unread(size: int = 4096) -> tuple[int, int]:
    """A pipe of `size` bytes nobody reads yet: a pager the user has not scrolled, `less`."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
    return r, w


def queued(fd: int) -> int:
    import array
    import termios

    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


# ----- 1. a command whose output nobody reads holds no turn ------------------------------------
def test_a_command_whose_reader_stopped_reading_holds_no_turn(repo: Repo, pool: Path) -> None:
    """`flowgit status --json p | less`: the command has done its work and blocks writing to a
    pager the user reads at leisure. Holding its turn meanwhile, it made every other flowgit
    command on the machine wait turns.WAIT (5 s) for one (one core: a container, a CI runner)."""
    repo.plan("p", many(200))
    r, w = unread()
    pager = subprocess.Popen(argv(repo, "--json", "status", "p"), stdout=w, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        wait_for(lambda: queued(r) >= 4096, 60, "the status blocked on its full pipe")
        assert pager.poll() is None
        assert probe(0.5) == "True", "a command blocked on its reader kept its turn"
    finally:
        os.close(r)
        pager.wait(30)
