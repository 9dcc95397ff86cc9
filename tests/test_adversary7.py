"""The seventh session's adversary: a hostile local user and a hostile teammate over the turns
on the cores (ADR 0015: flowgit/turns.py, main.py, store/lock.py, git._remote_run, proc.run)
and the claim round's fixes (claim refs of tasks a plan does not have, fetch errors that will
not come back, passed-over counts per plan). Real processes and real clones throughout: the
turns are flocks only other processes contend for.

The findings in turns.py and main.py (the lead's) landed here as xfail(strict) and were fixed
there (1e50a02, aef3784, ca5996a); the others were fixed beside them (cli/output.py, git.py)."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgit import turns
from helpers import Repo
from helpers.procs import wait_for
from test_turns import opened as _has_open


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


# ----- findings in turns.py / main.py (the lead's, fixed there) -------------------------------
@pytest.mark.parametrize("value", ["²", "⁰", "①"])
def test_a_turns_count_that_is_a_digit_but_no_number_is_never_a_traceback(
        repo: Repo, pool: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """'²'.isdigit() but int('²') raises: it was a traceback at main.py's import, every hot
    command dead (fixed in turns.py by the lead, 1e50a02)."""
    repo.plan("p", many(2))
    monkeypatch.setenv(turns.ENV, value)
    res = subprocess.run(argv(repo, "status", "p"), capture_output=True, text=True, timeout=60)
    assert "Traceback" not in res.stderr
    assert res.returncode == 0, res.stderr


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def _holds(path: Path) -> bool:
    """Whether another process holds the flock on `path`."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_command_started_with_sigalrm_blocked_waits_no_longer_than_the_wait(repo: Repo, pool: Path) -> None:
    """A parent that blocks SIGALRM (a thread of an agent harness that masks its signals, then
    spawns) hands that mask to flowgit across exec. A waiter stopped at ^Z holds `gate`: the
    others should run without a turn after turns.WAIT; this one hung for as long as it stayed
    stopped."""
    repo.plan("p", many(2))
    pool.mkdir(mode=0o700)
    turn = os.open(pool / "turn.0", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(turn, fcntl.LOCK_EX)  # the one turn, busy
    waiter = subprocess.Popen([sys.executable, "-c", "from flowgit import turns; turns.WAIT = 60; turns.take()"])
    try:
        wait_for(lambda: (pool / "gate").exists() and _holds(pool / "gate"), 30, "the waiter at the gate")
        os.kill(waiter.pid, signal.SIGSTOP)  # ^Z while it waits
        blocked = subprocess.Popen(argv(repo, "--json", "status", "p"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE,
                                   preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM}))
        try:
            blocked.communicate(timeout=turns.WAIT + 4)
        except subprocess.TimeoutExpired:
            blocked.kill()
            blocked.communicate()
            pytest.fail(f"status waited more than {turns.WAIT + 4:g} s for a turn")
        assert blocked.returncode == 0
    finally:
        waiter.kill()
        waiter.wait()
        os.close(turn)


HOLDER = """\
import sys, time
sys.argv = ["flowgit", "--json", "status"]  # as the console script would start
import flowgit.main  # takes the turn (main.py)
print("held", flush=True)
time.sleep(60)
"""


def test_a_command_stopped_at_ctrl_z_lets_go_of_its_turn(pool: Path) -> None:
    """^Z in the terminal sends SIGTSTP, which a process may handle (SIGSTOP it may not): give
    the turn back, stop, take one again on SIGCONT. Kept, a `flowgit status` left at ^Z in one
    terminal made every flowgit command of the machine's agents wait 5 s (one core)."""
    # a process group of its own in this session, as a shell's job is: the kernel discards ^Z
    # sent to an orphaned group (one whose parents are all outside its session: CI's, say)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert probe(0.2) == "False"
        os.kill(holder.pid, signal.SIGTSTP)
        wait_for(lambda: _state(holder.pid) == "T", 30, "the holder stopped")
        assert probe(0.5) == "True", "a stopped command kept its turn"
        for _ in range(3):  # fg, and ^Z again: each time it gives the turn back and takes one again
            os.kill(holder.pid, signal.SIGCONT)
            wait_for(lambda: probe(0.1) == "False", 30, "the continued holder's turn taken again")
            os.kill(holder.pid, signal.SIGTSTP)
            wait_for(lambda: _state(holder.pid) == "T", 30, "the holder stopped")
            assert probe(0.5) == "True"
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.poll() is None  # alive and sleeping on: the handler never ended it
    finally:
        holder.kill()
        holder.wait()


# ----- 2. git's messages in the user's language -------------------------------------------------
GERMAN = {"LANGUAGE": "de", "LC_ALL": "C.UTF-8"}  # as LANG=de_DE.UTF-8 does, on a machine without that locale


@pytest.fixture
def german(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user whose git speaks German (French, Spanish, Chinese: the same). flowgit reads git's
    stderr for "couldn't find remote ref", the markers of a fetch that will fail for good, ...:
    git translates them."""
    probe = tmp_path / "probe"
    subprocess.run(["git", "init", "-q", str(probe)], check=True)
    said = subprocess.run(["git", "fetch", str(probe), "nosuch"], cwd=probe, capture_output=True, text=True,
                          env={**os.environ, **GERMAN}).stderr
    if "Remote-Referenz" not in said:
        pytest.skip("this machine's git has no German messages")
    for key, value in GERMAN.items():
        monkeypatch.setenv(key, value)


def test_a_first_sync_in_german_publishes_the_state(tmp_path: Path, german: None) -> None:
    """Format 2, a remote without `flow/state` yet: git says "Konnte Remote-Referenz ... nicht
    finden", which flowgit did not read as "no remote state": every sync and claim --sync
    exited 4 (retry) for ever, and the clone could never share its state."""
    from helpers import init_repo
    from test_claim_refs import PLAN

    r = init_repo(tmp_path / "r", "2")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    r.git("remote", "add", "origin", str(bare))
    res = r.run("claim", "P", "--sync", "--worker", "w", "--json")
    assert res.code == 0, res.err
    assert res.json["task"] == "P/T1"
    assert r.run("sync").code == 0
    assert subprocess.run(["git", "-C", str(bare), "rev-parse", "--verify", "-q", "flow/state"],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_a_remote_that_is_a_plain_file_is_exit_1_in_german_too(tmp_path: Path, german: None, fmt: str) -> None:
    """gaps7's exit 1 for a remote that is a plain file matched "invalid gitfile format" in
    English only: in German it stayed exit 4 (retry for ever), saying 'und das Repository
    existiert.' (the last line of git's advice)."""
    from test_gaps7 import _bad_remote

    r = _bad_remote(tmp_path, fmt, "plain")
    res = r.run("sync")
    assert res.code == 1, res.err
    assert "git remote get-url origin" in res.err


# ----- 3. remotes whose git runs across the network, though their url is a path --------------
SLOW_SSH = """#!/bin/sh
# a remote across a slow network: says it started, waits, refuses
touch "$0.started"
sleep 2
echo "ssh: connect to host flow.example port 22: Connection timed out" >&2
exit 255
"""


def _network_remote(tmp_path: Path, how: str) -> tuple[Repo, Path]:
    """A clone whose `origin` url is a path, but whose pushes (`pushurl`, a second `url`) or
    fetches and pushes (`url.X.insteadOf`) go over ssh, to a host that answers slowly."""
    from test_claim_refs import PLAN
    from test_state_branch import clone, shared

    bare, _ = shared(tmp_path, PLAN)
    a = clone(bare, tmp_path / "a")
    ssh = tmp_path / "slow-ssh"
    ssh.write_text(SLOW_SSH)
    ssh.chmod(0o755)
    a.git("config", "core.sshCommand", str(ssh))
    if how == "pushurl":  # fetch from a mirror on this machine, push to the server
        a.git("config", "remote.origin.pushurl", "ssh://flow.example/flow.git")
    elif how == "second url":  # git pushes to every url of the remote
        a.git("config", "--add", "remote.origin.url", "ssh://flow.example/flow.git")
    else:  # the path is rewritten to the server's url, for fetches and pushes
        a.git("config", "remote.origin.url", "/srv/flow/flow.git")
        a.git("config", "url.ssh://flow.example/flow/.insteadOf", "/srv/flow/")
    return a, Path(str(ssh) + ".started")


@pytest.mark.parametrize("how", ["pushurl", "second url", "insteadOf"])
def test_a_remote_across_the_network_behind_a_path_is_waited_on_without_a_turn(
        tmp_path: Path, pool: Path, how: str) -> None:
    """git._remote_run keeps the turn for a remote whose url is a path (its git runs here); it
    read the first `url` only, so a `pushurl` or a second url across the network, or a path
    that `insteadOf` rewrites to one, was waited on holding the turn (every other command
    waited for it, up to 5 s)."""
    a, started = _network_remote(tmp_path, how)
    claim = subprocess.Popen(argv(a, "claim", "P", "--sync", "--worker", "w"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        wait_for(started.exists, 60, "git at the slow remote")
        assert probe(0.3) == "True", "the claim held its turn while git waited on the network"
    finally:
        claim.kill()  # its retries would wait on the slow host again
        claim.communicate(timeout=60)


def test_a_remote_that_is_a_path_keeps_the_turn(tmp_path: Path) -> None:
    """What the above must not lose: a fetch and push whose git runs on this machine keeps it."""
    from flowgit import git

    a, _ = _network_remote(tmp_path, "pushurl")
    assert git.remote_is_here(a.path, "origin") is True
    assert git.remote_is_here(a.path, "origin", push=True) is False
    a.git("config", "--unset", "remote.origin.pushurl")
    assert git.remote_is_here(a.path, "origin", push=True) is True
    a.git("config", "url.ssh://flow.example/.insteadOf", "/nowhere/")  # a rule for other urls
    assert git.remote_is_here(a.path, "origin", push=True) is True
    a.git("config", "url.ssh://flow.example/.pushInsteadOf", str(tmp_path))
    assert git.remote_is_here(a.path, "origin") is True
    assert git.remote_is_here(a.path, "origin", push=True) is False


EMBEDDER = """\
import time
from flowgit.main import main  # the documented entry point, called in-process
print("imported", flush=True)
time.sleep(60)  # then runs its agent for an hour, say
"""


def test_a_tool_run_with_python_m_that_imports_flowgit_takes_no_turn(tmp_path: Path, pool: Path) -> None:
    """A wrapper of the team's own (`python -m agentkit claim ...`) imports flowgit.main to call
    `main()` in-process, which ADR 0015 says takes no turn; main.py's test of argv[0] (its
    basename is `__main__.py`) took one for the wrapper's whole life."""
    pkg = tmp_path / "lib" / "agentkit"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(EMBEDDER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'lib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    tool = subprocess.Popen([sys.executable, "-m", "agentkit", "claim", "P"], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert tool.stdout is not None and tool.stdout.readline().strip() == "imported"
        assert probe(0.3) == "True", "the wrapper holds a turn"
    finally:
        tool.kill()
        tool.wait()


def test_ctrl_c_while_waiting_for_the_lock_ends_the_command_at_once(repo: Repo, pool: Path) -> None:
    """A claim waits for the repository's lock without its turn; the user gives up (^C). It
    took a turn again before it could say 'aborted': with the turns busy, 5 s more."""
    repo.plan("p", many(2))
    lock = os.open(repo.path / ".git" / "flowgit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)
    turn = -1
    claim = subprocess.Popen(argv(repo, "claim", "p", "--worker", "w"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _has_open(claim.pid, "flowgit.lock"), 30, "the claim at the lock")
        wait_for(lambda: probe(0.1) == "True", 30, "the claim's turn given back")
        turn = os.open(pool / "turn.0", os.O_RDWR)
        fcntl.flock(turn, fcntl.LOCK_EX)  # another command works meanwhile
        t0 = time.monotonic()
        claim.send_signal(signal.SIGINT)
        claim.communicate(timeout=30)
        assert claim.returncode != 0
        assert time.monotonic() - t0 < 2, f"^C took {time.monotonic() - t0:.1f} s"
    finally:
        claim.kill()
        claim.wait()
        os.close(lock)
        if turn >= 0:
            os.close(turn)


LEFT_BEHIND = """#!/bin/sh
# a hook that starts a job and does not wait for it (a CI trigger, an indexer)
cat >/dev/null
[ -e "{mark}" ] && exit 0
touch "{mark}"
( sleep 1; "{py}" -c "from flowgit import turns; turns.WAIT = 0.5; print(turns.take())" > "{out}" ) \\
    </dev/null >/dev/null 2>&1 &
exit 0
"""


def test_a_job_a_hook_leaves_behind_takes_turns_of_its_own(repo: Repo, pool: Path, tmp_path: Path) -> None:
    """FLOWGIT_TURN_HELD (b1351af) lets a flowgit command that a holder starts and waits for run
    on the holder's turn. Every child of the holder inherits it, though: a hook that starts a
    background job (and the daemons git leaves, and anything they start) took no turn for the
    rest of its life, long after the holder ended."""
    repo.plan("p", many(2))
    out, mark = tmp_path / "job.out", tmp_path / "job.started"
    hook = repo.path / ".git" / "hooks" / "reference-transaction"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(LEFT_BEHIND.format(mark=mark, py=sys.executable, out=out))
    hook.chmod(0o755)
    res = subprocess.run(argv(repo, "claim", "p", "--worker", "w"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert mark.exists(), "the hook ran"
    wait_for(lambda: out.exists() and out.read_text().strip() != "", 30, "the job's ask for a turn")
    assert out.read_text().strip() == "True", "the job left behind took no turn"


NOLOCK_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* the turns' folder on a file system that refuses locks (NFS without its lock daemon) */
int flock(int fd, int op) {
    static int (*real)(int, int);
    char link[64], path[4096];
    ssize_t n;
    if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "flock");
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n > 0) { path[n] = 0; if (strstr(path, "flowgit-turns")) { errno = ENOLCK; return -1; } }
    return real(fd, op);
}
"""


def test_turns_on_a_file_system_that_refuses_locks_are_no_traceback(repo: Repo, pool: Path, tmp_path: Path) -> None:
    """TMPDIR on a home over NFS (a cluster's), its lock daemon not running: flock says ENOLCK.
    The non-blocking tries took that as 'held', the blocking one on `gate` raised it."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the LD_PRELOAD shim")
    src, lib = tmp_path / "nolock.c", tmp_path / "nolock.so"
    src.write_text(NOLOCK_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True, capture_output=True)
    repo.plan("p", many(2))
    res = subprocess.run(argv(repo, "status", "p"), capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LD_PRELOAD": str(lib)})
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 0
