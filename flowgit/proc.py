"""One door for processes: every command flowgit runs (executors, validations, discovery,
wait checks, signal actions) goes through `run`.

An argv list (never a shell string) runs in a session and process group of its own, with a
timeout. When it ends, times out or is stopped, its whole tree is stopped with it (SIGTERM,
then SIGKILL after a grace period): the process group, and on Linux the descendants that left
the group (agent CLIs detach helpers with `setsid`). Those are found three ways:

- the tree under the command, read from /proc at the end and about once a second while it
  runs (a process is remembered with its start time, so a reused pid is never mistaken);
- a marker in the environment (`FLOWGIT_PROC_TOKEN`) that every descendant inherits, found
  in /proc/PID/environ wherever the process has been re-parented to;
- flowgit makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`), so an orphan is
  re-parented to flowgit instead of init: it stays visible, and flowgit reaps it.

Limits (docs/SECURITY.md): a descendant that both clears the marker from its environment and
leaves the tree between two looks is not found; another user's processes cannot be stopped;
without /proc (macOS, BSD) only the process group is stopped.

Not-found commands and other `OSError`s become a result with exit 127, a timeout exit 124.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from flowgit import turns

TOKEN_ENV = "FLOWGIT_PROC_TOKEN"
AGENT_ENV = "FLOWGIT_AGENT"  # what flowgit starts is not a person: it may not approve or trust
EXIT_TIMEOUT = 124
EXIT_CANNOT_RUN = 127
TAIL_BYTES = 16_000        # the output kept by default (callers cut text tails from it)
MAX_OUTPUT = 64 << 20      # keep="all": the most output kept in memory
GRACE = 2.0                # seconds between SIGTERM and SIGKILL
SNAPSHOT_EVERY = 1.0       # seconds between looks at the tree under a running command
STEP = 0.05                # seconds between looks at the command, the stop event and the clock
DRAIN = 1.0                # seconds to wait for the output pipes to close once all is stopped

PROC = Path("/proc")


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    output: bytes  # stdout, with stderr merged unless asked apart (the tail, or all with keep="all")
    stderr: bytes = b""  # the tail of stderr when it was kept apart
    duration: float = 0.0
    timed_out: bool = False
    stopped: bool = False  # the caller's stop event cut it short
    error: str | None = None  # why it could not start

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.stopped

    def text(self, tail: int | None = None) -> str:
        out = self.output.decode("utf-8", "replace")
        return out if tail is None else out[-tail:]


# ----- the process table (Linux /proc) -----------------------------------------------------------

@dataclass(frozen=True)
class _Info:
    ppid: int
    pgrp: int
    sid: int
    start: int  # clock ticks after boot: with the pid, names one process for good
    state: str


def _stat(pid: int) -> _Info | None:
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    rest = raw[raw.rfind(b")") + 2:].split()
    try:
        return _Info(int(rest[1]), int(rest[2]), int(rest[3]), int(rest[19]), rest[0].decode())
    except (IndexError, ValueError):
        return None


def _table() -> dict[int, _Info]:
    out: dict[int, _Info] = {}
    try:
        names = os.listdir(PROC)
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                out[int(name)] = info
    return out


def _has_proc() -> bool:
    return (PROC / str(os.getpid()) / "stat").exists()


def _descendants(table: Mapping[int, _Info], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    seen: set[int] = set()
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, ()))
    return seen


def _carries(pid: int, marker: bytes) -> bool:
    try:
        return marker in (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False


_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Orphans of what flowgit runs are re-parented to flowgit (Linux 3.4+), so they can be
    found and reaped; False where the system has no such thing."""
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
            except (OSError, AttributeError):
                _subreaper = False
    return _subreaper


# ----- one running command -----------------------------------------------------------------------

@dataclass
class _Spawn:
    popen: subprocess.Popen[bytes]
    token: str
    start: int  # the leader's start time (0 without /proc)
    seen: dict[int, int] = field(default_factory=dict)  # descendants looked at: pid -> start time

    @property
    def pid(self) -> int:
        return self.popen.pid

    def snapshot(self, table: Mapping[int, _Info] | None = None) -> None:
        """Remember the tree under the command as it is now."""
        table = _table() if table is None else table
        for pid in _descendants(table, self.pid):
            self.seen.setdefault(pid, table[pid].start)

    def members(self) -> dict[int, int]:
        """Every live process that belongs to this command (the leader apart): pid -> start."""
        table = _table()
        if not table:
            return {}
        self.snapshot(table)
        marker = f"{TOKEN_ENV}={self.token}\0".encode()
        out = {pid: start for pid, start in self.seen.items()
               if pid in table and table[pid].start == start and table[pid].state != "Z"}
        for pid, info in table.items():
            if (pid not in out and pid != self.pid and info.start >= self.start
                    and info.state != "Z" and _carries(pid, marker)):
                out[pid] = info.start
        return out


_registry_lock = threading.Lock()
_leaders: set[int] = set()  # pids of the commands running now (their Popen reaps them)


def _leader_exited(popen: subprocess.Popen[bytes]) -> bool:
    """Has the command itself exited? Without reaping it: while it is a zombie its pid, and so
    its process group's id, cannot be taken by another process."""
    if popen.returncode is not None:
        return True
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return popen.poll() is not None
    try:
        return waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return popen.poll() is not None


def _signal(spawn: _Spawn, members: Mapping[int, int], sig: int) -> None:
    try:
        os.killpg(spawn.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid, start in members.items():
        info = _stat(pid)
        if info is None or info.start != start:
            continue  # gone, and the pid perhaps reused: never signal a stranger
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pids: Sequence[int]) -> None:
    """Wait for processes that were re-parented to us (we are their subreaper)."""
    me = os.getpid()
    for pid in pids:
        info = _stat(pid)
        if info is not None and info.ppid == me and pid not in _leaders:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _group_alive(pgid: int) -> bool:
    """Is anything but a zombie left in the process group? (`killpg(pgid, 0)` counts the
    leader's zombie, which we keep on purpose.)"""
    table = _table()
    if not table:  # no /proc: ask the system, which cannot tell zombies apart
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return any(info.pgrp == pgid and info.state != "Z" for info in table.values())


def _stop_tree(spawn: _Spawn, grace: float) -> None:
    """SIGTERM to the group and every member, SIGKILL to whatever is left after `grace`;
    new members (spawned meanwhile) are looked for again each round."""
    members = spawn.members()
    _signal(spawn, members, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(list(members))
        members = spawn.members()
        if not members and _leader_exited(spawn.popen) and not _group_alive(spawn.pid):
            return
        time.sleep(0.02)
    for _ in range(20):
        _signal(spawn, members, signal.SIGKILL)
        time.sleep(0.01)
        _reap(list(members))
        members = spawn.members()
        if not members and not _group_alive(spawn.pid):
            return


def sweep() -> None:
    """Reap orphans re-parented to us that have exited (we are their subreaper). Only those
    in a session of their own that no Popen of ours waits for: a child in our session may be
    a git command that a `subprocess.run` in another thread is about to wait for."""
    if not _subreaper:
        return
    me, sid = os.getpid(), os.getsid(0)
    with _registry_lock:
        for pid, info in _table().items():
            if info.ppid == me and info.state == "Z" and info.sid != sid and pid not in _leaders:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass


class _Capture:
    """Reads the command's pipes without blocking: the tail (or all, up to a bound)."""

    def __init__(self, tail: int) -> None:
        self.tail = tail
        self.buf: dict[int, bytearray] = {}
        self.limit: dict[int, int] = {}
        self.idle = 0.0
        self.sel = selectors.DefaultSelector()

    def add(self, pipe: IO[bytes] | None, keep_all: bool = False) -> None:
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
            self.buf[pipe.fileno()] = bytearray()
            self.limit[pipe.fileno()] = MAX_OUTPUT if keep_all else self.tail
            self.sel.register(pipe, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        return bool(self.sel.get_map())

    def poll(self, timeout: float) -> None:
        if not self.open:
            # nothing to read: look at the command again soon, then less and less often
            self.idle = min(timeout, max(0.001, self.idle * 2))
            time.sleep(self.idle)
            return
        for key, _ in self.sel.select(timeout):
            pipe = key.fileobj
            fd = key.fd
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.sel.unregister(pipe)
                pipe.close()  # type: ignore[union-attr]
                continue
            buf = self.buf[fd]
            buf += chunk
            limit = self.limit[fd]
            if len(buf) > limit + 65536:
                del buf[:len(buf) - limit]

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.open and time.monotonic() < deadline:
            self.poll(min(STEP, max(0.0, deadline - time.monotonic())))
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()

    def get(self, fd: int | None) -> bytes:
        if fd is None or fd not in self.buf:
            return b""
        return bytes(self.buf[fd][-self.limit[fd]:])


@turns.without
def run(argv: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None, timeout: float | None = None,
        input: bytes | None = None, output: IO[bytes] | None = None, merge_stderr: bool = True,
        keep: str = "tail", tail: int = TAIL_BYTES, stop: threading.Event | None = None,
        tick: Callable[[], None] | None = None, tick_every: float = 60.0,
        grace: float = GRACE) -> Result:
    """Run `argv` (a list: never a shell string) and stop everything it started when it ends.

    `env` is the whole environment (default: ours), `extra_env` is laid over it. Output goes to
    `output` (a file) or is captured: stdout with stderr merged (or apart), its last `tail`
    bytes, or with keep="all" the whole stdout up to 64 MiB. `stop` (set from another thread
    or a signal handler) stops the command; `tick` is called every `tick_every` seconds while
    it runs (a heartbeat). Whatever is still running when the command exits, times out or is
    stopped is stopped too: the process group, then the descendants that left it.
    """
    args = tuple(str(a) for a in argv)
    started = time.monotonic()
    if not args:
        return Result(args, EXIT_CANNOT_RUN, b"", error="empty command")
    token = uuid.uuid4().hex
    full_env = dict(os.environ if env is None else env)
    full_env.update(extra_env or {})
    full_env[TOKEN_ENV] = token
    full_env[AGENT_ENV] = full_env.get(AGENT_ENV) or "flowgit"
    if _has_proc():
        become_subreaper()
    sweep()
    stderr_target: int | IO[bytes] = subprocess.STDOUT if merge_stderr else subprocess.PIPE
    try:
        with _registry_lock:  # a sweep in another thread must never reap a command of ours
            popen = subprocess.Popen(
                list(args), cwd=cwd, env=full_env, start_new_session=True, close_fds=True,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=output if output is not None else subprocess.PIPE, stderr=stderr_target)
            _leaders.add(popen.pid)
    except OSError as exc:
        why = exc.strerror or str(exc)
        msg = f"cannot run {args[0]!r}: {why}"
        return Result(args, EXIT_CANNOT_RUN, msg.encode(), duration=round(time.monotonic() - started, 3),
                      error=msg)
    info = _stat(popen.pid)
    spawn = _Spawn(popen, token, info.start if info else 0)
    capture = _Capture(tail)
    capture.add(popen.stdout, keep_all=keep == "all")
    capture.add(popen.stderr)
    out_fd = popen.stdout.fileno() if popen.stdout is not None else None
    err_fd = popen.stderr.fileno() if popen.stderr is not None else None
    if input is not None and popen.stdin is not None:
        threading.Thread(target=_feed, args=(popen.stdin, input), daemon=True).start()
    timed_out = stopped = False
    try:
        deadline = started + timeout if timeout is not None else None
        next_tick = started + tick_every
        next_look = started + SNAPSHOT_EVERY / 4
        while True:
            capture.poll(STEP)
            if _leader_exited(popen):
                break
            now = time.monotonic()
            if stop is not None and stop.is_set():
                stopped = True
                break
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if tick is not None and now >= next_tick:
                next_tick = now + tick_every
                tick()
            if now >= next_look:
                next_look = now + SNAPSHOT_EVERY
                spawn.snapshot()
    except BaseException:
        _stop_tree(spawn, grace=0.0)  # Ctrl-C in the waiting thread, a failing heartbeat
        capture.drain(0.2)
        _finish(spawn)
        raise
    # whatever it leaves running would outlive it: the group, and those that left the group
    _stop_tree(spawn, grace)
    capture.drain(DRAIN)
    code = _finish(spawn)
    out = capture.get(out_fd)
    if timed_out:
        code = EXIT_TIMEOUT
        out += f"\n[flowgit: timed out after {timeout:g}s]".encode()
    return Result(args, code, out, capture.get(err_fd), round(time.monotonic() - started, 3),
                  timed_out, stopped)


def _finish(spawn: _Spawn) -> int:
    code = spawn.popen.wait()
    with _registry_lock:
        _leaders.discard(spawn.pid)
    sweep()
    return code


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass
