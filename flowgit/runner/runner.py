"""`flowgit run`: N workers claim ready tasks through the same lock and rules as the CLI,
run each in its own git worktree, and merge the result back together with its `done`."""
from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from flowgit import git, proc
from flowgit.core.events import PLAN_LOG, format_time, make_event
from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import CLAIMABLE_PHASES, approval_block, decide_fail, phase_gate
from flowgit.core.model import Plan, Task
from flowgit.errors import (
    Detached,
    ExitCode,
    FlowError,
    IllegalTransition,
    InvalidFile,
    NeedsApproval,
    NoCommit,
    NotFound,
)
from flowgit.formats import yamlio
from flowgit.runner.executors import argv_for, prompt_text, resolve, values_for
from flowgit.runner.logfiles import open_log
from flowgit.store.repo import FLOW, FlowRepo
from flowgit.store.writing import Write, commit_message

LOGS = "logs"
INVALID_PATIENCE = 10.0  # seconds a .flow/ file may stay invalid before a run stops for it
LOCKED_INDEX_TRIES = 20  # a merge waits up to ~5 s for someone else's index.lock to go
OLD_BRANCHES_BATCH = 16


@dataclass
class Job:
    plan: str
    task: str
    actor: str
    files: frozenset[str]
    attempt: int
    worktree: Path = Path()
    branch: str = ""
    base: str = ""  # the commit the branch starts from
    has_tree: bool = False
    tree_clean: bool = False  # nothing untracked or ignored left in the worktree
    log: Path = Path()
    note_file: Path = Path()
    started: float = field(default_factory=time.monotonic)


@dataclass
class Tree:
    """A task's worktree after its task: the next task moves it to its own path and resets it
    there (`worktree move`, `checkout -f -B`, `clean`), far cheaper than `worktree add` and
    `worktree remove` for every task."""
    path: Path
    branch: str  # still checked out in it
    branch_done: bool  # nobody needs the branch: delete it once no worktree has it
    clean: bool
    owner: str | None = None  # the run that made it, as marked in its git admin dir

    def still_ours(self) -> bool:
        """Another run may have removed it, and made its own worktree at the same path."""
        return self.owner is not None and owner_of(self.path) == self.owner


OWNER_FILE = "flowgit-run"


def _admin_dir(tree: Path) -> Path | None:
    """A worktree's own directory under .git/worktrees/ (its `.git` file points at it)."""
    try:
        text = (tree / ".git").read_text()
    except OSError:
        return None
    return Path(text[len("gitdir: "):].strip()) if text.startswith("gitdir: ") else None


def owner_of(tree: Path) -> str | None:
    admin = _admin_dir(tree)
    try:
        return (admin / OWNER_FILE).read_text() if admin else None
    except OSError:
        return None


def mark_owner(tree: Path, owner: str) -> None:
    """`git worktree remove` deletes the admin dir and `move` keeps it: the mark lives exactly
    as long as this worktree does, even if another is made at the same path later."""
    admin = _admin_dir(tree)
    if admin is not None:
        (admin / OWNER_FILE).write_text(owner)


class Runner:
    def __init__(self, root: Path, plans: list[str] | None, workers: int, executor: str | None,
                 log: Callable[[str], None], progress: Callable[[str], None] | None = None,
                 reuse_trees: bool = True) -> None:
        self.root = root
        self.plans = plans
        self.workers = max(1, workers)
        self.executor = executor
        self.log = log
        self.progress = progress
        self.reuse_trees = reuse_trees
        self.stop_event = threading.Event()
        self.mu = threading.Lock()
        self.running: dict[str, Job] = {}
        self.files_in_use: set[str] = set()
        self.done = 0
        self.failed = 0
        self.halted: str | None = None  # why the run stopped itself
        self.waiting_said: str | None = None  # the foreign claim last reported as waited for
        self.ready: dict[str, int] = {}  # ready tasks per plan, as last seen (progress display)
        self.start = time.monotonic()
        self.ident = f"run-{socket.gethostname()}-{os.getpid()}"
        # this run's threads queue here for the repository lock instead of polling its file
        self.repo_lock_queue = threading.Lock()
        # worktree moves, branch checkouts and deletions, and the two lists below
        self.trees_mu = threading.Lock()
        self.idle_trees: list[Tree] = []
        self.old_branches: list[str] = []
        self.local = threading.local()
        self.dirs = git.find_dirs(root)
        self.common = self.dirs.common_dir
        self.base_branch = git.current_branch(root)
        if self.base_branch is None:
            raise Detached("HEAD is detached: check out the branch tasks should merge into")

    def repo(self) -> FlowRepo:
        """This thread's FlowRepo, kept from task to task so that its caches stay warm; a new
        one when config.yaml changes (a FlowRepo reads it once)."""
        stamp = _file_stamp(self.root / FLOW / "config.yaml")
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
        """Remove the idle worktrees and delete the branches nobody needs any more."""
        with self.trees_mu:
            trees, self.idle_trees = self.idle_trees, []
            self._remove_trees(trees)

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
                    job = self._claim(actor)
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
                try:
                    self._execute(job)
                finally:
                    self._unreserve(job)
        finally:
            with self.repo_lock_queue:  # the cache file's temporary name is per process
                self.repo().save_cache()

    def _idle_wait(self) -> float | None:
        """Seconds to wait before looking again, or None when this run has nothing left."""
        repo = self.repo()
        now = time.time()
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
    def _claim(self, actor: str) -> Job | None:
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
            job = None if state.phase in ("complete", "halted", "finish") else \
                self._pick(repo, plan_id, actor, state)
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
        self.log(f"{actor} claimed {plan_id}/{picked[0].task}")
        return picked[0]

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
        safe = task.id.replace("/", "_")
        job.branch = f"flow/{plan_id}/{task.id}"
        job.worktree = self.common / "flowgit-worktrees" / plan_id / safe
        job.log = repo.flow / LOGS / plan_id / f"{safe}.{job.attempt}.log"
        return job

    def _claimable(self, plan: Plan, state: PlanState) -> Iterator[Task]:
        """Ready tasks, best first, that this run is not running and whose files nobody holds
        (a claim elsewhere: another run, a person). Call with self.mu held."""
        held = files_held(plan, state) | self.files_in_use
        for task_id in state.order:
            task = plan.task(task_id)
            if task is not None and f"{plan.id}/{task_id}" not in self.running and not held & set(task.files):
                yield task

    def _unreserve(self, job: Job) -> None:
        with self.mu:
            self.running.pop(f"{job.plan}/{job.task}", None)
            self.files_in_use -= job.files

    def _claim_events(self, w: Write, job: Job, state: PlanState) -> None:
        """claimed, started and the log's path; the phase move to execute with the first claim."""
        repo, now = w.repo, w.now
        loaded = repo.load_plan(job.plan)
        if state.phase in CLAIMABLE_PHASES:
            blocked = approval_block(job.plan, state, repo.config, loaded.hash)
            if blocked:
                raise NeedsApproval(blocked)
        else:
            pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
            gate = phase_gate(loaded.plan, state, repo.config, job.actor, pclock, now,
                              git.read_head(repo.dirs), loaded.hash)
            w.append(PLAN_LOG, list(gate))
        lease = float(repo.config.lease_seconds)
        clock = state.tasks[job.task].record.last_clock + 1
        until = format_time(now + lease)
        w.append(job.task, [
            make_event("task.claimed", job.plan, job.task, job.actor, clock,
                       {"lease_until": until, "lease_seconds": lease}, now),
            make_event("task.started", job.plan, job.task, job.actor, clock + 1,
                       {"lease_until": until, "branch": job.branch, "log": repo.rel(job.log)}, now),
            # FORMAT.md's event for it: the fold keeps the path on the task's record
            make_event("task.log", job.plan, job.task, job.actor, clock + 2,
                       {"path": repo.rel(job.log)}, now),
        ])

    # ----- running -----------------------------------------------------------------------------
    def _execute(self, job: Job) -> None:
        try:
            self._run_job(job)
        finally:  # the prompt and the note served this attempt; the task's events keep the note
            prompt_file = self._prompt_file(job)
            prompt_file.unlink(missing_ok=True)
            prompt_file.with_name(f"{job.worktree.name}.note").unlink(missing_ok=True)

    def _prompt_file(self, job: Job) -> Path:
        return self.common / "flowgit-runs" / job.plan / f"{job.worktree.name}.prompt.md"

    def _run_job(self, job: Job) -> None:
        repo = self.repo()
        loaded = repo.load_plan(job.plan)
        plan, task = loaded.plan, loaded.plan.task(job.task)
        assert task is not None
        try:
            executor = resolve(repo.config, plan, task, self.executor)
            self._make_worktree(job)
            prompt = self._prompt(repo, job)
            prompt_file = self._prompt_file(job)
            prompt_file.parent.mkdir(parents=True, exist_ok=True)
            prompt_file.write_text(prompt)
            job.note_file = prompt_file.with_name(f"{job.worktree.name}.note")
            job.note_file.unlink(missing_ok=True)
            values = values_for(plan, task, job.worktree, prompt_file, prompt, job.branch, self.root,
                                job.attempt, sys.executable)
            argv = argv_for(executor, values, task, plan.id)
            open_log(repo.root, job.log).close()  # made here: the failure is the task's
        except FlowError as exc:
            self._fail(job, exc.message, retry=False)
            self._put_back(job, keep_branch=False)
            return
        env = {**os.environ, **executor.env,
               "FLOWGIT_PLAN": job.plan, "FLOWGIT_TASK": job.task, "FLOWGIT_TITLE": task.title,
               "FLOWGIT_FILES": "\n".join(task.files), "FLOWGIT_WORKTREE": str(job.worktree),
               "FLOWGIT_PROMPT_FILE": str(prompt_file), "FLOWGIT_ACTOR": job.actor,
               "FLOWGIT_NOTE_FILE": str(job.note_file), "FLOWGIT_BRANCH": job.branch,
               "FLOWGIT_REPO": str(self.root), "FLOWGIT_ATTEMPT": str(job.attempt),
               "FLOWGIT_PYTHON": sys.executable}
        env.pop("GIT_INDEX_FILE", None)
        timeout = executor.timeout
        code = self._spawn(job, argv, env, timeout, repo)
        if self.stop_event.is_set():
            self._release(job, "run interrupted")
            self._put_back(job, keep_branch=False)
            return
        if code != 0:
            why = f"timed out after {timeout:g}s" if code == 124 else f"exit {code}"
            self._fail(job, f"executor {executor.name} {why}; log: {repo.rel(job.log)}", retry=True)
            self._put_back(job, keep_branch=False)
            return
        merged = self._merge_done(job)
        self._put_back(job, keep_branch=not merged)

    def _spawn(self, job: Job, argv: tuple[str, ...], env: dict[str, str], timeout: float,
               repo: FlowRepo) -> int:
        lease = float(repo.config.lease_seconds)
        try:
            out = open_log(repo.root, job.log)
        except FlowError as exc:  # swapped for a symlink since: run nothing
            self.log(f"{job.plan}/{job.task}: {exc.message}")
            return 127
        with out:
            out.write(f"$ {' '.join(argv)}\n".encode())
            out.flush()
            result = proc.run(argv, cwd=job.worktree, env=env, timeout=timeout, output=out,
                              stop=self.stop_event, tick=lambda: self._heartbeat(job, lease),
                              tick_every=lease / 3)
            if result.error:
                out.write(f"flowgit: {result.error}\n".encode())
        return result.returncode

    # ----- worktrees ---------------------------------------------------------------------------
    # A branch flow/PLAN/TASK is checked out only in the worktree at TASK's path (between
    # the holds of trees_mu): no two worktrees ever want the same branch at once.
    def _make_worktree(self, job: Job) -> None:
        """The job's worktree on its branch, at the main work tree's HEAD: an idle one moved
        to the job's path and reset there, else a new one."""
        base = git.read_head(self.dirs)
        if base is None:
            raise NoCommit("the branch to merge into has no commit yet: commit something first")
        job.base = base
        with self.trees_mu:
            if job.branch in self.old_branches:
                self.old_branches.remove(job.branch)  # a new attempt: the branch is needed again
            tree = self._take_idle_tree(job.worktree)
            if tree is not None and not self._reset_tree(tree, job):
                tree = None
            if tree is None:
                self._add_tree(job)
        job.has_tree = True
        if tree is not None:  # even if it looked clean: an executor's child may have written since
            git.clean_all(job.worktree)

    def _take_idle_tree(self, path: Path) -> Tree | None:
        """The idle worktree at `path` (the same task again), else any idle one; never one
        that is no longer this run's."""
        self.idle_trees = [t for t in self.idle_trees if t.still_ours()]
        for i, tree in enumerate(self.idle_trees):
            if tree.path == path:
                return self.idle_trees.pop(i)
        return self.idle_trees.pop() if self.idle_trees else None

    def _reset_tree(self, tree: Tree, job: Job) -> bool:
        """Move an idle worktree to the job's path and check out the job's branch, reset to
        its base; False (and the worktree removed) if git refuses."""
        try:
            if git.operation_in_progress(git.find_dirs(tree.path)):
                raise FlowError("a git operation is in progress in it")
            if tree.path != job.worktree:
                self._clear_path(job.worktree)
                job.worktree.parent.mkdir(parents=True, exist_ok=True)
                git.worktree_move(self.root, tree.path, job.worktree)
                tree.path = job.worktree
            git.checkout_fresh(job.worktree, job.branch, job.base)
        except FlowError:
            self._remove_trees([tree])
            return False
        if tree.branch_done and tree.branch != job.branch:
            self.old_branches.append(tree.branch)
            if len(self.old_branches) >= OLD_BRANCHES_BATCH:
                self._delete_old_branches()
        return True

    def _add_tree(self, job: Job) -> None:
        self._clear_path(job.worktree)
        job.worktree.parent.mkdir(parents=True, exist_ok=True)
        git.worktree_add(self.root, job.worktree, job.branch, job.base)
        mark_owner(job.worktree, self.ident)

    def _clear_path(self, path: Path) -> None:
        """Remove what a killed run (or another run's idle worktree) left at a task's path."""
        if path.exists():
            git.worktree_remove(self.root, path)
            shutil.rmtree(path, ignore_errors=True)

    def _put_back(self, job: Job, keep_branch: bool) -> None:
        """Done with the job's worktree: idle until the next task (`run`), or removed (`watch
        --run`, or when it was never made). Its branch goes once unneeded, unless kept."""
        tree = Tree(job.worktree, job.branch, branch_done=not keep_branch, clean=job.tree_clean,
                    owner=owner_of(job.worktree))
        with self.trees_mu:
            if job.has_tree and self.reuse_trees and tree.owner == self.ident:
                self.idle_trees.append(tree)
            elif job.has_tree:
                self._remove_trees([tree])
            elif tree.branch_done:  # no worktree made: whatever is at its path is not the job's
                self.old_branches.append(job.branch)
                self._delete_old_branches()

    def _remove_trees(self, trees: list[Tree]) -> None:
        """Remove worktrees and delete their finished branches (call with trees_mu held)."""
        pruned = False
        for tree in trees:
            if tree.owner is not None and not tree.still_ours():
                continue  # another run's now (or gone): not ours to remove
            if tree.path.exists():
                removed = git.worktree_remove(self.root, tree.path)
                shutil.rmtree(tree.path, ignore_errors=True)
                if not removed and not pruned:
                    git.worktree_prune(self.root)
                    pruned = True
        self.old_branches += [t.branch for t in trees if t.branch_done]
        self._delete_old_branches()

    def _delete_old_branches(self) -> None:
        if self.old_branches:
            git.delete_branches(self.root, self.old_branches)
            self.old_branches = []

    def _prompt(self, repo: FlowRepo, job: Job) -> str:
        from flowgit.store.planedit import adr_ids

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
        records = repo.records(job.plan) if task.depends_on else {}
        notes = {d: records[d].note or "" for d in task.depends_on if d in records and records[d].note}
        return prompt_text(plan, task, spec if isinstance(spec, dict) else None, adrs, notes)

    # ----- finishing ---------------------------------------------------------------------------
    def _merge_done(self, job: Job) -> bool:
        """Commit the worktree's changes, then merge the branch and record `done` in one commit.
        Everything but the merge and the commit happens before the lock."""
        elapsed = round(time.monotonic() - job.started, 3)
        note = _read_note(job.note_file) or f"ran in {elapsed}s"
        try:
            self._commit_work(job)
            to_merge = git.read_ref(self.dirs, f"refs/heads/{job.branch}") != job.base
            files, added, removed = self._branch_stats(job) if to_merge else ([], 0, 0)
            own = [f for f in files if f == FLOW or f.startswith(FLOW + "/")]
            if own:  # plan and events are flowgit's: an executor's edit would skip every check
                self._fail(job, f"the executor changed flowgit's own files ({', '.join(own[:5])}): "
                           f"change plans with `flowgit task add` and the like; branch {job.branch} kept",
                           retry=False)
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
                w.merge_first(job.branch, (lambda: self._merge(repo, job)) if to_merge else None)
        except _Conflict as exc:
            self._fail(job, f"merge conflict in {', '.join(exc.paths)}; branch {job.branch} kept", retry=False)
            return False
        except _Halt as exc:
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

    def _commit_work(self, job: Job) -> None:
        """Commit what the executor left uncommitted in its worktree; note whether the
        worktree is clean afterwards (nothing ignored left either)."""
        wt = job.worktree
        entries = git.status_entries(wt)
        if any(not e.startswith("!! ") for e in entries):
            git.commit_all(wt, f"flow({job.plan}/{job.task}): work")
        job.tree_clean = not any(e.startswith("!! ") for e in entries)

    def _branch_stats(self, job: Job) -> tuple[list[str], int, int]:
        """Files changed, lines added and removed on the branch since it forked from the main
        work tree's branch. Read before the lock: the commits that land on HEAD meanwhile are
        not on the branch, so the fork point, and the answer, stay the same."""
        stats = git.diff_numstat(self.root, "HEAD", job.branch, since_fork=True)
        return [s.path for s in stats], sum(s.added for s in stats), sum(s.removed for s in stats)

    def _merge(self, repo: FlowRepo, job: Job) -> None:
        """Merge the branch without committing (call under the lock); nothing is left half-way
        when it fails."""
        for _ in range(LOCKED_INDEX_TRIES):  # another git command (an editor's, say) has the index
            merge = git.merge_no_commit(repo.root, job.branch)
            if merge.returncode == 0:
                return
            if not git.said_index_locked(merge.stderr):
                break
            # git wrote its MERGE_* files before it found the index locked, and nothing else:
            # take them back (our own merge, under our lock) and try again in a moment
            git.drop_merge_state(repo.dirs)
            time.sleep(0.25)
        if b"Unable to write index" in merge.stderr:  # still locked: as if the merge never began
            git.drop_merge_state(repo.dirs)
        # git refuses to start a merge over staged changes: no MERGE_HEAD then
        if not git.in_merge(repo.dirs) and git.has_staged_changes(repo.root):
            raise _Halt("the main work tree has staged changes: flowgit run merges into it; "
                        "commit or unstage them, then run again")
        if not git.in_merge(repo.dirs):
            # git would overwrite the user's uncommitted or untracked files: no task's fault
            said = merge.stderr.decode("utf-8", "replace")
            paths = [ln.strip() for ln in said.splitlines() if ln.startswith("\t")]
            if git.said_index_locked(merge.stderr):
                raise _Halt("the main work tree's index stayed locked (.git/index.lock): another git "
                            "command is running or died; remove the lock once none runs, then run again")
            what = ", ".join(paths[:5]) or (said.strip().splitlines() or ["git merge failed"])[0]
            raise _Halt(f"merging {job.branch} would overwrite files in the main work tree "
                        f"({what}): commit, stash or remove them, then run again")
        conflicted = git.conflicted_paths(repo.root)
        git.merge_abort(repo.root)
        raise _Conflict(conflicted or ["(merge failed)"])

    def _fail(self, job: Job, error: str, retry: bool) -> None:
        try:
            with self._holding(job) as (w, state):
                repo, now = w.repo, w.now
                plan = repo.load_plan(job.plan).plan
                pclock = max((e.clock for e in repo.plan_events(job.plan)), default=0) + 1
                d = decide_fail(plan, state, repo.config, job.task, job.actor,
                                state.tasks[job.task].record.last_clock + 1, pclock, now, error,
                                "retry" if retry else "fail")
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

NOTE_LIMIT = 4000


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


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


class _Halt(FlowError):
    """Nothing this run can do will get past it (the user's files, an invalid .flow/): release
    the task and stop the run with this message."""


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
        repo = self.runner.repo()
        now = time.time()
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
            self.runner._execute(job)
        finally:
            self.runner._unreserve(job)
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
