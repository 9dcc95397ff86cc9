"""The derived cache lives in the git dir, never in the work tree (note3's finding 4, ADR 0012):
a read writes nothing `git status` shows, even in a clone whose branch carries a `.flow/.cache/`
a teammate committed; a cache file planted in the work tree is never read; linked work trees
share the plan index (checked by content) and keep their own derivations."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowgit.core.index import task_rows
from flowgit.core.model import Task
from helpers import Repo, make_git_repo
from helpers.cache import cache_dirs

PLAN = """id: p
title: The plan
tasks:
  - id: a
    title: The real title
  - id: b
    title: Second
    depends_on: [a]
"""

READS = (("status",), ("status", "p", "--json"), ("next", "p"), ("graph", "p"), ("task", "show", "p/a"),
         ("plan", "list"), ("events", "p"))


def fg(root: Path, *args: str, cache: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWGIT_NO_CACHE"}
    if not cache:
        env["FLOWGIT_NO_CACHE"] = "1"
    return subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(root), *args],
                          capture_output=True, text=True, env=env, check=False)


def porcelain(root: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                          capture_output=True, text=True, check=True).stdout


def forged(header: bytes) -> dict[str, bytes]:
    """Cache files, in the layout an older flowgit kept in `.flow/.cache/`, that would make
    task a's title FORGED if they were read (for every stats and hash: the head names none)."""
    import marshal

    head = {"plan": {"stat": None, "hash": "0" * 64, "checked": True, "data": {"id": "p", "title": "FORGED"},
                     "external": False, "executors": {}}}
    rows = {"hash": "0" * 64, "rows": task_rows([Task(id="a", title="FORGED")])}
    return {"p.marshal": header + marshal.dumps(head), "p@rows.marshal": header + marshal.dumps(rows),
            "_config.marshal": header + marshal.dumps({"data": {"bogus": True}})}


@pytest.mark.parametrize("fmt", ["1", "2"])
def test_reads_leave_a_clone_with_a_committed_cache_clean(tmp_path: Path, fmt: str) -> None:
    a = Repo(make_git_repo(tmp_path / "a"))
    a.ok("init", "--format", fmt)
    a.plan("p", PLAN)
    a.ok("status", "p")
    # a teammate (an older flowgit, or a `git add -f`) committed a cache, past the hook
    old = a.path / ".flow" / ".cache"
    old.mkdir()
    for name, data in forged(b"").items():
        (old / name).write_bytes(data)
    own = (a.path / ".git" / "flowgit" / "plans" / "p.marshal").read_bytes()
    (old / "own.marshal").write_bytes(own)  # a's key, published
    a.git("add", "-f", ".flow/.cache")
    a.git("commit", "-q", "--no-verify", "-m", "oops: the cache")
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(a.path), str(bare)], check=True)
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(bare), str(b)], check=True)
    before = {p.name: p.read_bytes() for p in (b / ".flow" / ".cache").iterdir()}
    for _ in range(2):  # cold, then warm
        for args in READS:
            res = fg(b, *args)
            assert res.returncode in (0, 3), (args, res.stderr)
            assert "FORGED" not in res.stdout and "Traceback" not in res.stderr
            assert porcelain(b) == "", args
    assert {p.name: p.read_bytes() for p in (b / ".flow" / ".cache").iterdir()} == before
    assert any(d.is_dir() and any(d.iterdir()) for d in cache_dirs(b)), "the cache is in the git dir"
    assert fg(b, "status", "p", "--json").stdout == fg(b, "status", "p", "--json", cache=False).stdout

    # doctor says so, without failing, and how to take it out of the branch
    assert fg(b, "doctor", "--fix").returncode == 0  # a fresh clone: the merge driver set up
    assert porcelain(b) == ""
    res = fg(b, "doctor", "--json")
    assert res.returncode == 0, res.stderr
    said = [p for p in json.loads(res.stdout)["problems"] if p["kind"] == "committed_cache"]
    assert len(said) == 1 and "git rm -r --cached .flow/.cache" in said[0]["message"]
    text = fg(b, "doctor")
    assert "[info] .flow/.cache/:" in text.stdout and "git rm -r --cached .flow/.cache" in text.stdout
    subprocess.run(["git", "rm", "-r", "-q", "--cached", ".flow/.cache"], cwd=b, check=True)
    subprocess.run(["git", "commit", "-q", "--no-verify", "-m", "drop the cache"], cwd=b, check=True)
    assert "committed_cache" not in fg(b, "doctor", "--json").stdout
    assert "old_cache" in fg(b, "doctor", "--json").stdout  # the files are still there, untracked


def test_a_cache_file_planted_in_the_work_tree_is_never_read(repo: Repo) -> None:
    """Even with this clone's own key in its header (the worst case: the key leaked)."""
    repo.plan("p", PLAN)
    repo.ok("status", "p")
    header = (repo.path / ".git" / "flowgit" / "plans" / "p.marshal").read_bytes().split(b"\n", 1)[0] + b"\n"
    truth = fg(repo.path, "task", "show", "p/a", "--json").stdout
    old = repo.path / ".flow" / ".cache"
    old.mkdir()
    for name, data in forged(header).items():
        (old / name).write_bytes(data)
    shutil.rmtree(repo.path / ".git" / "flowgit" / "plans")
    shutil.rmtree(repo.path / ".git" / "flowgit" / "cache")
    for _ in range(2):
        assert fg(repo.path, "task", "show", "p/a", "--json").stdout == truth
    assert {p.name for p in old.iterdir()} == set(forged(b""))  # nothing written there either


def test_linked_worktrees_share_the_plan_index_and_keep_their_own_state(tmp_path: Path) -> None:
    r = Repo(make_git_repo(tmp_path / "main"))
    r.ok("init", "--format", "1")
    r.plan("p", PLAN)
    base = r.git("rev-parse", "HEAD")
    r.ok("claim", "p/a", "--worker", "w1")
    wt = tmp_path / "linked"
    r.git("worktree", "add", "-q", "--detach", str(wt), base)  # before the claim: a is ready there
    rows = r.path / ".git" / "flowgit" / "plans" / "p@rows.marshal"
    answers = {}
    for root in (r.path, wt):
        for _ in range(2):
            warm = fg(root, "status", "p", "--json").stdout
        assert warm == fg(root, "status", "p", "--json", cache=False).stdout
        assert porcelain(root) == ""
        answers[root] = {t["id"]: t["state"] for t in json.loads(warm)["tasks"]}
        if root == r.path:
            seen = rows.stat()
    assert answers[r.path]["a"] == "claimed" and answers[wt]["a"] == "ready"
    # the linked work tree found the same bytes' index: the tasks' rows were not parsed again
    assert (rows.stat().st_ino, rows.stat().st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns)
    own = r.path / ".git" / "worktrees" / "linked" / "flowgit" / "cache"
    assert own.is_dir() and any(own.glob("p@*.marshal"))
    assert not (wt / ".flow" / ".cache").exists() and not (r.path / ".flow" / ".cache").exists()

    # a transition in the main work tree changes nothing the linked one answers, and back
    r.ok("done", "p/a", "--worker", "w1")
    assert json.loads(fg(wt, "status", "p", "--json").stdout) == json.loads(
        fg(wt, "status", "p", "--json", cache=False).stdout)
    assert {t["id"]: t["state"] for t in json.loads(fg(wt, "status", "p", "--json").stdout)["tasks"]} == answers[wt]
