"""runner/worktrees.py: the worktree pool of a run. A task's worktree is made on its branch at
HEAD, kept idle for the run's next task (moved and reset there), never taken or removed once
another run owns it, and removed with its finished branch when the run closes."""
from __future__ import annotations

from pathlib import Path

from helpers import Repo, git, make_git_repo

from flowgit.runner.jobs import Job
from flowgit.runner.worktrees import WorktreePool, mark_owner, owner_of


def job(root: Path, task: str) -> Job:
    j = Job("p", task, "w1", frozenset(), 1)
    j.worktree = root.parent / "trees" / task
    j.branch = f"flow/p/{task}"
    return j


def worktrees(repo: Repo) -> list[str]:
    return [ln.split(" ", 1)[1] for ln in repo.git("worktree", "list", "--porcelain").splitlines()
            if ln.startswith("worktree ")]


def branches(repo: Repo) -> list[str]:
    return repo.git("branch", "--list", "flow/*", "--format=%(refname:short)").split()


def test_a_job_gets_its_own_worktree_on_its_branch_at_head(tmp_path: Path) -> None:
    repo = Repo(make_git_repo(tmp_path / "repo"))
    pool = WorktreePool(repo.path, owner="run-1")
    a = job(repo.path, "A")
    pool.make(a)
    assert a.has_tree and a.base == repo.git("rev-parse", "HEAD")
    assert git(a.worktree, "rev-parse", "--abbrev-ref", "HEAD") == "flow/p/A"
    assert owner_of(a.worktree) == "run-1"
    assert str(a.worktree) in worktrees(repo)


def test_an_idle_worktree_is_moved_and_reset_for_the_next_task(tmp_path: Path) -> None:
    repo = Repo(make_git_repo(tmp_path / "repo"))
    pool = WorktreePool(repo.path, owner="run-1")
    a = job(repo.path, "A")
    pool.make(a)
    (a.worktree / "left-behind.txt").write_text("untracked\n")
    git(a.worktree, "commit", "-q", "--allow-empty", "-m", "A's work")
    pool.put_back(a, keep_branch=False)
    assert [t.path for t in pool.idle_trees] == [a.worktree]

    b = job(repo.path, "B")
    pool.make(b)
    assert not a.worktree.exists() and b.worktree.exists()  # the same worktree, moved
    assert len(worktrees(repo)) == 2
    assert git(b.worktree, "rev-parse", "HEAD") == repo.git("rev-parse", "HEAD")
    assert not (b.worktree / "left-behind.txt").exists()  # reset and cleaned
    pool.put_back(b, keep_branch=True)  # B's branch is kept (say its merge failed)
    pool.close()
    assert worktrees(repo) == [str(repo.path)]
    assert branches(repo) == ["flow/p/B"]  # A's finished branch went; B's stays


def test_a_worktree_another_run_owns_now_is_neither_taken_nor_removed(tmp_path: Path) -> None:
    repo = Repo(make_git_repo(tmp_path / "repo"))
    pool = WorktreePool(repo.path, owner="run-1")
    a = job(repo.path, "A")
    pool.make(a)
    pool.put_back(a, keep_branch=False)
    mark_owner(a.worktree, "run-2")  # as if run-2 had removed it and made its own at the path

    b = job(repo.path, "B")
    pool.make(b)
    assert a.worktree.exists() and owner_of(a.worktree) == "run-2"  # left alone
    assert b.worktree.exists() and owner_of(b.worktree) == "run-1"  # a new one for B
    pool.put_back(b, keep_branch=False)
    pool.close()
    assert worktrees(repo) == [str(repo.path), str(a.worktree)]


def test_without_reuse_a_worktree_goes_when_its_task_ends(tmp_path: Path) -> None:
    repo = Repo(make_git_repo(tmp_path / "repo"))
    pool = WorktreePool(repo.path, owner="watch", reuse=False)
    a = job(repo.path, "A")
    pool.make(a)
    pool.put_back(a, keep_branch=False)
    assert pool.idle_trees == [] and not a.worktree.exists()
    assert worktrees(repo) == [str(repo.path)] and branches(repo) == []
