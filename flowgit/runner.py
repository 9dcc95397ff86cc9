"""`flowgit run`: N workers claim ready tasks through the same lock and rules as the CLI,
run each in its own git worktree, and merge the result back together with its `done`."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from flowgit import git, yamlio
from flowgit.errors import FlowError, IllegalTransition
from flowgit.events import PLAN_LOG, format_time, make_event
from flowgit.executors import argv_for, prompt_text, resolve, values_for
from flowgit.lifecycle import decide_fail, phase_gate
from flowgit.state import PlanState
from flowgit.store import FlowRepo, commit_message
from flowgit.txn import transaction

LOGS = "logs"


@dataclass
class Job:
    plan: str
    task: str
    actor: str
    files: frozenset[str]
    attempt: int
    worktree: Path = Path()
    branch: str = ""
    log: Path = Path()
    proc: subprocess.Popen[bytes] | None = None
    note_file: Path = Path()
    started: float = field(default_factory=time.monotonic)


class Runner:
    def __init__(self, root: Path, plans: list[str] | None, workers: int, executor: str | None,
                 log: Callable[[str], None], progress: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.plans = plans
        self.workers = max(1, workers)
        self.executor = executor
        self.log = log
        self.progress = progress
        self.stop_event = threading.Event()
        self.mu = threading.Lock()
        self.running: dict[str, Job] = {}
        self.files_in_use: set[str] = set()
        self.done = 0
        self.failed = 0
        self.ready: dict[str, int] = {}  # ready tasks per plan, as last seen (progress display)
        self.start = time.monotonic()
        self.ident = f"run-{socket.gethostname()}-{os.getpid()}"
        repo = FlowRepo(root)
        self.common = repo.dirs.common_dir
        self.base_branch = git.current_branch(root)
        if self.base_branch is None:
            raise FlowError("HEAD is detached: check out the branch tasks should merge into", code="detached")

    # ----- the loop ----------------------------------------------------------------------------
    def plan_ids(self, repo: FlowRepo) -> list[str]:
        return self.plans if self.plans else repo.plan_ids()

    def run(self) -> int:
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
            if self.progress:
                self.progress(self.status_line())
        return 130 if self.stop_event.is_set() else (1 if self.failed else 0)

    def stop(self) -> None:
        self.stop_event.set()
        with self.mu:
            jobs = list(self.running.values())
        for job in jobs:
            if job.proc is not None and job.proc.poll() is None:
                _kill_group(job.proc)

    def status_line(self) -> str:
        with self.mu:
            running = len(self.running)
            ready = sum(self.ready.values())
        return (f"done {self.done} | running {running} | ready {ready} | failed {self.failed} | "
                f"{time.monotonic() - self.start:.1f}s")

    def _worker(self, index: int) -> None:
        actor = f"{self.ident}-{index}"
        idle = 0.05
        while not self.stop_event.is_set():
            try:
                job = self._claim(actor)
            except FlowError as exc:
                self.log(f"{actor}: {exc.message}")
                self.stop_event.wait(0.5)
                continue
            if job is None:
                wait = self._idle_wait()
                if wait is None:
                    return
                self.stop_event.wait(min(wait, idle))
                idle = min(idle * 2, 0.5)
                continue
            idle = 0.05
            try:
                self._execute(job)
            finally:
                with self.mu:
                    self.running.pop(f"{job.plan}/{job.task}", None)
                    self.files_in_use -= job.files

    def _idle_wait(self) -> float | None:
        """Seconds to wait before looking again, or None when this run has nothing left."""
        repo = FlowRepo(self.root)
        now = time.time()
        wait: float | None = None
        with self.mu:
            mine = bool(self.running)
        for pid in self.plan_ids(repo):
            state = repo.state(pid, now)
            with self.mu:
                self.ready[pid] = len(state.order)
            if state.phase in ("complete", "halted", "finish", "draft", "plan_review"):
                continue
            if state.order:
                return 0.05
            for view in state.tasks.values():
                if view.state == "retry_wait" and view.retry_at:
                    due = max(view.retry_at - now, 0.05)
                    wait = due if wait is None else min(wait, due)
                if view.state in ("claimed", "in_progress"):
                    wait = 0.2 if wait is None else min(wait, 0.2)
        if mine:
            return 0.1
        return wait

    # ----- claiming ----------------------------------------------------------------------------
    def _claim(self, actor: str) -> Job | None:
        repo = FlowRepo(self.root)
        now = time.time()
        for pid in self.plan_ids(repo):
            state = repo.state(pid, now)
            with self.mu:
                self.ready[pid] = len(state.order)
            if state.phase in ("complete", "halted", "finish"):
                continue
            plan = repo.load_plan(pid).plan
            held = files_held(plan, state)
            for task_id in state.order:
                task = plan.task(task_id)
                assert task is not None
                files = frozenset(task.files)
                if files & held:
                    continue  # claimed elsewhere (another run, a person): wait for it
                with self.mu:
                    key = f"{pid}/{task_id}"
                    if key in self.running or files & self.files_in_use:
                        continue
                    job = Job(pid, task_id, actor, files, state.tasks[task_id].attempts + 1)
                    self.running[key] = job
                    self.files_in_use |= files
                try:
                    if self._claim_one(repo, job):
                        with self.mu:
                            self.ready[pid] = max(0, self.ready.get(pid, 0) - 1)
                        return job
                except FlowError:
                    pass
                with self.mu:
                    self.running.pop(key, None)
                    self.files_in_use -= files
        return None

    def _claim_one(self, repo: FlowRepo, job: Job) -> bool:
        lease = float(repo.config.lease_seconds)
        safe = job.task.replace("/", "_")
        job.branch = f"flow/{job.plan}/{job.task}"
        job.worktree = self.common / "flowgit-worktrees" / job.plan / safe
        job.log = repo.flow / LOGS / job.plan / f"{safe}.{job.attempt}.log"
        base = git.head(self.root)
        plan_hash = repo.load_plan(job.plan).hash

        def decide(state: PlanState, now: float) -> Any:
            view = state.tasks.get(job.task)
            if view is None or view.state != "ready":
                raise IllegalTransition(f"{job.plan}/{job.task} is no longer ready")
            plan = repo.load_plan(job.plan).plan
            clash = job.files & files_held(plan, state)
            if clash:
                raise IllegalTransition(f"{job.plan}/{job.task}: {', '.join(sorted(clash))} "
                                        "is in use by a task claimed elsewhere")
            pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
            gate = phase_gate(plan, state, repo.config, job.actor, pclock, now, base, plan_hash)
            clock = view.record.last_clock + 1
            until = format_time(now + lease)
            events = [
                make_event("task.claimed", job.plan, job.task, job.actor, clock,
                           {"lease_until": until, "lease_seconds": lease}, now),
                make_event("task.started", job.plan, job.task, job.actor, clock + 1,
                           {"lease_until": until, "branch": job.branch, "log": repo.rel(job.log)}, now),
                # FORMAT.md's event for it: the fold keeps the path on the task's record
                make_event("task.log", job.plan, job.task, job.actor, clock + 2,
                           {"path": repo.rel(job.log)}, now),
            ]
            appends: dict[Path, list[Any]] = {repo.log_file(job.plan, job.task): events}
            if gate:
                appends[repo.log_file(job.plan, PLAN_LOG)] = list(gate)
            return appends, {}, commit_message(job.plan, job.task, "claimed", job.actor), True

        transaction(repo, job.plan, decide)
        self.log(f"{job.actor} claimed {job.plan}/{job.task}")
        return True

    # ----- running -----------------------------------------------------------------------------
    def _execute(self, job: Job) -> None:
        repo = FlowRepo(self.root)
        loaded = repo.load_plan(job.plan)
        plan, task = loaded.plan, loaded.plan.task(job.task)
        assert task is not None
        try:
            executor = resolve(repo.config, plan, task, self.executor)
            self._make_worktree(job)
            prompt = self._prompt(repo, job)
            prompt_file = self.common / "flowgit-runs" / job.plan / f"{job.worktree.name}.prompt.md"
            prompt_file.parent.mkdir(parents=True, exist_ok=True)
            prompt_file.write_text(prompt)
            job.note_file = prompt_file.with_name(f"{job.worktree.name}.note")
            job.note_file.unlink(missing_ok=True)
            values = values_for(plan, task, job.worktree, prompt_file, prompt, job.branch, self.root,
                                job.attempt, sys.executable)
            argv = argv_for(executor, values, task, plan.id)
        except FlowError as exc:
            self._fail(job, exc.message, retry=False)
            self._cleanup(job, keep_branch=False)
            return
        env = {**os.environ, **executor.env,
               "FLOWGIT_PLAN": job.plan, "FLOWGIT_TASK": job.task, "FLOWGIT_TITLE": task.title,
               "FLOWGIT_FILES": "\n".join(task.files), "FLOWGIT_WORKTREE": str(job.worktree),
               "FLOWGIT_PROMPT_FILE": str(prompt_file), "FLOWGIT_ACTOR": job.actor,
               "FLOWGIT_NOTE_FILE": str(job.note_file)}
        env.pop("GIT_INDEX_FILE", None)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        timeout = executor.timeout
        code = self._spawn(job, argv, env, timeout, repo)
        if self.stop_event.is_set():
            self._release(job, "run interrupted")
            self._cleanup(job, keep_branch=False)
            return
        if code != 0:
            why = f"timed out after {timeout:g}s" if code == 124 else f"exit {code}"
            self._fail(job, f"executor {executor.name} {why}; log: {repo.rel(job.log)}", retry=True)
            self._cleanup(job, keep_branch=False)
            return
        merged = self._merge_done(job)
        self._cleanup(job, keep_branch=not merged)

    def _spawn(self, job: Job, argv: tuple[str, ...], env: dict[str, str], timeout: float,
               repo: FlowRepo) -> int:
        lease = float(repo.config.lease_seconds)
        with open(job.log, "ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            try:
                job.proc = subprocess.Popen(list(argv), cwd=job.worktree, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
            except OSError as exc:
                out.write(f"flowgit: cannot start {argv[0]!r}: {exc.strerror}\n".encode())
                return 127
        deadline = time.monotonic() + timeout
        beat = time.monotonic() + lease / 3
        while True:
            try:
                return job.proc.wait(timeout=max(0.01, min(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            if self.stop_event.is_set():
                _kill_group(job.proc)
                return job.proc.wait()
            if time.monotonic() >= deadline:
                _kill_group(job.proc)
                job.proc.wait()
                return 124
            if time.monotonic() >= beat:
                beat = time.monotonic() + lease / 3
                self._heartbeat(job, lease)

    def _make_worktree(self, job: Job) -> None:
        if job.worktree.exists():
            git.run(["worktree", "remove", "--force", str(job.worktree)], self.root, check=False)
            shutil.rmtree(job.worktree, ignore_errors=True)
        git.run(["worktree", "prune"], self.root, check=False)
        job.worktree.parent.mkdir(parents=True, exist_ok=True)
        git.run(["worktree", "add", "-q", "-B", job.branch, str(job.worktree), "HEAD"], self.root)

    def _prompt(self, repo: FlowRepo, job: Job) -> str:
        from flowgit.commands.plans import adr_ids

        loaded = repo.load_plan(job.plan)
        plan, task = loaded.plan, loaded.plan.task(job.task)
        assert task is not None
        spec_path = repo.spec_file(job.plan)
        spec = yamlio.load_file(spec_path, repo.rel(spec_path)) if spec_path.exists() else None
        adrs: dict[str, Any] = {}
        wanted = set(plan.adrs) | set(task.adrs)
        if wanted:
            for path in sorted(repo.safe("adrs").glob("ADR-*.yaml")):
                adr_id = "-".join(path.name.split("-")[:2])
                if adr_id in wanted and adr_id in adr_ids(repo):
                    adrs[adr_id] = yamlio.load_file(path, repo.rel(path)) or {}
        state = repo.state(job.plan)
        notes = {d: state.tasks[d].record.note or "" for d in task.depends_on
                 if d in state.tasks and state.tasks[d].record.note}
        return prompt_text(plan, task, spec if isinstance(spec, dict) else None, adrs, notes)

    # ----- finishing ---------------------------------------------------------------------------
    def _merge_done(self, job: Job) -> bool:
        """Commit the worktree's changes, then merge the branch and record `done` in one commit."""
        wt = job.worktree
        if git.out(["status", "--porcelain"], wt):
            git.run(["add", "-A"], wt)
            git.run(["commit", "-q", "--no-verify", "-m", f"flow({job.plan}/{job.task}): work"], wt,
                    env={"FLOWGIT_INTERNAL": "1"})
        repo = FlowRepo(self.root)
        elapsed = round(time.monotonic() - job.started, 3)
        note = _read_note(job.note_file) or f"ran in {elapsed}s"

        def decide(state: PlanState, now: float) -> Any:
            view = state.tasks.get(job.task)
            if view is None or view.state not in ("claimed", "in_progress") or view.worker != job.actor:
                raise IllegalTransition(f"{job.plan}/{job.task}: lost the lease while running "
                                        f"(now {view.state if view else 'gone'}); branch {job.branch} kept")
            if git.run(["diff", "--cached", "--quiet"], self.root, check=False).returncode != 0:
                raise IllegalTransition("the main work tree has staged changes: flowgit run merges into "
                                        f"it; commit or unstage them (branch {job.branch} kept)")
            # -z: paths as they are (no C quoting of spaces or non-ASCII); no renames: both names count
            stats = git.run(["diff", "--numstat", "-z", "--no-renames", f"HEAD...{job.branch}"],
                            self.root).stdout.decode("utf-8", "replace")
            files, added, removed = [], 0, 0
            for line in filter(None, stats.split("\0")):
                a, r, path = line.split("\t", 2)
                files.append(path)
                added += int(a) if a.isdigit() else 0
                removed += int(r) if r.isdigit() else 0
            merge = git.run(["merge", "--no-ff", "--no-commit", "-q", job.branch], self.root, check=False,
                            env={"FLOWGIT_INTERNAL": "1"})
            if merge.returncode != 0:
                names = git.run(["diff", "--name-only", "-z", "--diff-filter=U"], self.root, check=False)
                conflicted = [p for p in names.stdout.decode("utf-8", "replace").split("\0") if p]
                git.run(["merge", "--abort"], self.root, check=False)
                raise _Conflict(conflicted or ["(merge failed)"])
            ev = make_event("task.done", job.plan, job.task, job.actor, view.record.last_clock + 1,
                            {"note": note, "seconds": elapsed, "files_modified": files, "lines_added": added,
                             "lines_removed": removed, "log": repo.rel(job.log), "branch": job.branch}, now)
            return ({repo.log_file(job.plan, job.task): [ev]}, {},
                    commit_message(job.plan, job.task, "done", job.actor, f"Merge branch {job.branch}"),
                    (len(files), added, removed))

        try:
            (nfiles, added, removed), _sha = _merge_transaction(repo, job.plan, decide)
        except _Conflict as exc:
            self._fail(job, f"merge conflict in {', '.join(exc.paths)}; branch {job.branch} kept", retry=False)
            return False
        except FlowError as exc:
            self._release(job, exc.message)
            return False
        with self.mu:
            self.done += 1
        self.log(f"{job.plan}/{job.task} done: {nfiles} file(s), +{added} -{removed} "
                 f"in {time.monotonic() - job.started:.2f}s")
        return True

    def _fail(self, job: Job, error: str, retry: bool) -> None:
        repo = FlowRepo(self.root)

        def decide(state: PlanState, now: float) -> Any:
            plan = repo.load_plan(job.plan).plan
            pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
            d = decide_fail(plan, state, repo.config, job.task, job.actor,
                            state.tasks[job.task].record.last_clock + 1, pclock, now, error,
                            "retry" if retry else "fail")
            appends: dict[Path, Any] = {repo.log_file(job.plan, job.task): list(d.task_events)}
            if d.plan_events:
                appends[repo.log_file(job.plan, PLAN_LOG)] = list(d.plan_events)
            return appends, {}, commit_message(job.plan, job.task, d.event_name, job.actor), d.result

        try:
            result, _ = transaction(repo, job.plan, decide)
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: could not record the failure: {exc.message}")
            return
        if result["state"] == "failed":
            with self.mu:
                self.failed += 1
        self.log(f"{job.plan}/{job.task} failed ({error})"
                 + (f"; retry at {result['retry_at']}" if result.get("retry_at") else ""))

    def _release(self, job: Job, reason: str) -> None:
        repo = FlowRepo(self.root)

        def decide(state: PlanState, now: float) -> Any:
            view = state.tasks[job.task]
            if view.worker != job.actor or view.state not in ("claimed", "in_progress"):
                return {}, {}, "", None
            ev = make_event("task.released", job.plan, job.task, job.actor, view.record.last_clock + 1,
                            {"reason": reason}, now)
            return {repo.log_file(job.plan, job.task): [ev]}, {}, \
                commit_message(job.plan, job.task, "released", job.actor), None

        try:
            transaction(repo, job.plan, decide)
            self.log(f"released {job.plan}/{job.task} ({reason})")
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: could not release: {exc.message}")

    def _heartbeat(self, job: Job, lease: float) -> None:
        repo = FlowRepo(self.root)

        def decide(state: PlanState, now: float) -> Any:
            view = state.tasks[job.task]
            if view.worker != job.actor:
                return {}, {}, "", None
            ev = make_event("task.heartbeat", job.plan, job.task, job.actor, view.record.last_clock + 1,
                            {"lease_until": format_time(now + lease)}, now)
            return {repo.log_file(job.plan, job.task): [ev]}, {}, \
                commit_message(job.plan, job.task, "heartbeat", job.actor), None

        try:
            transaction(repo, job.plan, decide)
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: heartbeat failed: {exc.message}")

    def _cleanup(self, job: Job, keep_branch: bool) -> None:
        if job.worktree != Path() and job.worktree.exists():
            git.run(["worktree", "remove", "--force", str(job.worktree)], self.root, check=False)
            shutil.rmtree(job.worktree, ignore_errors=True)
        if job.branch and not keep_branch:
            git.run(["branch", "-q", "-D", job.branch], self.root, check=False)


NOTE_LIMIT = 4000


def _read_note(path: Path) -> str:
    """What the executor left in $FLOWGIT_NOTE_FILE for the tasks that depend on this one
    (their prompts) and the changelog; bounded, and only when it left something."""
    try:
        with open(path, "rb") as f:
            data = f.read(NOTE_LIMIT + 1)
    except OSError:
        return ""
    finally:
        if path != Path():
            path.unlink(missing_ok=True)
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= NOTE_LIMIT else text[:NOTE_LIMIT].rstrip() + " ..."


def files_held(plan: Any, state: PlanState) -> frozenset[str]:
    """The declared files of the tasks of a plan held under a live claim (by anyone): a task
    touching one of them must not start, whichever process or machine holds it."""
    held: set[str] = set()
    for view in state.tasks.values():
        if view.state in ("claimed", "in_progress"):
            task = plan.task(view.id)
            if task is not None:
                held.update(task.files)
    return frozenset(held)


class _Conflict(FlowError):
    def __init__(self, paths: list[str]) -> None:
        super().__init__("merge conflict")
        self.paths = paths


def _merge_transaction(repo: FlowRepo, plan_id: str, decide: Callable[[PlanState, float], Any]) -> Any:
    """Like `transaction`, but the commit is the pending merge plus the done event."""
    with repo.lock():
        repo.recover()
        repo.forget(plan_id)
        now = time.time()
        state = repo.state(plan_id, now)
        appends, _files, message, result = decide(state, now)
        try:
            for path, events in appends.items():
                from flowgit.events import append

                append(path, events)
            git.run(["add", "--", *[repo.rel(p) for p in appends]], repo.root)
            git.run(["commit", "--no-verify", "-q", "-m", message], repo.root, env={"FLOWGIT_INTERNAL": "1"})
        except Exception:
            git.run(["merge", "--abort"], repo.root, check=False)
            raise
        return result, git.head(repo.root)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Dispatcher:
    """`watch --run N`: keep up to N tasks running, started from the watcher's passes, when a
    task of its own ends, and when a retry or someone else's lease falls due (no file changes
    then, so the watcher's next pass could be a whole rescan interval away)."""

    def __init__(self, root: Path, workers: int, log: Callable[[str], None]) -> None:
        self.runner = Runner(root, None, workers, None, log)
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
            self.threads = [t for t in self.threads if t.is_alive()]
            while self.active < self.runner.workers and not self.runner.stop_event.is_set():
                self.seq += 1
                actor = f"{self.runner.ident}-w{self.seq}"
                job = self.runner._claim(actor)
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
        repo = FlowRepo(self.runner.root)
        now = time.time()
        due: float | None = None
        with self.runner.mu:
            mine = set(self.runner.running)
        for pid in repo.plan_ids():
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
            self.runner._execute(job)
        finally:
            with self.runner.mu:
                self.runner.running.pop(f"{job.plan}/{job.task}", None)
                self.runner.files_in_use -= job.files
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
