"""Format 2 (ADR 0011): execution follows the plan recorded in the state, not the branch a work
tree has checked out. Approving records plan.yaml (and config.yaml) in the state commit of the
approval; flowgit's own edits during execution amend it; with approvals off the state follows
the default branch's tip; a task's worktree edits the plan on the base branch; a recorded plan
that arrives by sync is read as a plan file is, and its commands need trust."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import Repo, init_repo

PLAN = """id: P
title: pinned
tasks:
  - {id: T1, title: one}
  - {id: T2, title: two}
  - {id: T3, title: three, depends_on: [T1]}
"""
STATE_PLAN = ".flow/plans/P/plan.yaml"


def flowgit(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """flowgit as a user runs it: a process, in a directory, no --repo."""
    full = {k: v for k, v in os.environ.items() if k != "FLOWGIT_REPO"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "flowgit", *args], cwd=cwd, capture_output=True,
                          text=True, env=full)


def set_approvals(r: Repo, text: str) -> None:
    cfg = r.path / ".flow" / "config.yaml"
    lines = cfg.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("approvals:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    lines[start:end] = [f"approvals: {text}"]
    cfg.write_text("\n".join(lines) + "\n")
    r.git("commit", "-q", "-m", "approvals", "--", ".flow/config.yaml")


def state_repo(path: Path, approvals: str | None = "{required: 1}") -> Repo:
    r = init_repo(path, "2")
    if approvals:
        set_approvals(r, approvals)
    return r


def approved(path: Path) -> Repo:
    r = state_repo(path)
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    return r


def blob(r: Repo, rev: str, path: str = STATE_PLAN) -> str:
    return r.git("rev-parse", f"{rev}:{path}")


def show(r: Repo, rev: str, path: str = STATE_PLAN) -> str:
    return r.git("show", f"{rev}:{path}")


def tasks(r: Repo) -> dict[str, str]:
    return {t["id"]: t["state"] for t in r.ok("status", "P", "--json").json["tasks"]}


def test_approval_records_the_plan_and_config_blobs_in_its_own_state_commit(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    assert blob(r, "flow/state") == blob(r, "main")  # the same bytes, the same blob
    assert blob(r, "flow/state", ".flow/config.yaml") == blob(r, "main", ".flow/config.yaml")
    # recorded by the commit that made the version accepted, beside its event
    added = r.git("log", "--format=%s", "--diff-filter=A", "flow/state", "--", STATE_PLAN).splitlines()
    assert added == ["flow(P): phase execute"]
    assert r.ok("status", "P", "--json").json["plan_source"] == f"flow/state:{STATE_PLAN}"


def test_a_branch_switch_changes_nothing_for_an_executing_plan(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    r.ok("claim", "P/T1", "--worker", "w1")
    before = tasks(r)
    # a branch from before the plan existed: no plan.yaml at all
    r.git("checkout", "-q", "-b", "old", "main~1")
    assert not (r.path / STATE_PLAN).exists()
    assert tasks(r) == before
    assert r.ok("plan", "list", "--json").json
    assert r.ok("next", "P", "--json").json["task"] == "P/T2"
    r.ok("done", "P/T1", "--worker", "w1")
    r.ok("claim", "P/T3", "--worker", "w1")
    line = r.ok("status", "P").out
    assert "plan.yaml on this branch differs from the approved version" in line
    assert "T3" in r.ok("plan", "show", "P").out
    res = r.proc("task", "add", "P", "T9", "--title", "nine")  # no plan here to edit
    assert res.returncode == 1 and "is not on this branch" in res.stderr and "Traceback" not in res.stderr
    assert r.git("status", "--porcelain") == ""
    # a branch whose plan.yaml has other tasks
    r.git("checkout", "-q", "-b", "other", "main")
    (r.path / STATE_PLAN).write_text(PLAN.replace("  - {id: T2, title: two}\n", "  - {id: X9, title: nine}\n"))
    r.git("commit", "-q", "-am", "another plan")
    assert set(tasks(r)) == {"T1", "T2", "T3"}
    assert r.run("claim", "P/X9", "--worker", "w2").code == 1  # no such task where it executes
    r.ok("claim", "P/T2", "--worker", "w2")
    out = r.ok("status", "P").out
    assert out.count("plan.yaml on this branch differs from the approved version") == 1
    # the hand edit reaches execution once approved again, as committed
    (r.path / STATE_PLAN).write_text((r.path / STATE_PLAN).read_text() + "  - {id: U1, title: uncommitted}\n")
    res = r.proc("approve", "P", "--reviewer", "rev")
    assert res.returncode == 1 and "uncommitted changes" in res.stderr
    r.git("checkout", "--", STATE_PLAN)
    r.ok("approve", "P", "--reviewer", "rev")
    assert blob(r, "flow/state") == blob(r, "other")
    assert "X9" in tasks(r) and "plan.yaml on this branch differs" not in r.ok("status", "P").out


def test_flowgit_edits_during_execution_amend_the_recorded_plan(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    r.ok("task", "add", "P", "T4", "--title", "four")
    assert "T4" in show(r, "flow/state") and "T4" in show(r, "main")
    assert blob(r, "flow/state") == blob(r, "main")
    r.ok("task", "edit", "P/T4", "--title", "four, renamed")
    assert "four, renamed" in show(r, "flow/state")
    r.ok("task", "remove", "P/T4")
    assert "T4" not in show(r, "flow/state")
    assert blob(r, "flow/state") == blob(r, "main")
    # an edit made on a branch whose plan.yaml differs lands on the approved version, not the branch's
    r.git("checkout", "-q", "-b", "side")
    (r.path / STATE_PLAN).write_text(PLAN.replace("title: one}", "title: one by hand}"))
    r.git("commit", "-q", "-am", "hand edit")
    r.ok("task", "add", "P", "T5", "--title", "five")
    recorded = show(r, "flow/state")
    assert "T5" in recorded and "by hand" not in recorded
    assert set(tasks(r)) == {"T1", "T2", "T3", "T5"}
    # an edit that overlaps the branch's own change is refused whole, in one line
    (r.path / STATE_PLAN).write_text((r.path / STATE_PLAN).read_text() + "  - {id: H1, title: by hand}\n")
    r.git("commit", "-q", "-am", "another hand edit")
    state_before, side_before = r.git("rev-parse", "flow/state"), r.git("rev-parse", "side")
    res = r.proc("task", "add", "P", "T6", "--title", "six")
    assert res.returncode == 1 and "differs from the approved version" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (r.git("rev-parse", "flow/state"), r.git("rev-parse", "side")) == (state_before, side_before)
    assert r.git("status", "--porcelain") == ""


def test_a_task_added_from_a_task_worktree_lands_on_the_base_branch_and_the_state(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    r.ok("claim", "P/T1", "--worker", "agent")
    wt = tmp_path / "task-T1"
    r.git("worktree", "add", "-q", "-b", "flow/P/T1", str(wt), "main")
    task_tip = r.git("rev-parse", "flow/P/T1")
    res = flowgit(wt, "task", "add", "P", "T7", "--title", "found while working",
                  env={"FLOWGIT_ACTOR": "agent"})
    assert res.returncode == 0, res.stderr
    assert r.git("rev-parse", "flow/P/T1") == task_tip  # the task branch is untouched
    assert "T7" not in (wt / STATE_PLAN).read_text()
    assert "T7" in show(r, "main") and "T7" in show(r, "flow/state")
    assert tasks(r)["T7"] == "ready"
    # and with FLOWGIT_REPO, as `run` sets it for its agents
    res = flowgit(wt, "task", "add", "P", "T8", "--title", "another",
                  env={"FLOWGIT_ACTOR": "agent", "FLOWGIT_REPO": str(r.path)})
    assert res.returncode == 0, res.stderr
    assert r.git("rev-parse", "flow/P/T1") == task_tip
    assert "T8" in show(r, "main") and "T8" in show(r, "flow/state")


def test_approvals_off_follows_the_default_branch_from_a_linked_worktree(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals=None)
    r.plan("P", PLAN)
    r.ok("claim", "P/T1", "--worker", "w1")  # the first claim starts execution: recorded
    assert blob(r, "flow/state") == blob(r, "main")
    wt = tmp_path / "feature"
    r.git("worktree", "add", "-q", "-b", "feature", str(wt), "main")
    (wt / STATE_PLAN).write_text(PLAN + "  - {id: F1, title: feature only}\n")
    subprocess.run(["git", "commit", "-q", "-am", "feature plan"], cwd=wt, check=True)
    res = flowgit(wt, "status", "P", "--json")
    import json

    data = json.loads(res.stdout)
    assert {t["id"] for t in data["tasks"]} == {"T1", "T2", "T3"}
    assert data["plan_source"] == f"main:{STATE_PLAN}"
    assert "differs from the default branch's version" in data["plan_differs"]
    assert flowgit(wt, "claim", "P/F1", "--worker", "w2").returncode == 1
    res = flowgit(wt, "claim", "P/T2", "--worker", "w2")
    assert res.returncode == 0, res.stderr
    # the default branch moves: the linked worktree follows its tip, and the state records it
    (r.path / STATE_PLAN).write_text(PLAN + "  - {id: M1, title: on main}\n")
    r.git("commit", "-q", "-am", "main plan")
    data = json.loads(flowgit(wt, "status", "P", "--json").stdout)
    assert {t["id"] for t in data["tasks"]} == {"T1", "T2", "T3", "M1"}
    assert flowgit(wt, "claim", "P/M1", "--worker", "w2").returncode == 0
    assert blob(r, "flow/state") == blob(r, "main")


def test_the_default_branch_rule(tmp_path: Path) -> None:
    """approvals.branch, else the remote's HEAD, else main, else master, else this clone's git
    config flowgit.defaultBranch (which the first `init` sets to its branch when no rule names
    one), never the branch the main work tree happens to have checked out."""
    from flowgit.store.planpin import default_branch
    from flowgit.store.repo import FlowRepo

    path = tmp_path / "trunk"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(path)], check=True)
    r = Repo(path)
    r.git("config", "user.email", "t@example.com")
    r.git("config", "user.name", "T")
    r.git("commit", "-q", "--allow-empty", "-m", "initial")
    r.ok("init", "--format", "2")
    wt = tmp_path / "wt"
    r.git("worktree", "add", "-q", "-b", "topic", str(wt))
    assert default_branch(FlowRepo(wt)) == "trunk"  # flowgit.defaultBranch, set by init
    r.git("config", "--unset", "flowgit.defaultBranch")
    linked = FlowRepo(wt)
    assert default_branch(linked, linked.work_config) is None  # trunk is only the main work tree's branch
    res = r.run("status")
    assert res.code == 1 and "git config flowgit.defaultBranch" in res.err, res.err
    r.git("config", "flowgit.defaultBranch", "trunk")
    r.git("branch", "master")
    assert default_branch(FlowRepo(wt)) == "master"
    r.git("branch", "main")
    assert default_branch(FlowRepo(wt)) == "main"
    r.git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    assert default_branch(FlowRepo(wt)) == "trunk"
    set_approvals(r, "{required: 0, branch: topic}")
    assert default_branch(FlowRepo(r.path)) == "topic"
    # a pulled config's branch name never becomes a path under .git/
    from flowgit.store.planpin import branch_tip

    assert branch_tip(FlowRepo(r.path), "topic") == r.git("rev-parse", "topic")
    for name in ("../../config", "../HEAD", "/etc/passwd", "-x", "a b"):
        assert branch_tip(FlowRepo(r.path), name) is None


def synced_pair(tmp_path: Path) -> tuple[Repo, Repo]:
    a = approved(tmp_path / "a")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(a.path), str(bare)], check=True)
    a.git("remote", "add", "origin", str(bare))
    a.git("fetch", "-q", "origin")
    subprocess.run(["git", "clone", "-q", str(bare), str(tmp_path / "b")], check=True)
    b = Repo(tmp_path / "b")
    b.git("config", "user.email", "b@example.com")
    b.git("config", "user.name", "B")
    b.ok("sync")
    return a, b


def forge(r: Repo, tmp_path: Path, text: str) -> None:
    """A hostile teammate's state commit that sets the recorded plan by hand and pushes it."""
    blob_id = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=text,
                             capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob_id},{STATE_PLAN}"],
                   cwd=r.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m", "x"))
    r.git("push", "-q", "origin", "flow/state")


def test_an_unreadable_recorded_plan_from_a_sync_is_refused_in_one_line(tmp_path: Path) -> None:
    a, b = synced_pair(tmp_path)
    forge(a, tmp_path, "id: P\ntitle: broken\ntasks: 7\n")
    b.ok("sync")
    for args in (("claim", "P/T1", "--worker", "w"), ("status", "P"), ("next", "P")):
        res = b.proc(*args)
        assert res.returncode == 1, (args, res.stderr)
        assert f"flow/state:{STATE_PLAN}" in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_command_changed_in_a_synced_plan_needs_trust(tmp_path: Path) -> None:
    import json

    a, b = synced_pair(tmp_path)
    b.ok("trust", "P")
    listed = json.loads(b.proc("--json", "trust", "P", "--list").stdout)
    assert [p["status"] for p in listed["plans"]] == ["trusted"]
    hostile = PLAN.replace("{id: T2, title: two}", "{id: T2, title: two, run: [sh, -c, 'echo owned']}")
    forge(a, tmp_path, hostile)
    b.ok("sync")
    assert "T2" in tasks(b)
    assert not (b.path / STATE_PLAN).read_text().count("owned")  # the work tree never changed
    listed = json.loads(b.proc("--json", "trust", "P", "--list").stdout)
    # what the recorded plan runs, and its text (an agent's prompt), are not trusted by a sync
    assert [(c["argv"], c["status"]) for c in listed["commands"]] == [(["sh", "-c", "echo owned"], "new")]
    assert [p["status"] for p in listed["plans"]] != ["trusted"]
    before = b.git("rev-parse", "flow/state")
    res = b.proc("run", "P", "-n", "1")  # refused before anything is claimed or run
    assert res.returncode == 1 and "echo owned" in res.stderr and "Traceback" not in res.stderr
    assert b.git("rev-parse", "flow/state") == before


def test_reset_on_change_follows_the_default_branch_not_a_branch_switch(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals="{required: 1, reset_on_change: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    # flowgit's own edit during execution is an amendment, not a change to review
    r.ok("task", "add", "P", "T4", "--title", "four")
    r.ok("advance", "P")
    data = r.ok("status", "P", "--json").json
    assert data["phase"] == "execute" and data["approval_stale"] is False
    r.ok("claim", "P/T4", "--worker", "w0")
    # a feature branch changes the plan: the approved version still executes
    r.git("checkout", "-q", "-b", "feature")
    (r.path / STATE_PLAN).write_text((r.path / STATE_PLAN).read_text() + "  - {id: F1, title: feature}\n")
    r.git("commit", "-q", "-am", "feature plan")
    r.ok("advance", "P")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    r.ok("claim", "P/T1", "--worker", "w1")
    # the change merged into the default branch sends it back to review
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--ff-only", "feature")
    r.ok("advance", "P")
    data = r.ok("status", "P", "--json").json
    assert data["phase"] == "plan_review" and "F1" not in {t["id"] for t in data["tasks"]}
    # the old approval does not count for the new version: no claim moves it back to execute
    assert r.run("claim", "P/T2", "--worker", "w1").code != 0
    assert r.ok("status", "P", "--json").json["phase"] == "plan_review"
    r.ok("approve", "P", "--reviewer", "rev")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    assert blob(r, "flow/state") == blob(r, "main") and "F1" in tasks(r)


def test_via_merge_execution_follows_the_plan_merged_into_the_branch(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals="{required: 1, via: merge}")
    r.git("checkout", "-q", "-b", "plan-p")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "plan-p")
    r.ok("advance", "P")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    assert blob(r, "flow/state") == blob(r, "main")
    # a pull request's branch changes the plan: nothing changes until it is merged
    r.git("checkout", "-q", "-b", "more")
    (r.path / STATE_PLAN).write_text(PLAN + "  - {id: F1, title: in review}\n")
    r.git("commit", "-q", "-am", "more work")
    assert set(tasks(r)) == {"T1", "T2", "T3"}
    r.ok("claim", "P/T1", "--worker", "w1")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge pull request #2", "more")
    r.git("checkout", "-q", "more")  # even from the branch: the merge is what counts
    assert set(tasks(r)) == {"T1", "T2", "T3", "F1"}
    r.ok("claim", "P/F1", "--worker", "w1")
    assert blob(r, "flow/state") == blob(r, "main")


def test_requested_changes_amend_the_recorded_plan(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo")
    r.plan("P", PLAN + "checkpoints:\n  - {id: CP, title: reviewed, after: [T1]}\n")
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    r.ok("claim", "P/T1", "--worker", "w1")
    r.ok("done", "P/T1", "--worker", "w1")
    r.ok("advance", "P")
    assert r.ok("status", "P", "--json").json["phase"] == "checkpoint"
    r.ok("checkpoint", "P", "CP", "--request-changes", "more tests", "--reviewer", "rev")
    assert blob(r, "flow/state") == blob(r, "main") and "more tests" in show(r, "flow/state")
    data = r.ok("status", "P", "--json").json
    assert len(data["tasks"]) == 4 and data["approval_stale"] is False and data["plan_differs"] is None


def test_every_work_tree_sees_an_amendment_made_in_another(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    wt = tmp_path / "other"
    r.git("worktree", "add", "-q", "-b", "other", str(wt), "main~1")  # a branch without the plan
    other = Repo(wt)
    assert set(tasks(other)) == {"T1", "T2", "T3"}  # its cache now holds this state commit
    r.ok("task", "add", "P", "T4", "--title", "four")
    assert set(tasks(other)) == {"T1", "T2", "T3", "T4"}
    r.ok("task", "remove", "P/T4")
    assert set(tasks(other)) == {"T1", "T2", "T3"}


def test_a_task_added_by_a_running_task_lands_on_the_base_branch_and_the_state(tmp_path: Path) -> None:
    """`run` gives its executors FLOWGIT_REPO and a pool worktree on flow/P/T1: what the task adds
    to the plan is committed on the base branch and recorded, never on the task's branch."""
    adder = ("import pathlib, subprocess, sys; pathlib.Path('t1.txt').write_text('x'); "
             "sys.exit(subprocess.run([sys.executable, '-m', 'flowgit', 'task', 'add', 'P', 'T9', "
             "'--title', 'found by T1']).returncode)")
    r = state_repo(tmp_path / "repo")
    r.plan("P", f"id: P\ntitle: run\ntasks:\n  - id: T1\n    title: one\n    run: [{sys.executable}, -c, \"{adder}\"]\n")
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    res = flowgit(r.path, "run", "P", "-n", "1")
    assert "P/T1 done" in res.stdout + res.stderr, res.stdout + res.stderr
    assert "id: T9" in show(r, "main") and "id: T9" in show(r, "flow/state")
    merge = r.git("log", "--merges", "-1", "--format=%H", "main")
    work = r.git("rev-parse", f"{merge}^2")  # the task branch's tip, as it was merged
    assert "id: T9" not in show(r, work)
    assert r.git("log", "--format=%s", f"{merge}^1..{work}") == "flow(P/T1): work"
    assert "T9" in tasks(r)


def test_a_change_under_execution_needs_as_many_approvals_as_the_plan_did(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", "{required: 2}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev1")
    r.ok("approve", "P", "--reviewer", "rev2")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    first = blob(r, "flow/state")
    (r.path / STATE_PLAN).write_text((r.path / STATE_PLAN).read_text() + "  - {id: X1, title: extra}\n")
    r.git("commit", "-q", "-am", "a task more")
    r.ok("approve", "P", "--reviewer", "rev1")
    assert blob(r, "flow/state") == first and "X1" not in tasks(r)  # one of two: not yet
    r.ok("approve", "P", "--reviewer", "rev1")  # the same reviewer again counts once
    assert blob(r, "flow/state") == first
    r.ok("approve", "P", "--reviewer", "rev2")
    assert blob(r, "flow/state") == blob(r, "main") and "X1" in tasks(r)
    r.ok("validate")
