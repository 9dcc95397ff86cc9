"""The worktree pool of a run: each task runs in its own git worktree on `flow/PLAN/TASK`; a
finished task's worktree waits idle for the next task of the same run (moved and reset, far
cheaper than adding one), and is never taken or removed once it is another run's."""
from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from flowgit import git
from flowgit.errors import FlowError, NoCommit
from flowgit.runner.jobs import Job

OLD_BRANCHES_BATCH = 16


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


class WorktreePool:
    """A branch flow/PLAN/TASK is checked out only in the worktree at TASK's path (between
    the holds of `mu`): no two worktrees ever want the same branch at once."""

    def __init__(self, root: Path, owner: str, reuse: bool = True) -> None:
        self.root = root
        self.dirs = git.find_dirs(root)
        self.owner = owner  # marks the worktrees this pool made (another run's are left alone)
        self.reuse = reuse
        # worktree moves, branch checkouts and deletions, and the two lists below
        self.mu = threading.Lock()
        self.idle_trees: list[Tree] = []
        self.old_branches: list[str] = []

    def make(self, job: Job) -> None:
        """The job's worktree on its branch, at the main work tree's HEAD: an idle one moved
        to the job's path and reset there, else a new one."""
        base = git.read_head(self.dirs)
        if base is None:
            raise NoCommit("the branch to merge into has no commit yet: commit something first")
        job.base = base
        with self.mu:
            if job.branch in self.old_branches:
                self.old_branches.remove(job.branch)  # a new attempt: the branch is needed again
            tree = self._take_idle(job.worktree)
            if tree is not None and not self._reset(tree, job):
                tree = None
            if tree is None:
                self._add(job)
        job.has_tree = True
        if tree is not None:  # even if it looked clean: an executor's child may have written since
            git.clean_all(job.worktree)

    def _take_idle(self, path: Path) -> Tree | None:
        """The idle worktree at `path` (the same task again), else any idle one; never one
        that is no longer this run's."""
        self.idle_trees = [t for t in self.idle_trees if t.still_ours()]
        for i, tree in enumerate(self.idle_trees):
            if tree.path == path:
                return self.idle_trees.pop(i)
        return self.idle_trees.pop() if self.idle_trees else None

    def _reset(self, tree: Tree, job: Job) -> bool:
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

    def _add(self, job: Job) -> None:
        self._clear_path(job.worktree)
        job.worktree.parent.mkdir(parents=True, exist_ok=True)
        git.worktree_add(self.root, job.worktree, job.branch, job.base)
        mark_owner(job.worktree, self.owner)

    def _clear_path(self, path: Path) -> None:
        """Remove what a killed run (or another run's idle worktree) left at a task's path."""
        if path.exists():
            git.worktree_remove(self.root, path)
            shutil.rmtree(path, ignore_errors=True)

    def put_back(self, job: Job, keep_branch: bool) -> None:
        """Done with the job's worktree: idle until the next task (`run`), or removed (`watch
        --run`, or when it was never made). Its branch goes once unneeded, unless kept."""
        tree = Tree(job.worktree, job.branch, branch_done=not keep_branch, clean=job.tree_clean,
                    owner=owner_of(job.worktree))
        with self.mu:
            if job.has_tree and self.reuse and tree.owner == self.owner:
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

    def close(self) -> None:
        """Remove the idle worktrees and delete the branches nobody needs any more."""
        with self.mu:
            trees, self.idle_trees = self.idle_trees, []
            self._remove_trees(trees)


def branch_taken(plan_id: str, state_branch: str) -> str | None:
    """Why git cannot make `flow/PLAN/TASK` in format 2: `flow/PLAN` is the state branch, its
    claim refs' namespace, or a folder of either (a plan named `state` or `state-claims`)."""
    mine = f"flow/{plan_id}"
    for ref in (state_branch, f"{state_branch}-claims"):
        if mine == ref or ref.startswith(mine + "/") or mine.startswith(ref + "/"):
            return (f"its task branches {mine}/TASK cannot be made beside {ref}, the state branch's: "
                    "rename the plan, or set state.branch in .flow/config.yaml")
    return None
