"""runner/jobs.py and runner/landing.py: what an executor leaves (its work, its note) and the
merge of a task's branch into the main work tree, which either starts cleanly or leaves nothing
half-way."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Repo

from flowgit.runner.jobs import NOTE_LIMIT, Job, MergeConflict, RunHalted, read_note
from flowgit.runner.landing import branch_stats, commit_work, merge_branch
from flowgit.runner.worktrees import WorktreePool
from flowgit.store.repo import FlowRepo


@pytest.fixture
def worked(repo: Repo) -> tuple[Repo, Job, WorktreePool]:
    """Task A's worktree, where the executor changed one file and added another."""
    repo.write("shared.txt", "base\n")
    repo.git("add", "shared.txt")
    repo.git("commit", "-q", "-m", "shared")
    pool = WorktreePool(repo.path, owner="run-1")
    j = Job("p", "A", "w1", frozenset(), 1)
    j.worktree = repo.path.parent / "trees" / "A"
    j.branch = "flow/p/A"
    pool.make(j)
    (j.worktree / "shared.txt").write_text("base\nfrom A\n")
    (j.worktree / "new.txt").write_text("one\ntwo\n")
    return repo, j, pool


def test_the_executors_work_is_committed_on_its_branch(worked: tuple[Repo, Job, WorktreePool]) -> None:
    repo, j, _ = worked
    commit_work(j)
    assert j.tree_clean
    assert repo.git("log", "-1", "--format=%s", j.branch) == "flow(p/A): work"
    assert branch_stats(repo.path, j) == (["new.txt", "shared.txt"], 3, 0)


def test_a_clean_merge_is_left_for_the_done_commit(worked: tuple[Repo, Job, WorktreePool]) -> None:
    repo, j, _ = worked
    commit_work(j)
    merge_branch(FlowRepo(repo.path), j)
    assert (repo.path / ".git" / "MERGE_HEAD").exists()  # merged, not committed: done goes with it
    assert (repo.path / "new.txt").read_text() == "one\ntwo\n"
    repo.git("merge", "--abort")


def test_a_conflict_names_its_files_and_leaves_no_merge(worked: tuple[Repo, Job, WorktreePool]) -> None:
    repo, j, _ = worked
    commit_work(j)
    repo.write("shared.txt", "base\nfrom main\n")
    repo.git("commit", "-q", "-am", "main moved on")
    head = repo.git("rev-parse", "HEAD")
    with pytest.raises(MergeConflict) as caught:
        merge_branch(FlowRepo(repo.path), j)
    assert caught.value.paths == ["shared.txt"]
    assert not (repo.path / ".git" / "MERGE_HEAD").exists()
    assert repo.git("rev-parse", "HEAD") == head and repo.git("status", "--porcelain") == ""


def test_staged_changes_in_the_main_work_tree_halt_the_run(worked: tuple[Repo, Job, WorktreePool]) -> None:
    repo, j, _ = worked
    commit_work(j)
    repo.write("shared.txt", "the user's staged edit\n")
    repo.git("add", "shared.txt")
    with pytest.raises(RunHalted, match="staged changes"):
        merge_branch(FlowRepo(repo.path), j)
    assert not (repo.path / ".git" / "MERGE_HEAD").exists()
    assert (repo.path / "shared.txt").read_text() == "the user's staged edit\n"


def test_untracked_files_the_merge_would_overwrite_halt_the_run(
        worked: tuple[Repo, Job, WorktreePool]) -> None:
    repo, j, _ = worked
    commit_work(j)
    repo.write("new.txt", "the user's, untracked\n")
    with pytest.raises(RunHalted, match=r"would overwrite files in the main work tree \(new.txt\)"):
        merge_branch(FlowRepo(repo.path), j)
    assert (repo.path / "new.txt").read_text() == "the user's, untracked\n"


def test_a_note_is_read_once_and_bounded(tmp_path: Path) -> None:
    note = tmp_path / "note"
    note.write_text("  did the thing\n")
    assert read_note(note) == "did the thing" and not note.exists()
    assert read_note(note) == ""
    note.write_text("x" * (NOTE_LIMIT + 50))
    text = read_note(note)
    assert len(text) == NOTE_LIMIT + 4 and text.endswith(" ...")
    assert read_note(Path()) == ""
