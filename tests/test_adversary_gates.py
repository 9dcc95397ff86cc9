"""The adversary's open findings of the third session (note3): what a hostile teammate who can
push any branch, and `flow/state` itself, can make a reviewer's clone do. Each case runs real
clones of one bare remote, the way the attack arrives: by `flowgit sync` or `git pull`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import Repo, init_repo
from test_state_plan import PLAN, STATE_PLAN, set_approvals, state_repo

from flowgit.core.events import make_event


def clone(bare: Path, path: Path, who: str) -> Repo:
    subprocess.run(["git", "clone", "-q", str(bare), str(path)], check=True)
    r = Repo(path)
    r.git("config", "user.email", f"{who}@example.com")
    r.git("config", "user.name", who)
    return r


def published(r: Repo, tmp_path: Path) -> tuple[Path, Repo]:
    """`r` pushed to a bare remote (code and state), and the attacker's clone of it."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(r.path), str(bare)], check=True)
    r.git("remote", "add", "origin", str(bare))
    r.git("fetch", "-q", "origin")
    r.git("remote", "set-head", "origin", "main")
    attacker = clone(bare, tmp_path / "attacker", "mallory")
    attacker.ok("sync")
    return bare, attacker


def forged_line(plan: str, type_: str, data: dict[str, object], clock: int = 50) -> str:
    ev = make_event(type_, plan, None, "mallory", clock, data, time.time())
    return ev.to_line()


def push_state_file(r: Repo, tmp_path: Path, path: str, content: str, push: bool = True) -> None:
    """A hand-made, unsigned state commit that sets one path of the state tree, pushed."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, input=content,
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "forge-index")}
    subprocess.run(["git", "read-tree", "flow/state"], cwd=r.path, env=env, check=True)
    subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], cwd=r.path, env=env,
                   check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=r.path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    r.git("update-ref", "refs/heads/flow/state", r.git("commit-tree", tree, "-p", "flow/state", "-m",
                                                       "flow(P): approved"))
    if push:
        r.git("push", "-q", "origin", "flow/state")


def push_state_event(r: Repo, tmp_path: Path, plan: str, line: str, stream: str = "_plan",
                     push: bool = True) -> None:
    """A hand-made state commit that appends `line` to one of the plan's logs."""
    from flowgit.store.state import log_path

    path = log_path(plan, stream)
    push_state_file(r, tmp_path, path, r.git("show", f"flow/state:{path}") + "\n" + line, push)


def plan_hash(r: Repo, rev: str = "main") -> str:
    data = subprocess.run(["git", "show", f"{rev}:{STATE_PLAN}"], cwd=r.path, capture_output=True,
                          check=True).stdout
    return hashlib.sha256(data).hexdigest()


def refused_to_start(r: Repo, plan: str = "P") -> None:
    """claim, next and run all refuse: no approval that counts (`next` finds nothing to do, as it
    does for a plan in review)."""
    for args, code in ((("claim", f"{plan}/T1", "--worker", "w"), 1), (("claim", plan, "--worker", "w"), 1),
                       (("next", plan), 3), (("run", plan, "-n", "1", "--executor", "shell"), 1)):
        res = r.proc(*args)
        assert res.returncode == code, (args, res.returncode, res.stdout, res.stderr)
        assert "approval" in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


# ----- finding 1: a forged plan.phase event is no approval -------------------------------------------

@pytest.mark.parametrize("approvals", ["{required: 1, signed: true}", "{via: merge}"])
def test_a_forged_phase_event_on_the_state_branch_starts_nothing(tmp_path: Path, approvals: str) -> None:
    maintainer = state_repo(tmp_path / "maintainer", approvals=approvals)
    maintainer.plan("P", PLAN)  # committed straight to main: with via: merge, no merge approved it
    maintainer.ok("submit", "P")
    _, mallory = published(maintainer, tmp_path)
    push_state_event(mallory, tmp_path, "P", forged_line("P", "plan.phase", {
        "to": "execute", "from": "plan_review", "reason": "approved", "plan_hash": plan_hash(mallory)}))
    maintainer.ok("sync")
    assert maintainer.ok("status", "P", "--json").json["phase"] == "execute"  # the forged line moved it
    before = maintainer.git("rev-parse", "flow/state")
    refused_to_start(maintainer)
    assert maintainer.git("rev-parse", "flow/state") == before  # nothing written
    st = maintainer.ok("status", "P", "--json").json
    assert st["ready"] == [] or "approval" in json.dumps(st)


def test_a_forged_phase_event_merged_in_a_format1_branch_starts_nothing(tmp_path: Path) -> None:
    r = init_repo(tmp_path / "repo", "1")
    set_approvals(r, "{required: 1, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.git("checkout", "-q", "-b", "evil")
    log = r.path / ".flow/plans/P/events/_plan.jsonl"
    with open(log, "a") as f:
        f.write(forged_line("P", "plan.phase", {"to": "execute", "from": "plan_review", "reason": "approved",
                                                "plan_hash": plan_hash(r, "HEAD")}))
    r.git("commit", "-q", "--no-verify", "-am", "approved")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "merge evil", "evil")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    refused_to_start(r)


def test_mcp_claim_refuses_a_plan_a_forged_phase_event_moved(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    import anyio
    from helpers import PY
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    r = state_repo(tmp_path / "repo", approvals="{required: 1, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    push_state_event(r, tmp_path, "P", forged_line("P", "plan.phase", {
        "to": "execute", "from": "plan_review", "reason": "approved", "plan_hash": plan_hash(r)}), push=False)
    params = StdioServerParameters(command=PY, args=["-m", "flowgit", "--repo", str(r.path), "mcp"],
                                   env=dict(os.environ), cwd=str(r.path))
    said: list[str] = []

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for target in ("P/T1", "P"):
                        res = await session.call_tool("claim", {"worker": "w", "target": target})
                        assert res.is_error
                        said.append(res.content[0].text)  # type: ignore[union-attr]

    anyio.run(main)
    assert all("approval" in text for text in said), said
    assert r.ok("status", "P", "--json").json["counts"]["claimed"] == 0


def test_signed_approvals_still_start_work_after_flowgit_amends_the_plan(tmp_path: Path) -> None:
    from test_approvals import ssh_signing

    r = state_repo(tmp_path / "repo", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(r, tmp_path / "home")
    set_approvals(r, "{required: 1, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    assert r.ok("approve", "P", "--reviewer", "rev", "--json").json["phase"] == "execute"
    r.ok("claim", "P/T1", "--worker", "w")
    r.ok("task", "add", "P", "T4", "--title", "four")  # an amendment: no approval of its own
    r.ok("claim", "P/T4", "--worker", "w")


def test_via_merge_work_goes_on_after_flowgit_amends_the_merged_plan(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals="{via: merge}")
    r.git("checkout", "-q", "-b", "plan-p")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "plan-p")
    r.ok("advance", "P")
    r.ok("claim", "P/T1", "--worker", "w")
    r.ok("task", "add", "P", "T4", "--title", "four")  # committed on main by flowgit: no merge
    r.ok("claim", "P/T4", "--worker", "w")



def test_signed_approvals_still_count_after_the_plan_log_is_compacted(tmp_path: Path) -> None:
    """A compaction snapshot's approvals count for nothing with signed approvals (anyone can write
    one): the approval events that still count are kept beside it, so work goes on."""
    from test_approvals import ssh_signing

    r = state_repo(tmp_path / "repo", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(r, tmp_path / "home")
    cfg = r.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text() + "compact: {threshold: 6, keep: 1}\n")
    set_approvals(r, "{required: 1, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "rev")
    for _ in range(4):  # each failure without a retry is a plan event
        r.ok("claim", "P/T1", "--worker", "w")
        r.ok("fail", "P/T1", "--worker", "w", "--error", "boom")
        r.ok("retry", "P/T1")
    from helpers import of_type

    assert of_type(r, "P", "plan.snapshot"), "the plan log was not compacted"
    assert [a["reviewer"] for a in r.ok("status", "P", "--json").json["approvals"]] == ["rev"]
    r.ok("claim", "P/T2", "--worker", "w")

# ----- finding 5: a branch name from an event is checked before it becomes a ref ------------------

@pytest.mark.parametrize("base", ["../../../../etc/hostname", "x/../../HEAD", "-main", "a..b", "x.lock", "ma in"])
def test_a_review_event_naming_no_branch_holds_the_task(tmp_path: Path, base: str) -> None:
    r = state_repo(tmp_path / "repo", approvals="{required: 0}")
    r.plan("P", PLAN)
    r.ok("claim", "P/T1", "--worker", "w")
    line = make_event("task.review", "P", "T1", "w", 9, {"branch": "flow/P/T1", "commit": r.git("rev-parse", "HEAD"),
                                                      "base": base}, time.time()).to_line()
    push_state_event(r, tmp_path, "P", line, stream="T1", push=False)
    row = next(t for t in r.ok("status", "P", "--json").json["tasks"] if t["id"] == "T1")
    assert row["state"] == "blocked", row  # held by the unreadable line, never taken for `review`
    res = r.proc("validate")
    assert res.returncode == 1 and "base" in res.stderr and "branch name" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# ----- finding 2: approvals.branch is the default branch's, not the checked-out branch's -----------

def test_a_branch_naming_itself_the_approvals_branch_approves_nothing(tmp_path: Path) -> None:
    maintainer = state_repo(tmp_path / "maintainer", approvals="{via: merge}")
    bare, mallory = published(maintainer, tmp_path)
    mallory.git("checkout", "-q", "-b", "evil")
    set_approvals(mallory, "{via: merge, branch: evil}")
    mallory.git("checkout", "-q", "-b", "evil-plan")
    mallory.plan("P", PLAN)
    mallory.git("checkout", "-q", "evil")
    mallory.git("merge", "-q", "--no-ff", "-m", "Merge pull request #666", "evil-plan")  # a merge on evil
    mallory.git("push", "-q", "origin", "evil", "evil-plan")
    reviewer = clone(bare, tmp_path / "reviewer", "rita")
    reviewer.ok("sync")
    reviewer.git("checkout", "-q", "evil")  # to review it
    reviewer.ok("submit", "P")
    st = reviewer.ok("status", "P", "--json").json
    assert st["phase"] == "plan_review" and st["approvals"] == [], st
    res = reviewer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, res.stderr
    # the same merge on main is the approval
    reviewer.git("checkout", "-q", "main")
    reviewer.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "origin/evil-plan")
    reviewer.ok("advance", "P")
    assert reviewer.ok("status", "P", "--json").json["phase"] == "execute"
    reviewer.ok("claim", "P/T1", "--worker", "w")


def test_approvals_branch_set_on_the_default_branch_holds_everywhere(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo", approvals="{via: merge, branch: release}")
    r.git("branch", "release")
    r.git("checkout", "-q", "-b", "plan-p")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.git("checkout", "-q", "release")
    r.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "plan-p")
    r.git("checkout", "-q", "plan-p")
    r.ok("advance", "P")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    r.ok("claim", "P/T1", "--worker", "w")


# ----- finding 3: a bad recorded config leaves sync and doctor working -------------------------------

def test_a_bad_recorded_config_from_a_sync_leaves_sync_and_doctor_working(tmp_path: Path) -> None:
    from test_state_plan import synced_pair

    a, b = synced_pair(tmp_path)
    good = b.git("rev-parse", "flow/state:.flow/config.yaml")
    push_state_file(a, tmp_path, ".flow/config.yaml", "version: 2\napprovals: {via: pigeon}\n")
    b.ok("sync")
    for args in (("status", "P"), ("claim", "P/T1", "--worker", "w"), ("approve", "P", "--reviewer", "r2")):
        res = b.proc(*args)
        assert res.returncode == 1 and "flow/state:.flow/config.yaml" in res.stderr, (args, res.stderr)
        assert "flowgit doctor --fix" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    res = b.proc("sync")  # sync runs on the work tree's config: a teammate's repair can come in
    assert res.returncode == 0, res.stderr
    assert "flow/state:.flow/config.yaml" in res.stderr and "doctor --fix" in res.stderr, res.stderr
    res = b.proc("--json", "doctor")
    assert res.returncode == 1, res.stdout + res.stderr
    found = [p for p in json.loads(res.stdout)["problems"] if p["kind"] == "recorded_config"]
    assert found and found[0]["path"] == "flow/state:.flow/config.yaml", res.stdout
    assert "flowgit doctor --fix" in found[0]["message"] and "pigeon" in found[0]["message"]
    before = b.git("rev-parse", "flow/state")
    res = b.proc("doctor", "--fix")
    assert res.returncode == 0, res.stdout + res.stderr
    assert b.git("rev-parse", "flow/state:.flow/config.yaml") == good  # the last one that read
    assert b.git("rev-parse", "flow/state~1") == before
    b.ok("claim", "P/T1", "--worker", "w")
    b.ok("sync")  # the repair reaches the remote
    a.ok("sync")
    assert a.git("rev-parse", "flow/state:.flow/config.yaml") == good
    a.ok("status", "P")


def test_doctor_fix_removes_a_recorded_config_when_none_ever_read(tmp_path: Path) -> None:
    r = state_repo(tmp_path / "repo")
    r.plan("P", PLAN)
    r.ok("submit", "P")  # in review: no config recorded yet
    push_state_file(r, tmp_path, ".flow/config.yaml", "version: 2\nretry: [\n", push=False)
    res = r.proc("status", "P")
    assert res.returncode == 1 and "flow/state:.flow/config.yaml" in res.stderr, res.stderr
    res = r.proc("doctor", "--fix")
    assert res.returncode == 0, res.stdout + res.stderr
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "flow/state:.flow/config.yaml"], cwd=r.path,
                          capture_output=True).returncode != 0
    r.ok("status", "P")
