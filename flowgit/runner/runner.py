"""`flowgit run`: N workers claim ready tasks through the same lock and rules as the CLI,
run each in its own git worktree, and merge the result back together with its `done`."""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from flowgit import git, proc
from flowgit.clock import wall_now
from flowgit.core.events import PLAN_LOG, format_time, make_event
from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import CLAIMABLE_PHASES, approval_block, decide_fail, phase_gate
from flowgit.core.model import Config, Plan, Task
from flowgit.core.overlap import files_held
from flowgit.errors import (
    Detached,
    ExitCode,
    FlowError,
    IllegalTransition,
    InvalidFile,
    NeedsApproval,
    NotFound,
)
from flowgit.runner.checks import check_work, prepare
from flowgit.runner.executors import choose, commands_for, invocation, resolve, values_for
from flowgit.runner.jobs import Job, MergeConflict, RunHalted, file_stamp, read_note
from flowgit.runner.landing import branch_stats, merge_branch
from flowgit.runner.logfiles import open_log
from flowgit.runner.prompt import task_prompt
from flowgit.runner.worktrees import WorktreePool, branch_taken
from flowgit.store.planpin import gate_hash
from flowgit.store.repo import FLOW, FlowRepo
from flowgit.store.writing import Write, commit_message

LOGS = "logs"
INVALID_PATIENCE = 10.0  # seconds a .flow/ file may stay invalid before a run stops for it


class Runner:
    def __init__(self, root: Path, plans: list[str] | None, workers: int, executor: str | None,
                 log: Callable[[str], None], progress: Callable[[str], None] | None = None,
                 reuse_trees: bool = True, commit_hooks: bool = False, land: str | None = None) -> None:
        self.root = root
        self.plans = plans
        self.workers = max(1, workers)
        self.executor = executor
        self.log = log
        self.progress = progress
        self.reuse_trees = reuse_trees
        self.commit_hooks = commit_hooks  # `run --verify`: commit agent work through the hooks
        self.land = land  # `run --land`: merge, or branch (kept for review); None: config's
        self.reviews = 0  # tasks this run left in review on their branches
        self.stop_event = threading.Event()
        self.mu = threading.Lock()
        self.running: dict[str, Job] = {}
        self.files_in_use: set[str] = set()
        self.done = 0
        self.failed = 0
        self.halted: str | None = None  # why the run stopped itself
        self.waiting_said: str | None = None  # the foreign claim last reported as waited for
        self.untrusted_said: set[str] = set()  # untrusted commands reported (once each)
        self.chosen: dict[str, tuple[str, str]] = {}  # PLAN/TASK -> the executor it got, and why
        self.ready: dict[str, int] = {}  # ready tasks per plan, as last seen (progress display)
        self.start = time.monotonic()
        self.ident = f"run-{socket.gethostname()}-{os.getpid()}"
        # this run's threads queue here for the repository lock instead of polling its file
        self.repo_lock_queue = threading.Lock()
        self.trees = WorktreePool(root, self.ident, reuse_trees)
        self.local = threading.local()
        self.dirs = git.find_dirs(root)
        self.common = self.dirs.common_dir
        self.base_branch = git.current_branch(root)
        if self.base_branch is None:
            raise Detached("HEAD is detached: check out the branch tasks should merge into")

    def repo(self) -> FlowRepo:
        """This thread's FlowRepo, kept from task to task so that its caches stay warm; a new
        one when config.yaml changes (a FlowRepo reads it once)."""
        stamp = file_stamp(self.root / FLOW / "config.yaml")
        local = self.local
        if getattr(local, "repo", None) is None or local.config_stamp != stamp:
            local.repo, local.config_stamp = FlowRepo(self.root), stamp
        repo: FlowRepo = local.repo
        return repo

    # ----- the loop ----------------------------------------------------------------------------
    def plan_ids(self, repo: FlowRepo) -> list[str]:
        return self.plans if self.plans else repo.plan_ids()

    def run(self) -> int:
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
                if self.progress:
                    self.progress(self.status_line())
        finally:
            self.close()
        if self.halted is not None:
            return 1
        return ExitCode.INTERRUPTED if self.stop_event.is_set() else (1 if self.failed else 0)

    def halt(self, reason: str) -> None:
        """Claim nothing more, for a reason of the run's own (not a signal); the tasks already
        running finish as usual, and the run then exits 1."""
        with self.mu:
            first = self.halted is None
            self.halted = self.halted or reason
        if first:
            self.log(f"stopping once the running tasks finish: {reason}")

    def stop(self) -> None:
        """Stop the executors (each `proc.run` sees the event and stops its whole tree)."""
        self.stop_event.set()

    def close(self) -> None:
        self.trees.close()

    def status_line(self) -> str:
        with self.mu:
            running = len(self.running)
            ready = sum(self.ready.values())
        return (f"done {self.done} | running {running} | ready {ready} | failed {self.failed} | "
                f"{time.monotonic() - self.start:.1f}s")

    def _worker(self, index: int) -> None:
        actor = f"{self.ident}-{index}"
        idle = 0.05
        try:
            invalid_since: float | None = None
            while not self.stop_event.is_set() and self.halted is None:
                try:
                    job = self.claim(actor)
                    invalid_since = None
                except InvalidFile as exc:
                    # a file saved half-way mends itself in a moment; one that stays broken won't
                    invalid_since = invalid_since or time.monotonic()
                    if time.monotonic() - invalid_since > INVALID_PATIENCE:
                        self.halt(f"{exc.message} (fix it, see `flowgit validate`, then run again)")
                        return
                    self.stop_event.wait(0.5)
                    continue
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
                self.execute(job)
        finally:
            with self.repo_lock_queue:  # the cache file's temporary name is per process
                self.repo().save_cache()

    def _idle_wait(self) -> float | None:
        """Seconds to wait before looking again, or None when this run has nothing left."""
        repo = self.repo()
        now = wall_now()
        wait: float | None = None
        with self.mu:
            mine = bool(self.running)
        foreign: list[str] = []
        for pid in self.plan_ids(repo):
            repo.forget(pid)
            state = repo.state(pid, now)
            with self.mu:
                self.ready[pid] = len(state.order)
            if state.phase in ("complete", "halted", "finish", "draft", "plan_review"):
                continue
            with self.mu:
                if next(self._claimable(repo.load_plan(pid).plan, state), None) is not None:
                    return 0.05
            for view in state.tasks.values():
                if view.state == "retry_wait" and view.retry_at:
                    due = max(view.retry_at - now, 0.05)
                    wait = due if wait is None else min(wait, due)
                if view.state in ("claimed", "in_progress"):
                    wait = 0.2 if wait is None else min(wait, 0.2)
                    if not mine:  # none of ours runs: the claim is someone else's
                        foreign.append(f"{pid}/{view.id} ({view.worker}, lease until "
                                       f"{format_time(view.lease_until or now)})")
        if mine:
            return 0.1
        if foreign and wait is not None:
            with self.mu:
                said, self.waiting_said = self.waiting_said, foreign[0]
            if said != foreign[0]:  # once per change, not on every look
                self.log(f"waiting for work claimed by others: {', '.join(foreign[:3])}")
        return wait

    @contextmanager
    def _holding(self, job: Job) -> Iterator[tuple[Write, PlanState]]:
        """The write door, and the task's state read from its own log: all that the
        transitions of a task this run holds need (the rest of the plan is not evaluated)."""
        repo = self.repo()
        with self.repo_lock_queue, repo.writing(job.plan) as w:
            state = repo.task_state(job.plan, job.task, w.now)
            if state is None:
                raise IllegalTransition(f"{job.plan}/{job.task} is no longer a task of its plan")
            yield w, state

    # ----- claiming ----------------------------------------------------------------------------
    def claim(self, actor: str) -> Job | None:
        """Claim the best task this run may take, reserved for it; None when there is none."""
        repo = self.repo()
        for pid in self.plan_ids(repo):
            job = self._claim_in(repo, pid, actor)
            if job is not None:
                return job
        return None

    def _claim_in(self, repo: FlowRepo, plan_id: str, actor: str) -> Job | None:
        """Choose and claim a task in one transaction: the state read under the lock is the
        one that decides, so no claim is tried on a task someone took a moment before."""
        picked: list[Job] = []

        def decide(w: Write) -> None:
            state = w.state
            with self.mu:
                self.ready[plan_id] = len(state.order)
            job = None if state.phase in ("complete", "halted", "finish") or self._escalate(plan_id, state, repo) \
                else self._pick(repo, plan_id, actor, state)
            if job is None:
                return
            picked.append(job)
            self._claim_events(w, job, state)
            w.message = commit_message(plan_id, job.task, "claimed", actor)

        try:
            with self.repo_lock_queue:
                repo.write(plan_id, decide)
        except BaseException as exc:
            for job in picked:
                self._unreserve(job)
            if isinstance(exc, FlowError) and not isinstance(exc, (InvalidFile, NotFound)):
                return None  # nothing to claim for now: waiting for approval, git busy, ...
            raise
        if not picked:
            return None
        with self.mu:
            self.ready[plan_id] = max(0, self.ready.get(plan_id, 0) - 1)
        job = picked[0]
        with self.mu:
            self.chosen[f"{plan_id}/{job.task}"] = (job.executor, job.executor_why)
        self.log(f"{actor} claimed {plan_id}/{job.task} (executor {job.executor}: {job.executor_why})")
        return job

    def _escalate(self, plan_id: str, state: PlanState, repo: FlowRepo) -> bool:
        """More tasks failed or blocked than `run.escalate_after` allows: stop claiming and
        say so, for a person to look (PlanEx escalates past 2 blocked executors)."""
        limit = repo.config.run.escalate_after
        if limit is None:
            return False
        stuck = sorted(v.id for v in state.tasks.values() if v.state in ("failed", "blocked"))
        if len(stuck) <= limit:
            return False
        self.halt(f"{len(stuck)} tasks of {plan_id} are failed or blocked ({', '.join(stuck[:5])}"
                  f"{', ...' if len(stuck) > 5 else ''}), more than run.escalate_after ({limit}): "
                  f"look at them with `flowgit status {plan_id}`, then run again")
        return True

    def _pick(self, repo: FlowRepo, plan_id: str, actor: str, state: PlanState) -> Job | None:
        """The best task this run may claim, reserved for it (call under the repository lock)."""
        plan = repo.load_plan(plan_id).plan
        with self.mu:
            task = next(self._claimable(plan, state), None)
            if task is None:
                return None
            job = Job(plan_id, task.id, actor, frozenset(task.files), state.tasks[task.id].attempts + 1)
            self.running[f"{plan_id}/{task.id}"] = job
            self.files_in_use |= job.files
        job.executor, job.executor_why = choose(repo.config, plan, task, self.executor)
        safe = task.id.replace("/", "_")
        job.branch = f"flow/{plan_id}/{task.id}"
        job.worktree = self.common / "flowgit-worktrees" / plan_id / safe
        job.log = repo.flow / LOGS / plan_id / f"{safe}.{job.attempt}.log"
        return job

    def _claimable(self, plan: Plan, state: PlanState) -> Iterator[Task]:
        """Ready tasks, best first, that this run is not running, whose files nobody holds
        (a claim elsewhere: another run, a person) and whose commands this clone trusts.
        Call with self.mu held."""
        held = files_held(plan, state) | self.files_in_use
        for task_id in state.order:
            task = plan.task(task_id)
            if task is not None and f"{plan.id}/{task_id}" not in self.running and not held & set(task.files) \
                    and self._untrusted(plan, task) is None and self._branch_taken(plan) is None:
                yield task

    def _branch_taken(self, plan: Plan) -> str | None:
        """Why git cannot make the plan's task branches (said once): claiming would burn an attempt."""
        store = self.repo().state_store
        why = branch_taken(plan.id, store.branch) if store is not None else None
        if why is not None and why not in self.untrusted_said:
            self.untrusted_said.add(why)
            self.log(f"not running {plan.id}: {why}")
        return why

    def _untrusted(self, plan: Plan, task: Task) -> str | None:
        """Why running the task would run something this clone does not trust (said once)."""
        from flowgit.ops import trust

        repo = self.repo()
        try:
            commands, agent = commands_for(repo.config, plan, task, self.executor)
        except FlowError:
            return None  # an unknown executor: the task fails with that when it runs
        why = next((w for w in (trust.why_untrusted(repo, c, plan.id) for c in commands) if w), None)
        if why is None and agent:
            why = trust.why_plan_untrusted(repo, plan.id)
        if why is not None and why not in self.untrusted_said:
            self.untrusted_said.add(why)
            self.log(f"not running {plan.id}/{task.id}: {why}")
        return why

    def _unreserve(self, job: Job) -> None:
        with self.mu:
            self.running.pop(f"{job.plan}/{job.task}", None)
            self.files_in_use -= job.files

    def _claim_events(self, w: Write, job: Job, state: PlanState) -> None:
        """claimed, started and the log's path; the phase move to execute with the first claim."""
        repo, now = w.repo, w.now
        loaded = repo.load_plan(job.plan)
        if state.phase in CLAIMABLE_PHASES:
            blocked = approval_block(job.plan, state, repo.config, gate_hash(repo, job.plan, state))
            if blocked:
                raise NeedsApproval(blocked)
        else:
            pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
            gate = phase_gate(loaded.plan, state, repo.config, job.actor, pclock, now,
                              git.read_head(repo.dirs), gate_hash(repo, job.plan, state))
            w.append(PLAN_LOG, list(gate))
        lease = float(repo.config.lease_seconds)
        clock = state.tasks[job.task].record.last_clock + 1
        until = format_time(now + lease)
        started = {"lease_until": until, "branch": job.branch, "log": repo.rel(job.log)}
        blob = self._record_prompt(repo, job)
        if blob:
            started["prompt"] = blob
        w.append(job.task, [
            make_event("task.claimed", job.plan, job.task, job.actor, clock,
                       {"lease_until": until, "lease_seconds": lease}, now),
            make_event("task.started", job.plan, job.task, job.actor, clock + 1, started, now),
            # FORMAT.md's event for it: the fold keeps the path on the task's record
            make_event("task.log", job.plan, job.task, job.actor, clock + 2,
                       {"path": repo.rel(job.log)}, now),
        ])

    def _record_prompt(self, repo: FlowRepo, job: Job) -> str | None:
        """The prompt this attempt will be given, kept as a blob whose id `task.started` records
        (the prompt file goes after the attempt; the board shows the blob)."""
        try:
            job.prompt = task_prompt(repo, job.plan, job.task)
            return git.store_blob(repo.root, job.prompt.encode("utf-8"))
        except FlowError:
            return None  # the attempt builds it again, and fails the task with the reason

    # ----- running -----------------------------------------------------------------------------
    def execute(self, job: Job) -> None:
        """Run a claimed job to its end (done, failed, released), then let its files go."""
        try:
            self._run_job(job)
        finally:  # the prompt and the note served this attempt; the task's events keep the note
            prompt_file = self._prompt_file(job)
            prompt_file.unlink(missing_ok=True)
            prompt_file.with_name(f"{job.worktree.name}.note").unlink(missing_ok=True)
            self._unreserve(job)

    def _prompt_file(self, job: Job) -> Path:
        return self.common / "flowgit-runs" / job.plan / f"{job.worktree.name}.prompt.md"

    def _run_job(self, job: Job) -> None:
        repo = self.repo()
        loaded = repo.load_plan(job.plan)
        plan, task = loaded.plan, loaded.plan.task(job.task)
        assert task is not None
        try:
            executor = resolve(repo.config, plan, task, self.executor)
            if self._untrusted(plan, task) is not None:  # changed since it was claimed
                self._release(job, "untrusted command")
                self.trees.put_back(job, keep_branch=False)
                return
            self.trees.make(job)
            prompt = job.prompt if job.prompt is not None else task_prompt(repo, job.plan, job.task)
            prompt_file = self._prompt_file(job)
            prompt_file.parent.mkdir(parents=True, exist_ok=True)
            prompt_file.write_text(prompt)
            job.note_file = prompt_file.with_name(f"{job.worktree.name}.note")
            job.note_file.unlink(missing_ok=True)
            values = values_for(plan, task, job.worktree, prompt_file, prompt, job.branch, self.root,
                                job.attempt, sys.executable)
            argv, stdin = invocation(repo.config, executor, values, task, plan.id)
            open_log(repo.root, job.log).close()  # made here: the failure is the task's
        except FlowError as exc:
            self._fail(job, exc.message, retry=False)
            self.trees.put_back(job, keep_branch=False)
            return
        env = {**os.environ, **executor.env,
               "FLOWGIT_PLAN": job.plan, "FLOWGIT_TASK": job.task, "FLOWGIT_TITLE": task.title,
               "FLOWGIT_FILES": "\n".join(task.files), "FLOWGIT_WORKTREE": str(job.worktree),
               "FLOWGIT_PROMPT_FILE": str(prompt_file), "FLOWGIT_ACTOR": job.actor,
               "FLOWGIT_NOTE_FILE": str(job.note_file), "FLOWGIT_BRANCH": job.branch,
               "FLOWGIT_REPO": str(self.root), "FLOWGIT_ATTEMPT": str(job.attempt),
               "FLOWGIT_PYTHON": sys.executable,
               "FLOWGIT_AGENT": f"run {job.plan}/{job.task}"}  # not a person: may not approve
        env.pop("GIT_INDEX_FILE", None)
        timeout = executor.timeout
        config, rel = repo.config, repo.rel(job.log)
        lease = float(config.lease_seconds)

        def beat() -> None:
            self._heartbeat(job, lease)

        failed = prepare(self.root, job, config, env, self.stop_event, beat, rel)
        code = self._spawn(job, argv, env, timeout, repo, stdin) if failed is None else 0
        if failed is None and code == 0 and not self.stop_event.is_set():
            failed = check_work(self.root, self.dirs, job, plan, task, config, env,
                                self.commit_hooks or config.run.commit_hooks, self.stop_event, beat, rel)
        if self.stop_event.is_set():
            self._release(job, "run interrupted")
            self.trees.put_back(job, keep_branch=False)
            return
        if failed is not None:
            self._fail(job, failed.error, retry=True, details=failed.details)
            self.trees.put_back(job, keep_branch=False)
            return
        if code != 0:
            why = f"timed out after {timeout:g}s" if code == 124 else f"exit {code}"
            self._fail(job, f"executor {executor.name} {why}; log: {repo.rel(job.log)}", retry=True)
            self.trees.put_back(job, keep_branch=False)
            return
        changed = git.read_ref(self.dirs, f"refs/heads/{job.branch}") != job.base
        if (self.land or config.run.land) == "branch" and changed:  # nothing to review: done
            self._to_review(job, config)
            self.trees.put_back(job, keep_branch=True)
            return
        merged = self._merge_done(job)
        self.trees.put_back(job, keep_branch=not merged)

    def _spawn(self, job: Job, argv: tuple[str, ...], env: dict[str, str], timeout: float,
               repo: FlowRepo, stdin: bytes | None = None) -> int:
        lease = float(repo.config.lease_seconds)
        try:
            out = open_log(repo.root, job.log)
        except FlowError as exc:  # swapped for a symlink since: run nothing
            self.log(f"{job.plan}/{job.task}: {exc.message}")
            return 127
        with out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            result = proc.run(argv, cwd=job.worktree, env=env, timeout=timeout, output=out, input=stdin,
                              stop=self.stop_event, tick=lambda: self._heartbeat(job, lease),
                              tick_every=lease / 3)
            if result.error:
                out.write(f"flowgit: {result.error}\n".encode())
        return result.returncode

    # ----- finishing ---------------------------------------------------------------------------
    def _merge_done(self, job: Job) -> bool:
        """Commit the worktree's changes, then merge the branch and record `done` in one commit.
        Everything but the merge and the commit happens before the lock."""
        elapsed = round(time.monotonic() - job.started, 3)
        note = read_note(job.note_file) or f"ran in {elapsed}s"
        try:
            to_merge = git.read_ref(self.dirs, f"refs/heads/{job.branch}") != job.base
            files, added, removed = branch_stats(self.root, job) if to_merge else ([], 0, 0)
            if self._changed_own_files(job, files):
                return False
            with self._holding(job) as (w, state):
                repo, now = w.repo, w.now
                view = state.tasks[job.task]
                if view.state not in ("claimed", "in_progress") or view.worker != job.actor:
                    raise IllegalTransition(f"{job.plan}/{job.task}: lost the lease while running "
                                            f"(now {view.state}); branch {job.branch} kept")
                done = make_event("task.done", job.plan, job.task, job.actor, view.record.last_clock + 1,
                                  {"note": note, "seconds": elapsed, "files_modified": files,
                                   "lines_added": added, "lines_removed": removed,
                                   "log": repo.rel(job.log), "branch": job.branch}, now)
                w.append(job.task, [done])
                w.message = commit_message(job.plan, job.task, "done", job.actor, f"Merge branch {job.branch}")
                w.merge_first(job.branch, (lambda: merge_branch(repo, job)) if to_merge else None)
        except MergeConflict as exc:
            self._fail(job, f"merge conflict in {', '.join(exc.paths)}; branch {job.branch} kept", retry=False)
            return False
        except RunHalted as exc:
            self._release(job, exc.message)
            self.halt(exc.message)
            return False
        except FlowError as exc:
            self._release(job, exc.message)
            return False
        with self.mu:
            self.done += 1
        self.log(f"{job.plan}/{job.task} done: {len(files)} file(s), +{added} -{removed} "
                 f"in {time.monotonic() - job.started:.2f}s")
        return True

    def _changed_own_files(self, job: Job, files: list[str]) -> bool:
        own = [f for f in files if f == FLOW or f.startswith(FLOW + "/")]
        if own:  # plan and events are flowgit's: an executor's edit would skip every check
            self._fail(job, f"the executor changed flowgit's own files ({', '.join(own[:5])}): "
                       f"change plans with `flowgit task add` and the like; branch {job.branch} kept",
                       retry=False)
        return bool(own)

    def _to_review(self, job: Job, config: Config) -> None:
        """`--land branch`: the checked work stays on its branch (pushed with `sync: push`) for
        a pull request, recorded as `task.review`; it is done once it reaches the base."""
        elapsed = round(time.monotonic() - job.started, 3)
        note = read_note(job.note_file) or f"ran in {elapsed}s"
        try:
            files, added, removed = branch_stats(self.root, job)
            if self._changed_own_files(job, files):
                return
            commit = git.read_ref(self.dirs, f"refs/heads/{job.branch}")
            with self._holding(job) as (w, state):
                view = state.tasks[job.task]
                if view.state not in ("claimed", "in_progress") or view.worker != job.actor:
                    raise IllegalTransition(f"{job.plan}/{job.task}: lost the lease while running "
                                            f"(now {view.state}); branch {job.branch} kept")
                w.append(job.task, [make_event(
                    "task.review", job.plan, job.task, job.actor, view.record.last_clock + 1,
                    {"branch": job.branch, "commit": commit, "base": self.base_branch, "note": note,
                     "seconds": elapsed, "files_modified": files, "lines_added": added,
                     "lines_removed": removed, "log": w.repo.rel(job.log)}, w.now)])
                w.message = commit_message(job.plan, job.task, "review", job.actor)
        except FlowError as exc:
            self._release(job, exc.message)
            return
        pushed = ""
        if config.sync == "push":
            res = git.push_branch(self.root, config.remote, job.branch)
            pushed = f", pushed to {config.remote}" if res.returncode == 0 else \
                f"; pushing it to {config.remote} failed: `git push {config.remote} {job.branch}`"
        with self.mu:
            self.reviews += 1
        self.log(f"{job.plan}/{job.task} in review on branch {job.branch} ({len(files)} file(s), "
                 f"+{added} -{removed}{pushed}): done once it reaches {self.base_branch}")

    def _fail(self, job: Job, error: str, retry: bool, details: dict[str, str] | None = None) -> None:
        try:
            with self._holding(job) as (w, state):
                repo, now = w.repo, w.now
                plan = repo.load_plan(job.plan).plan
                pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
                d = decide_fail(plan, state, repo.config, job.task, job.actor,
                                state.tasks[job.task].record.last_clock + 1, pclock, now, error,
                                "retry" if retry else "fail", details)
                w.record(d, job.actor)
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: could not record the failure: {exc.message}")
            return
        result = d.result or {}
        if result["state"] == "failed":
            with self.mu:
                self.failed += 1
        self.log(f"{job.plan}/{job.task} failed ({error})"
                 + (f"; retry at {result['retry_at']}" if result.get("retry_at") else ""))

    def _release(self, job: Job, reason: str) -> None:
        try:
            with self._holding(job) as (w, state):
                view = state.tasks[job.task]
                if view.worker != job.actor or view.state not in ("claimed", "in_progress"):
                    return
                w.append(job.task, [make_event("task.released", job.plan, job.task, job.actor,
                                               view.record.last_clock + 1, {"reason": reason}, w.now)])
                w.message = commit_message(job.plan, job.task, "released", job.actor)
            self.log(f"released {job.plan}/{job.task} ({reason})")
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: could not release: {exc.message}")

    def _heartbeat(self, job: Job, lease: float) -> None:
        try:
            with self._holding(job) as (w, state):
                view = state.tasks[job.task]
                if view.worker != job.actor:
                    return
                w.append(job.task, [make_event("task.heartbeat", job.plan, job.task, job.actor,
                                               view.record.last_clock + 1,
                                               {"lease_until": format_time(w.now + lease)}, w.now)])
                w.message = commit_message(job.plan, job.task, "heartbeat", job.actor)
        except FlowError as exc:
            self.log(f"{job.plan}/{job.task}: heartbeat failed: {exc.message}")
