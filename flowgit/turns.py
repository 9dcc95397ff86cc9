"""Turns on this machine's cores (ADR 0015). A command agents run hundreds of times (cli/hot.py)
does its work holding one of as many turns as the process may use cores, and lets go of it
while it waits on something that is not this machine's CPU: the repository's lock, a remote
across the network, a back-off, a command of the user's. More flowgit processes than cores
then take turns instead of sharing every core at once, which costs each of them a sixth more
CPU at four processes a core (cache refills after every switch).

A turn is an exclusive `flock` on one of the files `turn.0` .. `turn.N-1` in a folder of this
user's own (mode 0700, never a symlink). A process waiting for a turn first holds `gate`, so
that one waiter at a time looks for a free turn; nobody waits longer than WAIT seconds, after
which the command runs without a turn: a stopped or stuck holder delays the others, never
stops them. A holder says so in its environment (FLOWGIT_TURN_HELD), so that a flowgit command
it starts and waits for (a hook of its commit) runs on its turn instead of waiting for another.
`FLOWGIT_TURNS=N` sets the number of turns, 0 turns them off."""
from __future__ import annotations

import fcntl
import os
import signal
import stat
import time
TYPE_CHECKING = False  # typing itself costs a process 2 ms, before its turn

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Callable, ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

ENV = "FLOWGIT_TURNS"
HELD = "FLOWGIT_TURN_HELD"  # set while a process holds a turn: what it starts runs on that turn
WAIT = 5.0  # seconds a command waits for a turn before it runs without one
MOST = 64

_held: int | None = None  # the descriptor of the turn this process holds
_pool: tuple[int, str | None] | None = None  # how many turns, and their folder (None: no turns)


class _Late(Exception):
    pass


def count() -> int:
    """How many turns this machine has: FLOWGIT_TURNS, else the cores this process may use (its
    CPU affinity, and a container's CPU quota below that)."""
    said = os.environ.get(ENV, "").strip()
    if said:
        return min(int(said), MOST) if said.isascii() and said.isdigit() else 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, quota() or cores, MOST))


def quota(root: str = "/") -> int | None:
    """The cores a CPU quota of this process's cgroup allows, rounded up (`docker --cpus=1.5`
    gives 2); None without one. cgroup v2's `cpu.max`, else v1's `cpu.cfs_quota_us`."""
    try:
        with open(os.path.join(root, "proc/self/cgroup"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeError):
        return None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        here = path.lstrip("/")
        try:
            if number == "0" and controllers == "":
                with open(os.path.join(root, "sys/fs/cgroup", here, "cpu.max"), encoding="ascii") as fh:
                    limit, period = (fh.read().split() + ["", ""])[:2]
            elif "cpu" in controllers.split(","):
                folder = os.path.join(root, "sys/fs/cgroup", controllers)
                with open(os.path.join(folder, here, "cpu.cfs_quota_us"), encoding="ascii") as fh:
                    limit = fh.read().strip()
                with open(os.path.join(folder, here, "cpu.cfs_period_us"), encoding="ascii") as fh:
                    period = fh.read().strip()
            else:
                continue
            if limit.isdigit() and period.isdigit() and int(period) > 0:
                return -(-int(limit) // int(period))
        except (OSError, UnicodeError, ValueError):
            continue
    return None


def folder() -> str | None:
    """This user's folder of turns at this process's niceness (a command at nice 19 never holds
    up one at 0), made if missing; None when it is not this user's alone."""
    uid = os.getuid()
    base = next((d for d in (os.environ.get("XDG_RUNTIME_DIR"), os.environ.get("TMPDIR"))
                 if d and d.startswith("/")), "/tmp")
    path = os.path.join(base, f"flowgit-turns-{uid}" + (f"-nice{nice}" if (nice := os.nice(0)) else ""))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None  # another user's, a symlink, or open to others: no turns rather than theirs
    return path


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


class _NoLocks(Exception):
    """The turns' file system refuses flock (ENOLCK: NFS without its lock daemon, say)."""


def _try(fds: list[int]) -> int | None:
    for fd in fds:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            continue
        except OSError as exc:
            raise _NoLocks from exc
    return None


def _holder_waits_for_us(said: str) -> bool:
    """Whether the process FLOWGIT_TURN_HELD names is an ancestor of this one (it waits for
    what it started): a job its hook left behind, reparented once the holder ended, is not."""
    if not said.isascii() or not said.isdigit():
        return False
    pid = os.getppid()
    for _ in range(32):
        if str(pid) == said:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                pid = int(fh.read().rpartition(b")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _lock_within(fd: int, seconds: float) -> bool:
    """An exclusive flock on `fd` within `seconds`: blocked in the kernel under an alarm where
    this thread may set one, else asked for every few milliseconds."""
    alarm_free = (signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
                  and signal.SIGALRM not in signal.pthread_sigmask(signal.SIG_BLOCK, ()))  # a mask it inherited
    if alarm_free and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None):
        def ring(signum: int, frame: FrameType | None) -> None:
            raise _Late

        try:
            signal.signal(signal.SIGALRM, ring)
        except ValueError:  # not the main thread
            pass
        else:
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, seconds)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    except OSError as exc:
                        raise _NoLocks from exc
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except _Late:  # also when it rang between the lock and the line above: one alarm only
                pass
            finally:
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
            return _try([fd]) is not None  # the lock may have come just before the alarm
    deadline = time.monotonic() + seconds
    while _try([fd]) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def take() -> bool:
    """Hold a turn (at once if one is free, else after the waiters before this one, at most
    WAIT seconds); False when this command runs without one."""
    global _held
    if _held is not None:
        return True
    if _holder_waits_for_us(os.environ.get(HELD, "")):  # a hook of the holder's commit, say
        return False
    global _pool
    if _pool is None:  # once a process: a retake after each wait reads nothing again
        n = count()
        _pool = (n, folder() if n > 0 else None)
    n, where = _pool
    if where is None:
        return False
    first = os.getpid() % n  # processes that find every turn free spread over them
    fds = [fd for i in range(n) if (fd := _open(os.path.join(where, f"turn.{(first + i) % n}"))) is not None]
    try:
        got = _try(fds)
        if got is None and fds:
            got = _wait(where, fds)
    except _NoLocks:
        got = None
    for fd in fds:
        if fd != got:
            os.close(fd)
    _held = got
    if got is not None:
        os.environ[HELD] = str(os.getpid())
        _let_go_when_stopped()
    return got is not None


def _let_go_when_stopped() -> None:
    """At ^Z (SIGTSTP) give the turn back, stop, and take one again once continued: a command
    left stopped in a terminal would hold it for as long as it stays there."""
    def stop(signum: int, frame: FrameType | None) -> None:
        gave = give_back()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until SIGCONT
        signal.signal(signal.SIGTSTP, stop)
        if gave:
            take()

    try:
        if signal.getsignal(signal.SIGTSTP) == signal.SIG_DFL:
            signal.signal(signal.SIGTSTP, stop)
    except ValueError:  # not the main thread: what stops it keeps its turn
        pass


def _wait(where: str, fds: list[int]) -> int | None:
    gate = _open(os.path.join(where, "gate"))
    if gate is None:
        return None
    deadline = time.monotonic() + WAIT
    try:
        if not _lock_within(gate, WAIT):
            return None
        delay = 0.0005
        while (got := _try(fds)) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
        return got
    finally:
        os.close(gate)  # and with it the gate's lock


def held() -> bool:
    """Whether this process holds a turn."""
    return _held is not None


def give_back() -> bool:
    """Let go of this process's turn; whether it held one."""
    global _held
    if _held is None:
        return False
    fd, _held = _held, None
    os.environ.pop(HELD, None)
    os.close(fd)  # closing the only descriptor of the file's open description drops the lock
    return True


class aside:
    """`with aside():` waits on something that is not this machine's CPU without a turn, and
    takes one again after (`keep`: holds on to it, the wait being work of this machine's: a
    remote whose git runs here, say)."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.gave = False

    def __enter__(self) -> None:
        self.gave = not self.keep and give_back()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.gave and kind is None:  # a wait that ended the command (^C, a timeout) needs none
            take()


def sleep(seconds: float) -> None:
    """time.sleep without a turn."""
    with aside():
        time.sleep(seconds)


def without(run: Callable[P, R]) -> Callable[P, R]:
    """`run`, called without a turn: it waits on a command of the user's."""
    def unturned(*args: P.args, **kwargs: P.kwargs) -> R:
        with aside():
            return run(*args, **kwargs)

    unturned.__doc__, unturned.__name__ = run.__doc__, run.__name__
    return unturned
