"""Merging branches that both advanced the same plan: real `git merge` through the event-log
merge driver registered by `init`, no conflict, the same folded state whichever way round,
and a fresh clone set up by `init` without a new commit (issue 5, "Merges")."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flowgit.formats.jsonlmerge import event_sort_key
from helpers import WEBHOOKS, Repo, git, status

SHARED = """\
id: shared
title: Two branches at once
tasks:
  - {id: T1, title: One}
  - {id: T2, title: Two}
  - {id: T3, title: Shared and long running}
  - {id: T4, title: After both, depends_on: [T1, T2]}
checkpoints:
  - {id: CP, title: Gate, after: [T4]}
"""


def flow_files(repo: Repo) -> dict[str, bytes]:
    """Every tracked file under .flow/ at HEAD, by path."""
    names = repo.git("ls-files", "-z", ".flow").split("\0")
    return {n: subprocess.run(["git", "show", f"HEAD:{n}"], cwd=repo.path, check=True,
                              capture_output=True).stdout for n in names if n}


def assert_canonical(repo: Repo) -> None:
    """Every event log: no duplicate id, sorted by (clock, actor, id), every line terminated."""
    logs = sorted((repo.path / ".flow" / "plans").rglob("*.jsonl"))
    assert logs
    for path in logs:
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), path
        assert b"<<<<<<<" not in data and b">>>>>>>" not in data, path
        events = [json.loads(line) for line in data.splitlines() if line.strip()]
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), f"duplicate event ids in {path}"
        keys = [event_sort_key(e) for e in events]
        assert keys == sorted(keys), f"{path} is not in (clock, actor, id) order"


def merge(repo: Repo, into: str, other: str, name: str) -> None:
    repo.git("checkout", "-q", "-b", name, into)
    proc = subprocess.run(["git", "merge", "--no-edit", "-m", f"merge {other} into {into}", other],
                          cwd=repo.path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git merge {other} into {into} failed:\n{proc.stdout}\n{proc.stderr}"
    assert repo.git("status", "--porcelain") == "", "the merge left the work tree dirty"
    assert len(repo.git("rev-list", "--parents", "-n1", "HEAD").split()) == 3, "not a real merge"


@pytest.fixture
def forked(repo: Repo) -> Repo:
    """main: plan `shared` executing, T3 claimed by w3. Branch A and branch B then both advance
    the plan (their own tasks, the same task T3's log, and the plan-level log)."""
    repo.plan("shared", SHARED)
    repo.ok("claim", "shared/T3", "--worker", "w3")
    assert repo.git("config", "--get", "merge.flowgit-jsonl.driver")
    assert "merge=flowgit-jsonl" in (repo.path / ".gitattributes").read_text()

    repo.git("checkout", "-q", "-b", "A", "main")
    repo.ok("claim", "shared/T1", "--worker", "a")
    repo.ok("start", "shared/T1", "--worker", "a")
    repo.ok("heartbeat", "shared/T3", "--worker", "w3")
    repo.ok("done", "shared/T1", "--worker", "a", "--note", "from A")
    repo.ok("halt", "shared", "--reason", "pause on A")
    repo.ok("resume", "shared")

    repo.git("checkout", "-q", "-b", "B", "main")
    repo.ok("claim", "shared/T2", "--worker", "b")
    repo.ok("heartbeat", "shared/T3", "--worker", "w3")
    repo.ok("heartbeat", "shared/T3", "--worker", "w3")
    repo.ok("done", "shared/T2", "--worker", "b", "--files-modified", "x.py")
    repo.ok("halt", "shared", "--reason", "pause on B")
    repo.ok("resume", "shared")
    repo.ok("done", "shared/T3", "--worker", "w3")

    # Both sides really touched the same logs (otherwise the driver is never exercised).
    changed_a = set(repo.git("diff", "--name-only", "main", "A").split())
    changed_b = set(repo.git("diff", "--name-only", "main", "B").split())
    both = changed_a & changed_b
    assert ".flow/plans/shared/events/T3.jsonl" in both
    assert ".flow/plans/shared/events/_plan.jsonl" in both
    return repo


@pytest.mark.format1
def test_both_directions_merge_cleanly_and_fold_the_same(forked: Repo) -> None:
    repo = forked
    merge(repo, "A", "B", "A-then-B")
    assert_canonical(repo)
    st_ab = status(repo, "shared")
    files_ab = flow_files(repo)

    merge(repo, "B", "A", "B-then-A")
    assert_canonical(repo)
    st_ba = status(repo, "shared")
    files_ba = flow_files(repo)

    assert st_ab == st_ba
    # Canonical order: the merged logs are byte-identical whichever way round.
    assert files_ab == files_ba

    states = {t["id"]: t["state"] for t in st_ab["tasks"]}
    assert states["T1"] == "done" and states["T2"] == "done" and states["T3"] == "done"
    assert states["T4"] == "ready"
    assert st_ab["phase"] == "execute"

    # Nothing lost: every event of either side is in the merge, exactly once.
    for branch in ("A", "B"):
        for path in (".flow/plans/shared/events/T3.jsonl", ".flow/plans/shared/events/_plan.jsonl"):
            side = {json.loads(line)["id"] for line in repo.git("show", f"{branch}:{path}").splitlines()}
            merged = {json.loads(line)["id"] for line in files_ab[path].decode().splitlines()}
            assert side <= merged, f"{branch}:{path} lost events in the merge"
    t3 = [json.loads(line) for line in files_ab[".flow/plans/shared/events/T3.jsonl"].decode().splitlines()]
    assert [e["type"] for e in t3].count("task.heartbeat") == 3
    plan_log = [json.loads(line) for line in files_ab[".flow/plans/shared/events/_plan.jsonl"].decode().splitlines()]
    reasons = [e["data"].get("reason") for e in plan_log if e["type"] == "plan.phase"]
    assert "pause on A" in reasons and "pause on B" in reasons

    # The merged state is usable: the task that waited on both sides can go on.
    claimed = repo.ok("claim", "shared", "--worker", "c", "--json").json
    assert claimed["task"] == "shared/T4"


@pytest.mark.format1
def test_merge_of_merges_is_stable(forked: Repo) -> None:
    """Merging the two merge results (criss-cross) changes nothing and stays canonical."""
    repo = forked
    merge(repo, "A", "B", "AB")
    merge(repo, "B", "A", "BA")
    before = flow_files(repo)
    merge(repo, "BA", "AB", "BA-AB")
    assert_canonical(repo)
    assert flow_files(repo) == before


@pytest.mark.format1
def test_first_claims_on_both_branches_merge(repo: Repo) -> None:
    """A plan still in draft at the fork: each branch's first claim moves it to execute (a
    plan-level event on both sides) and the merge folds to one state either way."""
    repo.plan("webhooks", WEBHOOKS)
    repo.git("checkout", "-q", "-b", "A")
    assert repo.ok("claim", "webhooks", "--worker", "a", "--json").json["task"] == "webhooks/T-WH-01"
    repo.ok("done", "webhooks/T-WH-01", "--worker", "a")
    repo.git("checkout", "-q", "-b", "B", "main")
    assert repo.ok("claim", "webhooks", "--worker", "b", "--json").json["task"] == "webhooks/T-WH-01"
    repo.ok("done", "webhooks/T-WH-01", "--worker", "b")
    merge(repo, "A", "B", "AB")
    assert_canonical(repo)
    st_ab, files_ab = status(repo, "webhooks"), flow_files(repo)
    merge(repo, "B", "A", "BA")
    assert_canonical(repo)
    assert status(repo, "webhooks") == st_ab
    assert flow_files(repo) == files_ab
    states = {t["id"]: t["state"] for t in st_ab["tasks"]}
    assert states["T-WH-01"] == "done" and states["T-WH-02"] == "ready"


@pytest.mark.format1
def test_without_the_driver_the_same_merge_conflicts(forked: Repo) -> None:
    """Control: the driver is what makes it clean (git's own text merge conflicts)."""
    repo = forked
    repo.git("config", "--remove-section", "merge.flowgit-jsonl")
    repo.git("checkout", "-q", "-b", "plain", "A")
    proc = subprocess.run(["git", "merge", "--no-edit", "B"], cwd=repo.path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "CONFLICT" in proc.stdout, proc.stdout + proc.stderr


# ----- a fresh clone -----------------------------------------------------------------------------


@pytest.mark.format1
def test_init_in_a_fresh_clone_sets_up_without_a_commit(repo: Repo, tmp_path: Path) -> None:
    repo.plan("webhooks", WEBHOOKS)
    clone_path = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.path), str(clone_path))
    clone = Repo(clone_path)
    git(clone_path, "config", "user.email", "clone@example.com")
    git(clone_path, "config", "user.name", "Clone")
    assert subprocess.run(["git", "config", "--get", "merge.flowgit-jsonl.driver"], cwd=clone_path,
                          capture_output=True, check=False).returncode == 1, "a clone does not carry git config"
    head = clone.git("rev-parse", "HEAD")
    count = clone.commits()

    res = clone.ok("init", "--json").json
    assert res["commit"] is None and res["created"] == []
    assert "merge driver" in res["configured"]
    assert clone.git("rev-parse", "HEAD") == head
    assert clone.commits() == count
    assert clone.git("status", "--porcelain", "--untracked-files=all") == ""
    driver = clone.git("config", "--get", "merge.flowgit-jsonl.driver")
    assert "merge-driver" in driver and "%O" in driver and "%A" in driver and "%B" in driver

    # Twice is fine: nothing more to set up, still no commit.
    again = clone.ok("init", "--json").json
    assert again["commit"] is None and again["configured"] == []
    assert clone.commits() == count

    # The clone's driver works: two branches in the clone advancing the same log merge cleanly.
    clone.ok("claim", "webhooks/T-WH-01", "--worker", "x")
    clone.git("checkout", "-q", "-b", "side")
    clone.ok("heartbeat", "webhooks/T-WH-01", "--worker", "x")
    clone.git("checkout", "-q", "main")
    clone.ok("done", "webhooks/T-WH-01", "--worker", "x")
    merged = subprocess.run(["git", "merge", "--no-edit", "side"], cwd=clone_path,
                            capture_output=True, text=True, check=False)
    assert merged.returncode == 0, merged.stderr
    assert_canonical(clone)
    states = {t["id"]: t["state"] for t in clone.ok("status", "webhooks", "--json").json["tasks"]}
    assert states["T-WH-01"] == "done"


def test_init_in_a_fresh_clone_installs_hooks(repo: Repo, tmp_path: Path) -> None:
    pytest.importorskip("flowgit.commands.hooks")
    clone_path = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.path), str(clone_path))
    clone = Repo(clone_path)
    hook = clone_path / ".git" / "hooks" / "pre-commit"
    assert not hook.exists()
    count = clone.commits()
    clone.ok("init")
    assert hook.exists() and hook.stat().st_mode & 0o111
    assert "flowgit" in hook.read_text()
    assert clone.commits() == count
    assert clone.git("status", "--porcelain", "--untracked-files=all") == ""


# ----- the clock the canonical order is built on -------------------------------------------------


