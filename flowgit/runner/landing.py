"""Landing a task's work: commit what the executor left, measure the branch, and merge it into
the main work tree (the `done` that goes with the merge is written by the write door, ADR 0005)."""
from __future__ import annotations

import time
from pathlib import Path

from flowgit import git
from flowgit.runner.jobs import Job, MergeConflict, RunHalted
from flowgit.store.repo import FlowRepo

LOCKED_INDEX_TRIES = 20  # a merge waits up to ~5 s for someone else's index.lock to go


def commit_work(job: Job) -> None:
    """Commit what the executor left uncommitted in its worktree; note whether the
    worktree is clean afterwards (nothing ignored left either)."""
    wt = job.worktree
    entries = git.status_entries(wt)
    if any(not e.startswith("!! ") for e in entries):
        git.commit_all(wt, f"flow({job.plan}/{job.task}): work")
    job.tree_clean = not any(e.startswith("!! ") for e in entries)


def branch_stats(root: Path, job: Job) -> tuple[list[str], int, int]:
    """Files changed, lines added and removed on the branch since it forked from the main
    work tree's branch. Read before the lock: the commits that land on HEAD meanwhile are
    not on the branch, so the fork point, and the answer, stay the same."""
    stats = git.diff_numstat(root, "HEAD", job.branch, since_fork=True)
    return [s.path for s in stats], sum(s.added for s in stats), sum(s.removed for s in stats)


def merge_branch(repo: FlowRepo, job: Job) -> None:
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
        raise RunHalted("the main work tree has staged changes: flowgit run merges into it; "
                        "commit or unstage them, then run again")
    if not git.in_merge(repo.dirs):
        # git would overwrite the user's uncommitted or untracked files: no task's fault
        said = merge.stderr.decode("utf-8", "replace")
        paths = [ln.strip() for ln in said.splitlines() if ln.startswith("\t")]
        if git.said_index_locked(merge.stderr):
            raise RunHalted("the main work tree's index stayed locked (.git/index.lock): another git "
                            "command is running or died; remove the lock once none runs, then run again")
        what = ", ".join(paths[:5]) or (said.strip().splitlines() or ["git merge failed"])[0]
        raise RunHalted(f"merging {job.branch} would overwrite files in the main work tree "
                        f"({what}): commit, stash or remove them, then run again")
    conflicted = git.conflicted_paths(repo.root)
    git.merge_abort(repo.root)
    raise MergeConflict(conflicted or ["(merge failed)"])
