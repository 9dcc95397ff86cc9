"""Format 2 (ADR 0011): execution follows the config approved with a plan and recorded in the
state (approvals on), or the default branch's (approvals off), never the config of the branch a
work tree has checked out. A config that arrives through the state from another clone is checked
as a pulled one is, and can make review stricter, never weaker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from helpers import Repo
from test_state_plan import PLAN, approved, flowgit, state_repo, synced_pair

CONFIG = ".flow/config.yaml"


def edit_config(path: Path, old: str, new: str, commit: bool = True) -> None:
    cfg = path / CONFIG
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new, 1))
    if commit:
        subprocess.run(["git", "commit", "-q", "-m", "config", "--", CONFIG], cwd=path, check=True)


def lease(res: subprocess.CompletedProcess[str]) -> float:
    """Seconds from now until the lease a `claim --json` took ends."""
    assert res.returncode == 0, res.stderr
    until = json.loads(res.stdout)["lease_until"]
    end = datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (end - datetime.now(timezone.utc)).total_seconds()


def forge_config(r: Repo, tmp_path: Path, text: str) -> None:
    """A hostile teammate's state commit that sets the recorded config by hand and pushes it."""
    blob_id = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=text,
                             capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob_id},{CONFIG}"],
                   cwd=r.path, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m", "x"))
    r.git("push", "-q", "origin", "flow/state")


def test_a_branch_switch_changes_no_setting_of_an_executing_plan(tmp_path: Path) -> None:
    r = approved(tmp_path / "repo")
    assert r.git("rev-parse", f"flow/state:{CONFIG}") == r.git("rev-parse", f"main:{CONFIG}")
    r.git("checkout", "-q", "-b", "feature")
    edit_config(r.path, "lease_seconds: 900", "lease_seconds: 60")
    edit_config(r.path, "max_attempts: 5", "max_attempts: 1")
    assert lease(flowgit(r.path, "--json", "claim", "P/T1", "--worker", "w1")) > 800
    # retry follows the approved config (5 attempts): a failure leaves the task to retry
    assert flowgit(r.path, "fail", "P/T1", "--worker", "w1", "--error", "x", "--retry").returncode == 0
    assert r.ok("status", "P", "--json").json["counts"].get("failed", 0) == 0
    data = r.ok("status", "P", "--json").json
    assert data["config_differs"].startswith(".flow/config.yaml on this branch differs from the approved config")
    assert len(data["config_differs"].splitlines()) == 1
    res = flowgit(r.path, "status", "P")
    assert "differs from the approved config" in res.stdout
    # approving again records this branch's config: the next claim follows it
    r.ok("approve", "P", "--reviewer", "rev")
    assert r.git("rev-parse", f"flow/state:{CONFIG}") == r.git("rev-parse", f"feature:{CONFIG}")
    assert lease(flowgit(r.path, "--json", "claim", "P/T2", "--worker", "w1")) < 120
    assert r.ok("status", "P", "--json").json["config_differs"] is None
    # and back on main, whose config never changed, the recorded one still runs
    r.git("checkout", "-q", "main")
    r.ok("release", "P/T2", "--worker", "w1")
    assert lease(flowgit(r.path, "--json", "claim", "P/T2", "--worker", "w1")) < 120


def test_run_uses_the_approved_executor_not_the_branch_one(tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    r = state_repo(tmp_path / "repo")
    def executor(word: str) -> str:
        code = f"open({str(out)!r}, 'a').write({word!r})"
        return f"executors:\n  mark: {{argv: [{sys.executable}, -c, \"{code}\"]}}\n"
    edit_config(r.path, "executors: {}\n", executor("approved"))
    edit_config(r.path, "default_executor: shell", "default_executor: mark")
    r.plan("P", "id: P\ntitle: run\ntasks:\n  - {id: T1, title: one}\n")
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    r.ok("trust")
    r.git("checkout", "-q", "-b", "feature")
    edit_config(r.path, executor("approved"), executor("branch"))
    res = flowgit(r.path, "run", "P", "-n", "1")
    assert "P/T1 done" in res.stdout + res.stderr, res.stdout + res.stderr
    assert out.read_text() == "approved"


def test_a_synced_config_that_does_not_read_is_refused_in_one_line(tmp_path: Path) -> None:
    a, b = synced_pair(tmp_path)
    forge_config(a, tmp_path, "version: 2\nlease_seconds: soon\n")
    b.ok("sync")
    for args in (("claim", "P/T1", "--worker", "w"), ("status", "P"), ("next", "P")):
        res = b.proc(*args)
        assert res.returncode == 1, (args, res.stderr)
        assert f"flow/state:{CONFIG}" in res.stderr and "lease_seconds" in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_synced_config_naming_a_new_command_needs_trust(tmp_path: Path) -> None:
    a, b = synced_pair(tmp_path)
    b.ok("trust")
    text = (a.path / CONFIG).read_text().replace(
        "executors: {}", "executors:\n  owned: {argv: [sh, -c, 'echo owned']}").replace(
        "default_executor: shell", "default_executor: owned")
    forge_config(a, tmp_path, text)
    b.ok("sync")
    assert "owned" not in (b.path / CONFIG).read_text()  # the work tree never changed
    listed = json.loads(b.proc("--json", "trust", "--list").stdout)
    assert (["sh", "-c", "echo owned"], "new") in [(c["argv"], c["status"]) for c in listed["commands"]]
    before = b.git("rev-parse", "flow/state")
    res = b.proc("run", "P", "-n", "1")  # refused before anything is claimed or run
    assert res.returncode == 1 and "echo owned" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert b.git("rev-parse", "flow/state") == before


def test_a_synced_config_cannot_turn_review_off(tmp_path: Path) -> None:
    a, b = synced_pair(tmp_path)
    for weaker in ("approvals: {required: 0}", "approvals: {required: 1, auto_approve: true}",
                   "approvals: {required: 1, via: merge}"):
        a.ok("sync")  # b's sync pushed a merge: build on it
        text = (a.path / CONFIG).read_text()
        start = text.index("approvals:")
        end = text.index("retry:")
        forge_config(a, tmp_path, text[:start] + weaker + "\n" + text[end:])
        b.ok("sync")
        b.plan("Q", PLAN.replace("id: P", "id: Q"))
        res = b.proc("claim", "Q/T1", "--worker", "w")
        assert res.returncode != 0, (weaker, res.stdout)
        data = b.ok("status", "Q", "--json").json
        assert data["phase"] in ("draft", "plan_review"), weaker
        b.git("rm", "-q", "-r", ".flow/plans/Q")
        b.git("commit", "-q", "-m", "drop Q")


def test_approvals_off_follows_the_default_branch_config_from_a_linked_worktree(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals=None)
    r.plan("P", PLAN + "  - {id: T4, title: four}\n")
    r.ok("claim", "P/T1", "--worker", "w1")
    wt = tmp_path / "feature"
    r.git("worktree", "add", "-q", "-b", "feature", str(wt), "main")
    edit_config(wt, "lease_seconds: 900", "lease_seconds: 60")
    assert lease(flowgit(wt, "--json", "claim", "P/T2", "--worker", "w2")) > 800
    data = json.loads(flowgit(wt, "status", "P", "--json").stdout)
    assert "differs from the default branch's config" in data["config_differs"]
    assert "merge it into main" in data["config_differs"]
    # the default branch moves: the linked worktree follows its tip
    edit_config(r.path, "lease_seconds: 900", "lease_seconds: 120")
    assert 100 < lease(flowgit(wt, "--json", "claim", "P/T4", "--worker", "w2")) < 130
    # the main work tree reads its own file (uncommitted edits included, as in format 1)
    r.ok("done", "P/T1", "--worker", "w1")
    edit_config(r.path, "lease_seconds: 120", "lease_seconds: 200", commit=False)
    assert 180 < lease(flowgit(r.path, "--json", "claim", "P/T3", "--worker", "w1")) < 210
    assert r.ok("status", "P", "--json").json["config_differs"] is None


def test_a_state_branch_of_another_name_holding_the_approved_config_is_no_code_branch(tmp_path: Path) -> None:
    """The state tree holds the config approved with a plan: a `state.branch` other than the
    default is still told from a code branch (test_option_injection: `state.branch: main` stays refused)."""
    r = state_repo(tmp_path / "repo")
    edit_config(r.path, "version: 2", "version: 2\nstate: {branch: audit/state}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    assert r.git("rev-parse", f"audit/state:{CONFIG}") == r.git("rev-parse", f"main:{CONFIG}")
    r.ok("claim", "P/T1", "--worker", "w1")
    r.ok("done", "P/T1", "--worker", "w1")
    assert tasks_done(r) == ["T1"]


def tasks_done(r: Repo) -> list[str]:
    return [t["id"] for t in r.ok("status", "P", "--json").json["tasks"] if t["state"] == "done"]
