"""`watch --run N`: the watcher's way of running tasks, through a Runner's public face."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from flowgit.clock import wall_now
from flowgit.errors import FlowError
from flowgit.runner.jobs import Job
from flowgit.runner.runner import Runner
from flowgit.store.repo import FlowRepo


class Dispatcher:
    """`watch --run N`: keep up to N tasks running, started from the watcher's passes, when a
    task of its own ends, and when a retry or someone else's lease falls due (no file changes
    then, so the watcher's next pass could be a whole rescan interval away)."""

    def __init__(self, root: Path, workers: int, log: Callable[[str], None]) -> None:
        # a watch may sit idle for hours: no idle worktrees (and branches) left waiting meanwhile
        self.runner = Runner(root, None, workers, None, log, reuse_trees=False)
        self.log = log
        self.threads: list[threading.Thread] = []
        self.mu = threading.Lock()
        self.timer: threading.Timer | None = None
        self.active = 0  # jobs started and not yet finished (a thread may outlive its job briefly)
        self.seq = 0

    def tick(self, _repo: FlowRepo | None = None) -> None:
        with self.mu:
            if self.runner.stop_event.is_set():
                return
            if self.runner.halted is not None and self.active == 0:
                # a watcher outlives what halted it: once its own tasks are done, try again
                self.log(f"dispatching again after: {self.runner.halted}")
                self.runner.halted = None
            self.threads = [t for t in self.threads if t.is_alive()]
            while self.active < self.runner.workers and not self.runner.stop_event.is_set() \
                    and self.runner.halted is None:
                self.seq += 1
                actor = f"{self.runner.ident}-w{self.seq}"
                job = self.runner.claim(actor)
                if job is None:
                    break
                self.active += 1
                t = threading.Thread(target=self._one, args=(job,), daemon=True)
                t.start()
                self.threads.append(t)
            self._schedule()

    def _schedule(self) -> None:
        """Wake up when the earliest retry or foreign lease falls due."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        delay = self._next_due()
        if delay is not None:
            self.timer = threading.Timer(delay, self._wake)
            self.timer.daemon = True
            self.timer.start()

    def _next_due(self) -> float | None:
        repo = self.runner.repo()
        now = wall_now()
        due: float | None = None
        with self.runner.mu:
            mine = set(self.runner.running)
        for pid in repo.plan_ids():
            repo.forget(pid)
            state = repo.state(pid, now)
            if state.phase in ("complete", "halted", "finish", "draft", "plan_review"):
                continue
            for view in state.tasks.values():
                at = None
                if view.state == "retry_wait":
                    at = view.retry_at
                elif view.state in ("claimed", "in_progress") and f"{pid}/{view.id}" not in mine:
                    at = view.lease_until
                if at is not None:
                    due = at if due is None else min(due, at)
        return None if due is None else max(0.05, due - now + 0.05)

    def _wake(self) -> None:
        try:
            self.tick()
        except FlowError as exc:
            self.log(f"dispatch: {exc.message}")

    def _one(self, job: Job) -> None:
        try:
            self.runner.execute(job)
        finally:
            with self.mu:
                self.active -= 1
        # a slot is free and the task's dependents may be ready: look now, not at the next pass
        threading.Thread(target=self._wake, daemon=True).start()

    def stop(self) -> None:
        self.runner.stop()
        with self.mu:
            if self.timer is not None:
                self.timer.cancel()
            threads = list(self.threads)
        for t in threads:
            t.join(timeout=10)
