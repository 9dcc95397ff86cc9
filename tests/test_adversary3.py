"""Third adversary pass (issues 14 and 17): what a hostile teammate can push onto the state
branch, and that the derived caches never change an answer."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import Repo
from helpers.cache import drop_derived
from test_state_plan import STATE_PLAN, synced_pair


def test_a_gitlink_in_place_of_a_recorded_plan_reads_the_same_warm_and_cold(tmp_path: Path) -> None:
    a, b = synced_pair(tmp_path)
    b.ok("status", "P")  # warm: the cache knows the recorded blob at this state commit
    evil = a.path / "evil.yaml"
    evil.write_text("id: P\ntitle: p\ntasks:\n  - {id: T9, title: evil}\n")
    blob_id = a.git("hash-object", "-w", str(evil))
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=a.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"160000,{blob_id},{STATE_PLAN}"],
                   cwd=a.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=a.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    a.git("update-ref", "refs/heads/flow/state", a.git("commit-tree", tree, "-p", "flow/state", "-m", "x"))
    a.git("push", "-q", "origin", "flow/state")
    b.ok("sync")
    warm = b.proc("status", "P", "--json")
    drop_derived(b.path)
    cold = b.proc("status", "P", "--json")
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), (warm.stderr, cold.stderr)
    assert "Traceback" not in warm.stderr + cold.stderr


def _graft(r: Repo, entries: str) -> None:
    """A hostile state commit: `entries` (mktree lines) added to `.flow/plans`, pushed."""
    def mktree(text: str) -> str:
        return subprocess.run(["git", "mktree", "--missing"], cwd=r.path, input=text, capture_output=True,
                              text=True, check=True).stdout.strip()

    def ls(rev: str, drop: str) -> str:
        return "".join(line + "\n" for line in r.git("ls-tree", rev).splitlines() if not line.endswith("\t" + drop))

    plans = mktree(ls("flow/state:.flow/plans", "\0") + entries)
    flow = mktree(ls("flow/state:.flow", "plans") + f"040000 tree {plans}\tplans\n")
    root = mktree(ls("flow/state^{tree}", ".flow") + f"040000 tree {flow}\t.flow\n")
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", root, "-p", "flow/state", "-m", "x"))
    r.git("push", "-q", "origin", "flow/state")


def test_a_state_path_git_refuses_is_not_synced_in(tmp_path: Path) -> None:
    """A `..` or `.git` entry in the state tree would make every later write fail in `git
    read-tree`: sync refuses it in one line and leaves the state as it was."""
    a, b = synced_pair(tmp_path)
    fresh = tmp_path / "c"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "remote.git"), str(fresh)], check=True)
    plan_blob = a.git("rev-parse", f"flow/state:{STATE_PLAN}")
    sub = subprocess.run(["git", "mktree"], cwd=a.path, input=f"100644 blob {plan_blob}\tplan.yaml\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    for name in ("..", ".GIT"):
        a.ok("sync")
        _graft(a, f"040000 tree {sub}\t{name}\n")
        before = b.git("rev-parse", "flow/state")
        res = b.proc("sync")
        assert res.returncode == 1, res.stdout + res.stderr
        assert f".flow/plans/{name}/plan.yaml" in res.stderr and "nothing was merged" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        assert b.git("rev-parse", "flow/state") == before
        b.ok("claim", "P/T1", "--worker", "w")  # writes still work
        b.ok("release", "P/T1", "--worker", "w")
        a.git("update-ref", "refs/heads/flow/state", "flow/state~1")
        a.git("push", "-q", "-f", "origin", "flow/state")
    _graft(a, f"040000 tree {sub}\t..\n")
    c = Repo(fresh)  # no state branch here yet: the whole tree is looked at
    res = c.proc("sync")
    assert res.returncode == 1 and ".flow/plans/../plan.yaml" in res.stderr, res.stderr


def test_a_recorded_plan_or_config_above_the_file_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from flowgit.formats.yamlio import MAX_YAML_BYTES

    a, b = synced_pair(tmp_path)
    for path in (STATE_PLAN, ".flow/config.yaml"):
        a.ok("sync")
        big = a.path / "big.yaml"
        big.write_bytes(b"#" + b"x" * MAX_YAML_BYTES + b"\n")
        blob_id = a.git("hash-object", "-w", str(big))
        env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
        subprocess.run(["git", "read-tree", "flow/state"], cwd=a.path, env=env, check=True)
        subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob_id},{path}"],
                       cwd=a.path, env=env, check=True)
        tree = subprocess.run(["git", "write-tree"], cwd=a.path, env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
        old = a.git("rev-parse", "flow/state")
        a.git("update-ref", "refs/heads/flow/state", a.git("commit-tree", tree, "-p", "flow/state", "-m", "x"))
        a.git("push", "-q", "origin", "flow/state")
        b.ok("sync")
        res = b.proc("status", "P")
        assert res.returncode == 1 and f"flow/state:{path}: above the" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        a.git("update-ref", "refs/heads/flow/state", a.git("commit-tree", a.git("rev-parse", old + "^{tree}"),
                                                          "-p", "flow/state", "-m", "back"))
        a.git("push", "-q", "origin", "flow/state")
