"""A failed command leaves nothing; a killed one is recovered by the next ordinary command
(issue 13). Kill points (flowgit/crashpoints.py) SIGKILL a real `flowgit` process at every step
of a transition, of `run`'s merge-with-done and of a sync's merge."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import Repo, git, init_repo, make_git_repo

TWO = "id: p\ntitle: Crash\ngoal: g\ntasks:\n  - {id: A, title: a}\n  - {id: B, title: b}\n"


def F1(point: str) -> Any:
    """A kill point of format 1's writer only (a work-tree append before its commit): format 2
    writes the state in one compare-and-swap of its ref, so there is no such step to die in."""
    return pytest.param(point, marks=pytest.mark.format1)


def killed_at(repo: Repo, point: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWGIT_TESTING": "1", "FLOWGIT_CRASH_AT": point}
    res = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(repo.path), *args],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == -signal.SIGKILL, (point, res.returncode, res.stdout, res.stderr)
    return res


def task_states(repo: Repo) -> dict[str, Any]:
    data = json.loads(repo.proc("status", "p", "--json").stdout)
    return {t["id"]: (t["state"], t["worker"]) for t in data["tasks"]}


def settled(repo: Repo) -> None:
    """Nothing half-done: no journal, nothing uncommitted under .flow/, nothing staged."""
    assert not (repo.path / ".git" / "flowgit-journal").exists()
    assert repo.git("status", "--porcelain", "--", ".flow") == ""
    assert repo.git("diff", "--cached", "--name-only") == ""
    assert not (repo.path / ".git" / "MERGE_HEAD").exists()
    repo.ok("validate")


@pytest.mark.parametrize("point", [F1("journal"), F1("appended"), F1("written"), "committed"])
def test_a_transition_killed_at_any_step_is_recovered_by_the_next_command(repo: Repo, point: str) -> None:
    repo.plan("p", TWO)
    repo.ok("claim", "p/A", "--worker", "w1")
    killed_at(repo, point, "done", "p/A", "--worker", "w1")
    # the next ordinary command, of another kind, on another task: it recovers first
    claimed = repo.proc("claim", "p/B", "--worker", "w2", "--json")
    assert claimed.returncode == 0, claimed.stderr
    settled(repo)
    states = task_states(repo)
    assert states["B"] == ("claimed", "w2")
    # the killed `done` either counts (its events were appended: committed on recovery) or
    # never happened; never half of it
    expected = ("done", "w1") if point != "journal" else ("claimed", "w1")
    assert states["A"][0] == expected[0]


@pytest.mark.parametrize("point", [F1("journal"), F1("appended"), "committed"])
def test_run_is_not_refused_after_a_killed_transition(repo: Repo, tmp_path: Path, point: str) -> None:
    """`run` checked the index for staged changes before recovering: refused for good."""
    repo.plan("p", TWO)
    repo.ok("claim", "p/A", "--worker", "w1", "--lease", "1")  # a killed release: A waits this out
    killed_at(repo, point, "release", "p/A", "--worker", "w1")
    res = repo.proc("run", "p", "-n", "1", "--executor", "demo", "--json", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {k: v[0] for k, v in task_states(repo).items()} == {"A": "done", "B": "done"}
    settled(repo)


@pytest.mark.parametrize("point", ["merge-journal", "merged", F1("done-appended"), F1("merge-committed")])
def test_a_run_killed_in_its_merge_is_recovered(repo: Repo, point: str) -> None:
    repo.plan("p", "id: p\ntitle: Crash\ngoal: g\ntasks:\n  - {id: A, title: a, files: [a.txt]}\n")
    killed_at(repo, point, "run", "p", "-n", "1", "--executor", "demo")
    # a killed run's task is held until its lease runs out; the next command settles the merge
    res = repo.proc("status", "p", "--json")
    assert res.returncode == 0, res.stderr
    repo.proc("doctor")  # reading only: no traceback, whatever it finds
    claim = repo.proc("claim", "p/A", "--worker", "w9", "--json")
    assert claim.returncode in (0, 1, 3), claim.stderr
    assert not (repo.path / ".git" / "MERGE_HEAD").exists()
    assert repo.git("diff", "--cached", "--name-only") == ""
    state = task_states(repo)["A"][0]
    merged = (repo.path / "a.txt").exists() and "a.txt" in repo.git("ls-files")
    # `done` never without its merge, and a merge that landed keeps its `done`
    assert (state == "done") == merged, (point, state, merged)
    repo.ok("validate")


def clones(tmp_path: Path) -> tuple[Path, Repo, Repo]:
    seed = init_repo(tmp_path / "seed", "1")
    seed.plan("p", TWO)
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed.git("push", "-q", str(bare), "main")
    out = []
    for name in ("one", "two"):
        path = tmp_path / name
        git(tmp_path, "clone", "-q", str(bare), str(path))
        clone = Repo(path)
        clone.ok("init")
        out.append(clone)
    return bare, out[0], out[1]


def test_a_sync_killed_in_its_merge_is_recovered_by_the_next_sync(tmp_path: Path) -> None:
    bare, one, two = clones(tmp_path)
    one.ok("claim", "p/A", "--worker", "w1")
    one.ok("sync")
    two.ok("claim", "p/B", "--worker", "w2")  # diverged: the next sync must merge
    killed_at(two, "sync-merge", "sync")
    assert (two.path / ".git" / "MERGE_HEAD").exists()  # half-way, as a kill leaves it
    res = two.proc("sync", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    settled(two)
    states = task_states(two)
    assert states["A"] == ("claimed", "w1") and states["B"] == ("claimed", "w2")


def test_a_claim_sync_killed_in_its_merge_is_recovered(tmp_path: Path) -> None:
    bare, one, two = clones(tmp_path)
    one.ok("claim", "p/A", "--worker", "w1")
    one.ok("sync")
    two.ok("claim", "p/B", "--worker", "w2")
    killed_at(two, "sync-merge", "claim", "p/A", "--worker", "w3", "--sync")
    res = two.proc("claim", "p/A", "--worker", "w3", "--sync", "--json")
    # A is w1's on the remote: the merged state refuses it, with no traceback and no half-merge
    assert res.returncode == 1, res.stdout + res.stderr
    assert "claimed by w1" in res.stdout
    settled(two)


@pytest.mark.format1
def test_a_failed_commit_leaves_nothing_for_the_next_command(repo: Repo) -> None:
    """A transition whose commit fails takes its writes back; the next unrelated command must
    not commit them as 'recover events appended before a crash'."""
    repo.plan("p", TWO)
    index_lock = repo.path / ".git" / "index.lock"
    index_lock.write_text("")  # another git command holds the index
    res = repo.proc("claim", "p/A", "--worker", "w1")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    index_lock.unlink()
    before = repo.commits()
    repo.ok("claim", "p/B", "--worker", "w2")
    assert repo.commits() == before + 1
    assert "recover" not in repo.git("log", "-1", "--format=%B")
    assert task_states(repo)["A"][0] == "ready"
    settled(repo)


def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and `mount` (a small tmpfs)")
@pytest.mark.parametrize("spare_pages", [0, 1, 2, 4, 6, 8])
def test_a_task_add_that_fails_on_a_full_disk_is_not_committed_by_the_next_command(
        tmp_path: Path, spare_pages: int) -> None:
    """The issue's case on a real full disk: plan.yaml is written, the commit fails (no room
    for git's objects or index), and there is no room either for a copy of the old plan to
    put back atomically. The old content goes back in place, the journal goes, and the next
    unrelated command commits nothing of it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        repo = Repo(make_git_repo(disk / "repo"))
        repo.ok("init", "--format", "1")
        repo.plan("p", TWO)
        spare = disk / "spare"
        spare.write_bytes(b"\0" * 4096 * spare_pages)
        fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        spare.unlink()
        plan = (repo.path / ".flow/plans/p/plan.yaml").read_bytes()
        before = repo.commits()
        res = repo.proc("task", "add", "p", "Z", "--title", "z" * 60, "--run", "make z")
        (disk / "fill").unlink()
        if res.returncode == 0:  # it fitted: then it is whole
            assert repo.commits() == before + 1
            return
        assert res.returncode == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert (repo.path / ".flow/plans/p/plan.yaml").read_bytes() == plan
        settled(repo)
        repo.ok("claim", "p/A", "--worker", "w")
        assert repo.commits() == before + 1
        assert "recover" not in repo.git("log", "--format=%s", "-2")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def test_a_failed_write_is_put_back_in_place_when_no_copy_fits(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same without a mount: the commit fails (another git holds the index) and the
    atomic put-back of the old plan fails as on a full disk."""
    import errno

    from flowgit.store import writing

    repo.plan("p", TWO)
    plan = (repo.path / ".flow/plans/p/plan.yaml").read_bytes()
    real = writing.write_atomic
    calls: list[Path] = []

    def tight(path: Path, content: bytes) -> None:
        calls.append(path)
        if len(calls) > 1:  # the copy to put the old plan back: no room
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, content)

    monkeypatch.setattr(writing, "write_atomic", tight)
    index_lock = repo.path / ".git" / "index.lock"
    index_lock.write_text("")
    res = repo.run("task", "add", "p", "Z", "--title", "z")
    index_lock.unlink()
    assert res.code == 4 and res.err.count("\n") == 1 and len(calls) == 2, (res, calls)  # the index was busy
    monkeypatch.setattr(writing, "write_atomic", real)
    assert (repo.path / ".flow/plans/p/plan.yaml").read_bytes() == plan
    settled(repo)
    before = repo.commits()
    repo.ok("claim", "p/A", "--worker", "w")
    assert repo.commits() == before + 1 and "recover" not in repo.git("log", "-2", "--format=%s")
