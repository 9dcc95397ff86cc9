"""Format 2 under attack (ADR 0011): what a teammate's config, a checkout or a hostile clone
can do to the state branch. Each case is a one-line error with CLI.md's exit code, nothing
written, or state read safely."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import Repo, init_repo, states

PLAN = """id: P
title: attacks
goal: attack the state branch
tasks:
  - id: T1
    title: one
  - id: T2
    title: two
"""


def executing(path: Path) -> Repo:
    r = init_repo(path, "2")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    return r


def one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), res.stderr


def test_a_state_branch_checked_out_in_a_linked_worktree_is_never_moved(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.git("worktree", "add", "-q", str(tmp_path / "peek"), "flow/state")
    tip = r.git("rev-parse", "flow/state")
    one_line_error(r.proc("claim", "P/T1", "--worker", "w"), "flow/state", str(tmp_path / "peek"))
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    r.git("remote", "add", "origin", str(bare))
    one_line_error(r.proc("sync"), "flow/state", "checked out")
    assert r.git("rev-parse", "flow/state") == tip
    assert r.git("-C", str(tmp_path / "peek"), "status", "--porcelain") == ""
    r.git("worktree", "remove", str(tmp_path / "peek"))
    r.ok("claim", "P/T1", "--worker", "w")  # back out of the work tree, writes go on
    assert states(r, "P")["T1"] == "claimed"


def test_migrate_on_a_detached_head_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    r = init_repo(tmp_path / "repo", "1")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("claim", "P/T1", "--worker", "w")
    r.git("checkout", "-q", "--detach")
    head = r.git("rev-parse", "HEAD")
    res = r.proc("migrate")
    one_line_error(res, "detached")
    assert r.git("rev-parse", "HEAD") == head
    assert r.git("branch", "--list", "flow/state") == ""  # no state branch beside a format 1 branch
    assert "version: 1" in (r.path / ".flow" / "config.yaml").read_text()
    r.git("checkout", "-q", "main")
    r.ok("migrate")
    assert states(r, "P")["T1"] == "claimed"


@pytest.mark.parametrize("branch", ["HEAD", "FETCH_HEAD", "refs/heads/x", "origin/main", "tags/v1"])
def test_a_state_branch_git_would_read_as_another_ref_is_refused(tmp_path: Path, branch: str) -> None:
    r = executing(tmp_path / "repo")
    config = r.path / ".flow" / "config.yaml"
    config.write_text(config.read_text() + f"state:\n  branch: {branch!r}\n")
    refs = r.git("for-each-ref", "--format=%(refname) %(objectname)")
    one_line_error(r.proc("claim", "P/T1", "--worker", "w"), "state.branch", branch)
    assert r.git("for-each-ref", "--format=%(refname) %(objectname)") == refs  # no refs/heads/HEAD


def test_a_private_index_lock_left_by_a_killed_writer_does_not_stop_every_write(tmp_path: Path) -> None:
    r = executing(tmp_path / "repo")
    r.ok("claim", "P/T1", "--worker", "w")
    (r.path / ".git" / "flowgit" / "state.index.lock").write_text("")  # SIGKILL mid update-index
    r.ok("heartbeat", "P/T1", "--worker", "w")  # was exit 4 "retry" forever
    r.ok("done", "P/T1", "--worker", "w")
    assert states(r, "P")["T1"] == "done"
    assert r.proc("validate").returncode == 0


def _put(r: Repo, path: str, content: bytes, message: str) -> None:
    """Commit `content` at `path` on flow/state with plumbing, as a hostile or fixing clone."""
    env = {**os.environ, "GIT_INDEX_FILE": str(r.path / ".git" / "hand.index")}

    def run(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(["git", *args], cwd=r.path, env=env, input=data, capture_output=True,
                              check=True).stdout.decode().strip()
    run("read-tree", "flow/state")
    blob = run("hash-object", "-w", "--stdin", data=content)
    run("update-index", "--cacheinfo", f"100644,{blob},{path}")
    commit = run("commit-tree", run("write-tree"), "-p", "flow/state", data=message.encode())
    run("update-ref", "refs/heads/flow/state", commit)


def test_a_bad_line_removed_on_one_clone_stays_removed_on_the_others(tmp_path: Path) -> None:
    from flowgit.store.state import log_path

    a = executing(tmp_path / "a")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(a.path), str(bare)], check=True)
    a.git("remote", "add", "origin", str(bare))
    a.ok("claim", "P/T1", "--worker", "w")
    path = log_path("P", "T1")
    good = a.git("show", f"flow/state:{path}").encode() + b"\n"
    bad = (b'{"id":"01M96BCGD3GWCDGSZX2MA3S650","type":"task.done","plan":"P","task":"T1","actor":"w",'
           b'"at":"2026-12-06T18:56:42.499514Z","clock":2,"data":{"code":"--output=x"}}\n')
    _put(a, path, good + bad, "a forged line")
    a.ok("sync")
    b = Repo(tmp_path / "b")
    subprocess.run(["git", "clone", "-q", str(bare), str(b.path)], check=True)
    b.git("branch", "-q", "flow/state", "origin/flow/state")
    assert "unreadable event" in b.run("status", "P").err
    _put(a, path, good, "remove the forged line, as the warning asks")
    a.ok("sync")
    b.ok("sync")  # a fast-forward: the dropped line was no event, nothing to bring back
    assert b.git("rev-parse", "flow/state") == a.git("rev-parse", "flow/state")
    res = b.run("status", "P")
    assert "unreadable" not in res.err and states(b, "P")["T1"] == "claimed"
