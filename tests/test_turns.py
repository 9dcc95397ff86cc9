"""Turns on this machine's cores (flowgit/turns.py, ADR 0015): the commands agents run hundreds
of times hold one of as many turns as there are cores, let go of it while they wait on
something that is not CPU, never wait for one longer than turns.WAIT, and never use a folder
of turns that is not this user's alone. Real processes throughout: the turns are flocks that
only other processes can contend for."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgit import git, turns
from flowgit.cli import hot
from flowgit.main import HOT
from helpers import Repo
from helpers.procs import wait_for

PLAN = """\
id: p
title: Two independent tasks
tasks:
  - id: a
    title: A
  - id: b
    title: B
"""


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One turn, in a runtime folder of this test's own."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv(turns.ENV, "1")
    nice = os.nice(0)  # the suite may run niced: its commands then take that niceness's turns
    return runtime / (f"flowgit-turns-{os.getuid()}" + (f"-nice{nice}" if nice else ""))


class Held:
    """A turn file locked by this test process, as another flowgit command holds it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def probe(wait: float) -> subprocess.CompletedProcess[str]:
    """Another process asking for a turn, waiting at most `wait` seconds: prints True or False."""
    code = f"from flowgit import turns; turns.WAIT = {wait}; print(turns.take())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def opened(pid: int, name: str) -> bool:
    """Whether process `pid` has a file called `name` open."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + name) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_a_hot_command_waits_for_a_turn_and_runs_when_one_is_free(repo: Repo, pool: Path) -> None:
    repo.plan("p", PLAN)
    held = Held(pool / "turn.0")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(repo.path), "--json",
                                 "status", "p"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None, "it ran while the only turn was held"
    finally:
        held.release()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["plan"] == "p"


def test_a_turn_is_the_commands_alone_while_it_runs(pool: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "from flowgit import turns; import time\n"
                               "print(turns.take(), flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert probe(0.3).stdout.strip() == "False"  # bounded: it runs without one
    finally:
        holder.kill()
        holder.wait()
    assert probe(0.3).stdout.strip() == "True"  # the holder's end let go of it


def test_a_stuck_holder_delays_a_command_by_the_wait_at_most(pool: Path) -> None:
    held = Held(pool / "turn.0")
    try:
        t0 = time.monotonic()
        assert probe(0.5).stdout.strip() == "False"
        assert 0.4 <= time.monotonic() - t0 < 10
        assert probe(0.3).stdout.strip() == "False"  # a waiter that timed out left the gate free
    finally:
        held.release()


def test_a_command_waiting_for_the_repository_lock_lets_go_of_its_turn(repo: Repo, pool: Path) -> None:
    repo.plan("p", PLAN)
    lock = os.open(repo.path / ".git" / "flowgit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        claim = subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(repo.path), "--json",
                                  "claim", "p", "--worker", "w1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        wait_for(lambda: opened(claim.pid, "flowgit.lock"), 30, "the claim at the repository's lock")
        # it took the turn as it started, found the lock held and let the turn go while it waits
        wait_for(lambda: probe(0.2).stdout.strip() == "True", 20, "the turn free while the claim waits")
        assert claim.poll() is None
    finally:
        os.close(lock)
    out, err = claim.communicate(timeout=30)
    assert claim.returncode == 0, err
    assert json.loads(out)["task"] in ("p/a", "p/b")


def test_a_command_its_holder_starts_and_waits_for_runs_on_the_holders_turn(repo: Repo, pool: Path) -> None:
    """A hook of the holder's commit that runs `flowgit status` waited for a turn its own
    holder would give back only when the hook ended: WAIT seconds lost with one turn."""
    repo.plan("p", PLAN)
    code = ("import subprocess, sys, time\n"
            "from flowgit import turns\n"
            "assert turns.take()\n"
            "t0 = time.monotonic()\n"
            f"subprocess.run([sys.executable, '-m', 'flowgit', '--repo', {str(repo.path)!r}, 'status', 'p'], check=True)\n"
            "print(time.monotonic() - t0)\n"
            "turns.give_back()\n"
            "subprocess.run([sys.executable, '-c', 'import os; assert not os.environ.get(\"FLOWGIT_TURN_HELD\")'], check=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[-1]) < turns.WAIT - 1


def test_a_sleep_lets_go_of_the_turn(pool: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "from flowgit import turns\n"
                                "print(turns.take(), flush=True); turns.sleep(30)"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline().strip() == "True"
        wait_for(lambda: probe(0.2).stdout.strip() == "True", 20, "the turn free while it sleeps")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_no_turns_when_turned_off_or_the_folder_is_not_this_users_alone(
        repo: Repo, pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.plan("p", PLAN)
    monkeypatch.setenv(turns.ENV, "0")
    assert repo.proc("status", "p").returncode == 0
    assert not pool.exists()
    monkeypatch.setenv(turns.ENV, "1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pool.symlink_to(elsewhere)  # planted where this user's folder goes: never followed
    assert repo.proc("status", "p").returncode == 0
    assert list(elsewhere.iterdir()) == []
    pool.unlink()
    pool.mkdir(mode=0o755)
    pool.chmod(0o777)  # open to every user: anybody could hold the turns, or plant the files
    assert repo.proc("status", "p").returncode == 0
    assert list(pool.iterdir()) == []
    assert probe(0.1).stdout.strip() == "False"
    for odd in ("two", "²", "-1", " "):  # not a number of turns: off (or the cores), never an error
        monkeypatch.setenv(turns.ENV, odd)
        assert repo.proc("status", "p").returncode == 0


def test_a_command_at_another_niceness_takes_turns_of_its_own(repo: Repo, pool: Path) -> None:
    if os.nice(0) >= 19:
        pytest.skip("the suite runs at nice 19: no niceness is left above it")
    repo.plan("p", PLAN)
    held = Held(pool / "turn.0")
    try:  # a background command at nice 19 neither waits for, nor holds up, one at 0
        t0 = time.monotonic()
        proc = subprocess.run(["nice", "-n", str(19 - os.nice(0)), sys.executable, "-m", "flowgit", "--repo", str(repo.path),
                               "status", "p"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and time.monotonic() - t0 < turns.WAIT
        assert (pool.parent / f"flowgit-turns-{os.getuid()}-nice19" / "turn.0").exists()
    finally:
        held.release()


def test_only_the_hot_commands_take_turns() -> None:
    """`watch`, `run`, `mcp` and `board` live for hours: a turn of theirs would be a core less."""
    assert HOT == set(hot.SPECS)


@pytest.mark.parametrize(("url", "here"), [
    ("/srv/git/flow.git", True), ("../flow.git", True), ("./flow.git", True), ("file:///srv/flow.git", True),
    ("flow.git", True), ("git@github.com:team/flow.git", False), ("ssh://host/flow.git", False),
    ("https://example.com/flow.git", False), ('"/quoted"', False),
])
def test_a_remote_across_the_network_is_waited_on_without_a_turn(tmp_path: Path, url: str, here: bool) -> None:
    root = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "config", "remote.origin.url", url], check=True)
    assert git.remote_is_here(root, "origin") is here
    assert git.remote_is_here(root, "nobody") is False


@pytest.mark.parametrize(("cgroup", "files", "cores"), [
    ("0::/docker/abc\n", {"sys/fs/cgroup/docker/abc/cpu.max": "150000 100000\n"}, 2),
    ("0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n"}, None),
    ("4:memory:/x\n2:cpu,cpuacct:/ci\n", {"sys/fs/cgroup/cpu,cpuacct/ci/cpu.cfs_quota_us": "100000\n",
                                          "sys/fs/cgroup/cpu,cpuacct/ci/cpu.cfs_period_us": "100000\n"}, 1),
    ("2:cpu,cpuacct:/\n", {"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("0::/gone\n", {}, None),
    ("0::/odd\n", {"sys/fs/cgroup/odd/cpu.max": "\u00b2 0\n"}, None),
])
def test_a_containers_cpu_quota_caps_the_turns(tmp_path: Path, cgroup: str, files: dict[str, str],
                                               cores: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker --cpus=1.5` on a 64-core host: the affinity says 64, the quota 2 (cgroup v2's
    cpu.max, v1's cpu.cfs_quota_us); no quota, an unreadable or missing file: none."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert turns.quota(str(tmp_path)) == cores
    monkeypatch.delenv(turns.ENV, raising=False)
    assert 1 <= turns.count() <= len(os.sched_getaffinity(0))
