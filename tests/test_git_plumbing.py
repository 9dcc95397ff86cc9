"""Git processes per state write, per merge of a fetched state and per claim round (issue 14's
K=8 rate): the blobs of one commit in one `hash-object`, the fetched state's diff read once and
its caches carried along, `git --version` kept per git binary, HEAD and a remote's url read
from the files. Every check stays: a state tree holding a path twice still stops sync, on a
fast-forward and in our own unpushed state too, and every write is still fsynced."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import Repo, git
from test_adversary5 import _git, _push_state_tree, _tree_with
from test_adversary_gates import published
from test_state_plan import PLAN, state_repo

from flowgit import git as door
from flowgit import git_state
from flowgit.store.state import log_path

SHIM = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
PATH="{path}" exec git "$@"
"""


FOUR = "id: P\ntitle: four\ntasks:\n" + "".join(f"  - {{id: T{i}, title: task {i}}}\n" for i in range(1, 5))


def shimmed(tmp_path: Path, name: str = "shim") -> tuple[dict[str, str], Path]:
    """An environment whose `git` logs each argv (one line) and runs the real git."""
    folder, log = tmp_path / name, tmp_path / f"{name}.log"
    folder.mkdir()
    (folder / "git").write_text(SHIM.format(log=log, path=os.environ["PATH"]))
    (folder / "git").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}, log


def logged(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def _executing(tmp_path: Path) -> tuple[Repo, Repo, Path]:
    victim = state_repo(tmp_path / "victim", approvals=None)
    victim.plan("P", PLAN)
    victim.ok("submit", "P")
    bare, mallory = published(victim, tmp_path)
    victim.ok("sync")
    return victim, mallory, bare


# ----- the blobs of one commit: one process, fsynced --------------------------------------------

def test_the_blobs_of_one_commit_are_written_by_one_fsynced_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    asked: list[list[str]] = []
    real = door.subprocess.run

    def spy(argv: list[str], *args: object, **kw: object) -> object:
        asked.append(list(argv))
        return real(argv, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(door.subprocess, "run", spy)
    contents = [b"one\n", b"two\n", b"", b"three\n" * 1000, b"one\n"]
    ids = git_state.write_blobs(repo, contents)
    writes = [a for a in asked if "hash-object" in a]
    assert len(asked) == 1 and len(writes) == 1
    assert "core.fsync=committed" in writes[0] and "--no-filters" in writes[0]
    for data, sha in zip(contents, ids):
        assert sha == subprocess.run(["git", "hash-object", "--stdin"], cwd=repo, input=data,
                                     capture_output=True, check=True).stdout.decode().strip()
        assert subprocess.run(["git", "cat-file", "blob", sha], cwd=repo, capture_output=True).stdout == data
    assert list((repo / ".git" / "flowgit" / "blobs").iterdir()) == []  # nothing left behind
    want = subprocess.run(["git", "hash-object", "--stdin"], cwd=repo, input=b"alone\n", capture_output=True,
                          check=True).stdout.decode().strip()
    asked.clear()
    assert git_state.write_blobs(repo, [b"alone\n"]) == [want]
    assert len(asked) == 1 and "--stdin" in asked[0] and "core.fsync=committed" in asked[0]
    assert git_state.write_blobs(repo, []) == []


def test_files_a_killed_writer_left_are_swept_by_a_later_write(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    folder = repo / ".git" / "flowgit" / "blobs"
    folder.mkdir(parents=True)
    stale, fresh = folder / "99999-dead.0", folder / "99998-busy.0"
    stale.write_bytes(b"left by a writer killed before git read it")
    fresh.write_bytes(b"another writer's, being read now")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    git_state.write_blobs(repo, [b"a", b"b"])
    assert not stale.exists() and fresh.exists()


def test_a_claim_round_and_a_done_are_fsynced_and_ask_git_each_thing_once(tmp_path: Path) -> None:
    """A `claim --sync` that merges a fetched state into an unpushed `done`: every object and
    ref write carries core.fsync=committed, one `hash-object` per state commit, the merge's
    diffs from one `diff-tree` (not asked for again after the merge commit), `git --version`
    once for a git this clone has not met; the `done` after it: six git processes."""
    victim = state_repo(tmp_path / "victim", approvals=None)
    victim.plan("P", FOUR)
    victim.ok("submit", "P")
    bare, _ = published(victim, tmp_path)
    victim.ok("sync")
    from test_adversary_gates import clone

    w1 = clone(bare, tmp_path / "w1", "w1")
    assert victim.proc("claim", "P/T2", "--worker", "v", "--sync").returncode == 0
    assert w1.proc("claim", "P/T1", "--worker", "w1", "--sync").returncode == 0
    assert victim.proc("done", "P/T2", "--worker", "v").returncode == 0  # unpushed: the claim merges
    env, log = shimmed(tmp_path)
    res = victim.proc("claim", "P/T3", "--worker", "v", "--sync", "--json", env=env)
    assert res.returncode == 0, res.stderr
    argvs = logged(log)
    assert argvs.count("--version") == 1  # the shim is another git on PATH: asked once, kept
    writes = [a for a in argvs if a.split(" -- ")[0].split()[-1:] != [] and any(
        w in a.split() for w in ("hash-object", "write-tree", "commit-tree"))
        or ("update-ref" in a.split() and "refs/heads/flow/state" in a.split())]
    assert len(writes) >= 8 and all("core.fsync=committed" in a for a in writes), writes
    # one per state commit that brings blobs: the folded claim's and the claim's (the merge's has none)
    assert sum("hash-object" in a.split() for a in argvs) == sum("write-tree" in a.split() for a in argvs) - 1
    assert sum(a.startswith("diff-tree") for a in argvs) == 1  # both sides of the merge
    assert sum("merge-base" in a.split() for a in argvs) == 1
    # the paths their side added looked up in the merge's cat-file; ours is a commit this clone
    # wrote from its index
    assert sum("ls-tree" in a.split() for a in argvs) == 0
    assert "flow: sync with origin/flow/state" in git(victim.path, "log", "-3", "--format=%s", "flow/state")
    res = victim.proc("done", "P/T3", "--worker", "v", env=env)
    assert res.returncode == 0, res.stderr
    argvs = logged(log)
    assert "--version" not in argvs and len(argvs) <= 6, argvs
    assert not list((victim.path / ".git" / "flowgit" / "blobs").iterdir())


# ----- a path twice in a state tree still stops sync -----------------------------------------------

def test_a_duplicate_entry_brought_by_a_fast_forward_stops_sync(tmp_path: Path) -> None:
    """The fast-forward reads its diff once now; the copy still stops it, nothing moved."""
    victim, mallory, _ = _executing(tmp_path)
    assert victim.proc("claim", "P/T1", "--worker", "v", "--sync").returncode == 0
    victim.ok("sync")
    mallory.ok("sync")
    path = log_path("P", "T1")
    empty = _git(mallory, "hash-object", "-w", "--stdin", stdin="").strip()
    tree = _git(mallory, "rev-parse", "flow/state^{tree}").strip()
    _push_state_tree(mallory, _tree_with(mallory, tree, path, "100644", "blob", empty, dup=True))
    before = _git(victim, "rev-parse", "flow/state")
    res = victim.proc("sync")
    assert res.returncode == 1 and f"{path}: the path is in its tree twice" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert _git(victim, "rev-parse", "flow/state") == before


def test_a_duplicate_entry_in_our_own_unpushed_state_stops_the_merge(tmp_path: Path) -> None:
    """Both sides' diffs come from one diff-tree now; our side's added paths are still looked
    up (a state branch moved by hand, `git fetch origin flow/state:flow/state` from a hostile
    remote)."""
    victim, mallory, _ = _executing(tmp_path)
    assert victim.proc("claim", "P/T1", "--worker", "v", "--sync").returncode == 0
    victim.ok("sync")
    mallory.ok("sync")
    path = log_path("P", "T1")
    empty = _git(victim, "hash-object", "-w", "--stdin", stdin="").strip()
    tree = _git(victim, "rev-parse", "flow/state^{tree}").strip()
    bad = _tree_with(victim, tree, path, "100644", "blob", empty, dup=True)
    commit = _git(victim, "commit-tree", bad, "-p", "flow/state", "-m", "by hand").strip()
    _git(victim, "update-ref", "refs/heads/flow/state", commit)
    assert mallory.proc("claim", "P/T2", "--worker", "m", "--sync").returncode == 0
    mallory.ok("sync")  # the remote's state moves: a merge, not a fast-forward
    res = victim.proc("sync")
    assert res.returncode == 1 and f"{path}: the path is in its tree twice" in res.stderr, res.stderr
    assert _git(victim, "rev-parse", "flow/state").strip() == commit


def test_a_directory_listed_twice_in_a_fetched_state_stops_the_merge(tmp_path: Path) -> None:
    """The merge looks the added paths up in the trees its `cat-file` reads: a bucket of the
    events tree listed twice (its second copy holding an emptied log) is refused, nothing merged."""
    victim, mallory, _ = _executing(tmp_path)
    assert victim.proc("claim", "P/T1", "--worker", "v", "--sync").returncode == 0
    victim.ok("sync")
    mallory.ok("sync")
    assert victim.proc("claim", "P/T2", "--worker", "v").returncode == 0  # unpushed: a merge
    path = log_path("P", "T1")
    bucket, name = path.rsplit("/", 1)
    empty = _git(mallory, "hash-object", "-w", "--stdin", stdin="").strip()
    copy = _git(mallory, "mktree", stdin=f"100644 blob {empty}\t{name}\n").strip()
    tree = _git(mallory, "rev-parse", "flow/state^{tree}").strip()
    _push_state_tree(mallory, _tree_with(mallory, tree, bucket, "040000", "tree", copy, dup=True))
    before = _git(victim, "rev-parse", "flow/state")
    res = victim.proc("sync")
    assert res.returncode == 1 and f"{path}: the path is in its tree twice" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert _git(victim, "rev-parse", "flow/state") == before


def test_the_trees_along_a_path_are_judged_as_ls_tree_would(tmp_path: Path) -> None:
    from flowgit import treecheck

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    blob = _git(Repo(repo), "hash-object", "-w", "--stdin", stdin="x").strip()
    sub = _git(Repo(repo), "mktree", stdin=f"100644 blob {blob}\tb.jsonl\n100644 blob {blob}\tc.jsonl\n").strip()
    good = _git(Repo(repo), "mktree", stdin=f"040000 tree {sub}\ta\n").strip()
    bad = _git(Repo(repo), "mktree", stdin=f"040000 tree {sub}\ta\n040000 tree {sub}\ta\n").strip()
    commits = {t: _git(Repo(repo), "commit-tree", t, "-m", "t").strip() for t in (good, bad)}

    def judged(commit: str, paths: list[str]) -> list[str]:
        trees = treecheck.requests([(commit, paths)])
        with git_state._cat_batch(repo, list(trees)) as out:
            treecheck.read_trees(out, trees)
        return treecheck.judge(commit, paths, trees, git_state._twice)

    assert judged(commits[good], ["a/b.jsonl", "a/c.jsonl"]) == []
    assert judged(commits[good], ["a/../b", "a/x\ny", "z/b.jsonl"]) == ["a/../b", "a/x\ny", "z/b.jsonl"]
    # git strips a carriage return from a batch line's end: `COMMIT:a\r` would read the tree `a`
    leaf_twice = _git(Repo(repo), "mktree", stdin=f"100644 blob {blob}\tb.jsonl\n100644 blob {blob}\tb.jsonl\n").strip()
    tricky = _git(Repo(repo), "mktree", "-z", stdin=f"040000 tree {sub}\ta\x00040000 tree {leaf_twice}\ta\r\x00").strip()
    tricky_commit = _git(Repo(repo), "commit-tree", tricky, "-m", "t").strip()
    assert judged(tricky_commit, ["a\r/b.jsonl"]) == ["a\r/b.jsonl"]  # left to ls-tree, which finds it
    with pytest.raises(Exception, match="the path is in its tree twice"):
        git_state.check_left(repo, [git_state.Unchecked(tricky_commit, ["a\r/b.jsonl"])])
    with pytest.raises(Exception, match="a/b.jsonl: the path is in its tree twice"):
        judged(commits[bad], ["a/b.jsonl"])
    # what is left goes to ls-tree, which says the same
    with pytest.raises(Exception, match="the path is in its tree twice"):
        git_state.check_left(repo, [git_state.Unchecked(commits[bad], ["a/b.jsonl"])])


# ----- git --version, HEAD and a remote's url without a process ------------------------------------

def _fake_git(folder: Path, version: str, log: Path) -> None:
    folder.mkdir(exist_ok=True)
    real = next(p for p in (Path(d) / "git" for d in os.environ["PATH"].split(os.pathsep)) if p.is_file())
    (folder / "git").write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version}" >> "{log}"; '
                                f'echo "{version}"; exit 0; fi\nexec "{real}" "$@"\n')
    (folder / "git").chmod(0o755)


def test_the_git_version_is_kept_per_git_binary(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "r", approvals=None)
    r.plan("P", PLAN)
    r.ok("submit", "P")
    folder, log = tmp_path / "bin", tmp_path / "asked.log"
    _fake_git(folder, "git version 2.39.5", log)
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    for _ in range(3):
        assert r.proc("claim", "P/T1", "--worker", "w", env=env).returncode in (0, 1)
    assert logged(log) == ["git version 2.39.5"]  # asked once, then kept
    _fake_git(folder, "git version 2.40.1", log)  # an upgrade: another file
    os.utime(folder / "git", (time.time() + 5, time.time() + 5))
    assert r.proc("heartbeat", "P/T1", "--worker", "w", env=env).returncode == 0
    assert logged(log) == ["git version 2.40.1"]
    _fake_git(folder, "git version 2.20.1", log)  # too old: refused every time, never kept
    for _ in range(2):
        res = r.proc("heartbeat", "P/T1", "--worker", "w", env=env)
        assert res.returncode == 1 and "needs git 2.24 or newer" in res.stderr, res.stderr
    assert logged(log) == ["git version 2.20.1"] * 2
    assert "2.20" not in (r.path / ".git" / "flowgit" / "git-version").read_text()


def test_head_from_the_files_is_what_git_says(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    assert door.head(repo) is None  # unborn
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "one")
    assert door.head(repo) == git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert door.head(repo) == git(repo, "rev-parse", "HEAD")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "two")
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    assert door.head(repo) == git(repo, "rev-parse", "HEAD")
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "main")
    assert door.head(tmp_path / "wt") == git(tmp_path / "wt", "rev-parse", "HEAD") != door.head(repo)


def test_a_remote_is_known_from_the_config_file_or_from_git(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    assert not door.remote_exists(repo, "origin")
    git(repo, "remote", "add", "origin", str(tmp_path / "x.git"))
    assert door.remote_exists(repo, "origin")
    assert not door.remote_exists(repo, "Origin")  # remote names are case-sensitive
    git(repo, "config", "remote.up.pushurl", "/y")  # no url: git decides
    assert door.remote_exists(repo, "up") == (subprocess.run(["git", "remote", "get-url", "up"], cwd=repo,
                                                            capture_output=True).returncode == 0)
    (repo / ".git" / "remotes").mkdir()
    (repo / ".git" / "remotes" / "old").write_text("URL: /z\n")  # the old remotes/ file: git's answer
    assert door.remote_exists(repo, "old") == (subprocess.run(["git", "remote", "get-url", "old"], cwd=repo,
                                                             capture_output=True).returncode == 0)
    with pytest.raises(Exception):
        door.remote_exists(repo, "-x")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
