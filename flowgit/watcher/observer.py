"""`flowgit watch`: apply the phase rules whenever `.flow/` or the branch changes.

File events are hints only: they mark the state dirty, a quiet period passes, then the state
is read again from disk and the rules decide. Nothing is written while git owns the index.
Each pass builds a fresh `FlowRepo` so nothing accumulates over a long run.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from flowgit import git
from flowgit.clock import wall_now
from flowgit.errors import FlowError
from flowgit.store import notices
from flowgit.store.repo import FlowRepo, automatic_actor

IGNORED_PARTS = (".cache", "flowgit.lock", "flowgit-journal", "objects", "logs")


class Trigger:
    """Collects file events; `wait` returns once they have been quiet for `debounce` seconds."""

    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self.cond = threading.Condition()
        self.dirty = False
        self.last = 0.0
        self.count = 0

    def poke(self) -> None:
        with self.cond:
            self.dirty = True
            self.last = time.monotonic()
            self.count += 1
            self.cond.notify_all()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """True when a debounced change is due; False on timeout (time for a rescan)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not stop.is_set():
                now = time.monotonic()
                if self.dirty and now - self.last >= self.debounce:
                    self.dirty = False
                    return True
                if now >= deadline:
                    return False
                wake = self.last + self.debounce - now if self.dirty else deadline - now
                self.cond.wait(max(0.01, min(wake, deadline - now, 0.5)))
        return False


def _relevant(path: str) -> bool:
    parts = Path(path).parts
    return not any(p in IGNORED_PARTS for p in parts) and not path.endswith((".tmp", ".lock"))


def start_observer(root: Path, dirs: git.RepoDirs, trigger: Trigger, poll: bool,
                   log: Callable[[str], None]) -> Any:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if event.is_directory and event.event_type == "modified":
                return  # a file in it came or went: that file's own event says so (git's
                # short-lived locks in the git dir would otherwise wake the watcher)
            # git writes refs, HEAD and the index as X.lock renamed to X: the name that counts
            # is where the file went
            paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
            if any(p and _relevant(p) for p in paths):
                trigger.poke()

    handler = Handler()

    def schedule(observer: Any) -> Any:
        flow = root / ".flow"
        flow.mkdir(exist_ok=True)
        observer.schedule(handler, str(flow), recursive=True)
        observer.schedule(handler, str(dirs.git_dir), recursive=False)
        refs = dirs.common_dir / "refs" / "heads"
        if refs.is_dir():  # the state branch too (ADR 0011): a write from any work tree
            observer.schedule(handler, str(refs), recursive=True)
        if dirs.common_dir != dirs.git_dir:  # a linked work tree: the shared packed-refs
            observer.schedule(handler, str(dirs.common_dir), recursive=False)
        if (dirs.common_dir / "reftable").is_dir():
            observer.schedule(handler, str(dirs.common_dir / "reftable"), recursive=False)
        observer.start()
        return observer

    if not poll:
        try:
            return schedule(Observer()), "inotify" if sys.platform.startswith("linux") else "native"
        except OSError as exc:
            log(f"native file events unavailable ({exc}); polling instead")
    return schedule(PollingObserver(timeout=1)), "polling"


MIN_WAKE = 0.2  # seconds: the shortest sleep before a timer that falls due
BUSY_RECHECK = 1.0  # seconds between looks while git is busy (file events usually come first)


def git_busy(dirs: git.RepoDirs) -> str | None:
    """Why the watcher must not write now, if it must not: git owns the index, or HEAD is
    detached (a checkout of an old commit to look at it is no branch to commit moves to)."""
    busy = git.operation_in_progress(dirs)
    if busy:
        return f"{busy} is in progress"
    if git.index_locked(dirs):
        return "another git command is in progress (index.lock exists)"
    if git.head_detached(dirs):
        return "HEAD is detached (no branch to commit to)"
    return None


def one_pass(root: Path, log: Callable[[str], None],
             extra: Callable[[FlowRepo, Callable[[str], None]], None] | None = None,
             busy_log: Callable[[str], None] | None = None) -> int:
    """Read the state afresh and apply whatever the rules decide. Returns moves applied, or
    -1 when git is busy (nothing read, nothing written)."""
    from flowgit.ops.phases import advance_plan

    repo = FlowRepo(root)
    busy = git_busy(repo.dirs)
    if busy:
        (busy_log or log)(f"waiting: {busy}")
        return -1
    applied = 0
    actor = automatic_actor(repo)
    for pid in repo.plan_ids():
        try:
            for move in advance_plan(repo, pid, actor):
                applied += 1
                vals = "".join(f" [{v['name']}: exit {v['exit_code']}]" for v in move["validations"])
                vals += "".join(f" [{v['name']}: not run]" for v in move.get("not_run", ()))
                log(f"{pid}: {move['from']} -> {move['to']} ({move['reason']}){vals} "
                    f"commit {str(move['commit'])[:10]}")
                for v in move.get("not_run", ()):
                    log(f"{pid}: validation {v['name']} not run: {v['reason']}")
        except FlowError as exc:
            log(f"{pid}: skipped: {exc.message}")
    if extra is not None:
        extra(repo, log)
    repo.save_cache()
    notices.flush()  # what this pass read, said now rather than at the next event
    return applied


def extras(dispatcher: Any, wake: list[float]) -> Callable[[FlowRepo, Callable[[str], None]], None]:
    """Signals, schedules, waits and compaction, then dispatching (with --run); leaves in
    `wake` when the next of them falls due."""
    from flowgit.watcher.extras import next_wake, watcher_extras

    def run(repo: FlowRepo, log: Callable[[str], None]) -> None:
        watcher_extras(repo, automatic_actor(repo), log)
        if dispatcher is not None:
            try:
                dispatcher.tick(repo)
            except FlowError as exc:  # a plan saved half-way, say: the next pass tries again
                log(f"dispatch: {exc.message}")
        due = next_wake(repo, wall_now())
        wake[:] = [] if due is None else [due]
    return run


def watch(repo: FlowRepo, info: Callable[[str], None], workers: int = 0, poll: bool = False,
          interval: float | None = None, max_passes: int | None = None) -> int:
    """Apply the rules whenever .flow/ or the branch changes; `info` gets one line per decision."""
    repo.require_init()
    root = repo.root
    cfg = repo.config
    stop = threading.Event()

    def log(line: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        info(f"{stamp} {line}")

    from flowgit.ops.phases import Stopped, stop_requested

    stop_requested.clear()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        stop_requested.set()  # cuts a running validation short
        with trigger.cond:
            trigger.cond.notify_all()

    trigger = Trigger(cfg.debounce_ms / 1000.0)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    observer, mode = start_observer(root, repo.dirs, trigger, poll, log)
    rescan = interval if interval is not None else cfg.rescan_seconds
    dispatcher = None
    if workers > 0:
        from flowgit.runner.dispatcher import Dispatcher

        dispatcher = Dispatcher(root, workers, log)
    log(f"watching {root} ({mode}; rescan every {rescan:g}s{f'; running {workers} worker(s)' if workers else ''})")
    passes = 0
    waiting: list[str] = []  # the busy line last logged: said once, not on every look

    def busy_log(line: str) -> None:
        if waiting != [line]:
            waiting[:] = [line]
            log(line)

    wake: list[float] = []
    try:
        trigger.poke()
        timeout = rescan
        while not stop.is_set():
            trigger.wait(timeout, stop)
            if stop.is_set():
                break
            try:
                result = one_pass(root, log, extras(dispatcher, wake), busy_log)
            except Stopped as exc:
                log(f"validation {exc} cut short by the stop: its move was not applied")
                break
            if result == -1:
                # git is busy: its end is a file event in the git dir; look again soon anyway
                timeout = min(rescan, BUSY_RECHECK)
            else:
                if waiting:
                    log("git is done: watching again")
                    waiting.clear()
                timeout = rescan
                if wake:  # a schedule, wait, retry or lease falls due before the rescan
                    timeout = min(rescan, max(MIN_WAKE, wake[0] - wall_now() + 0.05))
            passes += 1
            if max_passes is not None and passes >= max_passes:
                break
    finally:
        stop_requested.clear()
        if dispatcher is not None:
            dispatcher.stop()
        observer.stop()
        observer.join(timeout=5)
        for s, handler in old.items():
            signal.signal(s, handler)
        log("stopped")
    return 0
