"""The fourth session's adversary: what a hostile teammate who can push any branch, and
`flow/state` itself, can make a reviewer's clone do through what landed since 2f296e7 (the
approval gates, the fast YAML path, the one-pass log fold, the derived cache in the git dir,
the line scanner of `task add`). Each case runs real clones of one bare remote, the way the
attack arrives: by `flowgit sync`, `git pull` or a file planted in the work tree."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Repo
from test_adversary_gates import forged_line, plan_hash, published, push_state_event, push_state_file
from test_state_plan import PLAN, STATE_PLAN, set_approvals, state_repo

from flowgit.core.events import make_event
from flowgit.formats import yamlio
from flowgit.store import planedit
from flowgit.store.state import log_path


def rewrite_line(line: str, **changes: object) -> str:
    obj = json.loads(line)
    for key, value in changes.items():
        if key == "data":
            obj["data"] = value
        else:
            obj[key] = value
    return json.dumps(obj, separators=(",", ":"))


def test_a_signed_events_line_rewritten_under_its_own_id_is_no_signed_approval(tmp_path: Path) -> None:
    """approvals.signed: an approval counts when a signed commit added its line, found by the
    event's id (`git log -S<id>`). Rewriting a line the maintainer's signed `submit` added into
    a `plan.approved` line under the same id changes no count of that id: the pickaxe still
    finds only the signed commit, and the sync fast-forwards (no id was dropped)."""
    from test_approvals import ssh_signing

    maintainer = state_repo(tmp_path / "maintainer", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(maintainer, tmp_path / "home")
    set_approvals(maintainer, "{required: 1, signed: true}")
    maintainer.plan("P", PLAN)
    maintainer.ok("submit", "P")  # a signed state commit with this clone's key
    _, mallory = published(maintainer, tmp_path)
    path = log_path("P", "_plan")
    lines = mallory.git("show", f"flow/state:{path}").splitlines()
    target = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "plan.phase")
    lines[target] = rewrite_line(lines[target], type="plan.approved", actor="mallory", data={
        "reviewer": "maintainer", "comment": "lgtm", "plan_hash": plan_hash(mallory), "via": "cli"})
    push_state_file(mallory, tmp_path, path, "\n".join(lines) + "\n")
    maintainer.ok("sync")
    approvals = maintainer.ok("status", "P", "--json").json.get("approvals", [])
    assert approvals == [], approvals  # no approval was ever made, signed or not
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approval" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_task_add_after_a_pull_keeps_a_kept_block_scalar_of_the_last_task(repo: Repo) -> None:
    """The line scanner of `task add` (planslice.scan) took a last line of spaces without a
    line break into the last task's `|+` text; the splice then ended that line, and the
    untouched task's description gained a line ('line one\\n\\n' -> 'line one\\n\\n\\n').
    What is written must be what the round-trip editor writes."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n")
    text = ("id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n  - id: t1\n    title: one\n"
            "    description: |+\n      line one\n\n  ")
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text(text)
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's edit, pulled")
    repo.ok("task", "add", "p", "n1", "--title", "New")
    assert yamlio.loads(path.read_text(), "x")["tasks"][1]["description"] == "line one\n\n"
    assert path.read_text() == planedit.append_tasks(text, "plan.yaml", [{"id": "n1", "title": "New"}])


def test_a_branch_dropping_approvals_branch_does_not_move_the_approvals_branch(tmp_path: Path) -> None:
    """Format 2, `via: merge`: `approvals.branch` is the default branch's committed value
    (configpin.held_branch), but a work tree whose config had no `approvals.branch` took the
    rule's default (`main`) without looking: a branch that drops the key had a merge on main,
    which the team does not protect, count as the approval the team asks of `release`."""
    r = state_repo(tmp_path / "repo", approvals="{via: merge, branch: release}")
    r.git("branch", "release")
    r.git("checkout", "-q", "-b", "plan-p")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "plan-p")  # main, not release
    r.ok("advance", "P")
    assert r.ok("status", "P", "--json").json["phase"] == "plan_review"
    r.git("checkout", "-q", "-b", "evil")
    set_approvals(r, "{via: merge}")  # the key dropped: the default branch, main
    r.ok("advance", "P")
    st = r.ok("status", "P", "--json").json
    assert st["phase"] == "plan_review" and st["approvals"] == [], st
    res = r.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_a_recorded_config_saying_events_does_not_undo_via_merge(tmp_path: Path) -> None:
    """`approvals.via: merge` is the approval a forged line cannot make (SECURITY.md). The
    approval policy was the stricter of the work tree's config and the one recorded in
    `flow/state`, but `via: merge` held only when both said it: one push of a recorded config
    saying `approvals: {required: 1}` and a forged `plan.approved` line made a plan no merge
    ever brought claimable in the maintainer's clone (claim exit 0)."""
    maintainer = state_repo(tmp_path / "maintainer", approvals="{via: merge}")
    maintainer.plan("P", PLAN)  # committed straight to main: no merge approved it
    maintainer.ok("submit", "P")
    _, mallory = published(maintainer, tmp_path)
    cfg = mallory.git("show", "main:.flow/config.yaml").replace("approvals: {via: merge}", "approvals: {required: 1}")
    assert "required: 1" in cfg
    push_state_file(mallory, tmp_path, ".flow/config.yaml", cfg + "\n", push=False)
    push_state_event(mallory, tmp_path, "P", forged_line("P", "plan.approved", {
        "reviewer": "maintainer", "comment": "ok", "plan_hash": plan_hash(mallory), "via": "cli"}))
    maintainer.ok("sync")
    assert maintainer.ok("status", "P", "--json").json["approvals"] == []
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_a_branch_checked_out_to_review_it_cannot_turn_via_merge_into_events(tmp_path: Path) -> None:
    """The same through the work tree: a reviewer checks out a teammate's branch whose config
    says `approvals: {required: 1}` while the default branch's says `via: merge`, and the
    teammate's forged `plan.approved` line (pushed to flow/state) counted."""
    maintainer = state_repo(tmp_path / "maintainer", approvals="{via: merge}")
    maintainer.plan("P", PLAN)
    maintainer.ok("submit", "P")
    bare, mallory = published(maintainer, tmp_path)
    mallory.git("checkout", "-q", "-b", "evil")
    set_approvals(mallory, "{required: 1}")
    mallory.git("push", "-q", "origin", "evil")
    push_state_event(mallory, tmp_path, "P", forged_line("P", "plan.approved", {
        "reviewer": "maintainer", "comment": "ok", "plan_hash": plan_hash(mallory), "via": "cli"}))
    maintainer.ok("sync")
    maintainer.git("fetch", "-q", "origin")
    maintainer.git("checkout", "-q", "-b", "evil", "origin/evil")  # to review it
    assert maintainer.ok("status", "P", "--json").json["approvals"] == []
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_one_signed_approval_listed_twice_in_a_forged_snapshot_is_one_approval(tmp_path: Path) -> None:
    """approvals.signed with `required: 2`: a compaction snapshot's approvals count when a
    signed approval event stands behind them (store/approvals._without_snapshot_approvals),
    by (reviewer, plan hash, time). An unsigned snapshot pushed to flow/state listing alice's
    one signed approval twice made two, and the plan went to execute."""
    from test_approvals import ssh_signing

    maintainer = state_repo(tmp_path / "maintainer", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(maintainer, tmp_path / "home")
    set_approvals(maintainer, "{required: 2, signed: true}")
    maintainer.plan("P", PLAN)
    maintainer.ok("submit", "P")
    maintainer.ok("approve", "P", "--reviewer", "alice")
    assert maintainer.ok("status", "P", "--json").json["phase"] == "plan_review"
    _, mallory = published(maintainer, tmp_path)
    path = log_path("P", "_plan")
    events = [json.loads(line) for line in mallory.git("show", f"flow/state:{path}").splitlines()]
    approval = next(e for e in events if e["type"] == "plan.approved")
    listed = {"reviewer": "alice", "comment": approval["data"].get("comment", ""),
              "plan_hash": approval["data"]["plan_hash"], "at": approval["at"]}
    state = {"phase": "plan_review", "base_commit": None, "accepted_hash": None, "halted_from": None,
             "failed_tasks": [], "approvals": [listed, listed], "checkpoints": {}, "schedules": {},
             "signals_handled": []}
    snap = make_event("plan.snapshot", "P", None, "mallory", max(e["clock"] for e in events) + 1,
                      {"state": state, "replaces": 1, "through": approval["id"]}, time.time())
    push_state_event(mallory, tmp_path, "P", snap.to_line())
    maintainer.ok("sync")
    maintainer.run("advance", "P")  # the phase rules: two approvals of one version would move it
    st = maintainer.ok("status", "P", "--json").json
    assert st["phase"] == "plan_review" and len(st["approvals"]) == 1, st
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


@pytest.mark.parametrize("approvals, remote_head", [("{via: merge, branch: main}", True), ("{via: merge}", False)])
def test_a_pushed_tag_named_like_the_approvals_branch_approves_nothing(
        tmp_path: Path, approvals: str, remote_head: bool) -> None:
    """`via: merge` looked for the merge on the approvals branch by its short name, and git reads
    a short name as a tag first (refs/tags/main before refs/heads/main). A teammate pushed a
    tag `main` on a history of their own with a merge bringing the plan's bytes; a plain
    `git fetch` brought it (it points into a branch they pushed) and the plan, committed
    straight to main, counted as merged: claim exit 0. Either with `approvals.branch: main`, or
    in the clone that made the repository (no origin/HEAD: the default branch is `main`)."""
    maintainer = state_repo(tmp_path / "maintainer", approvals=approvals)
    base = maintainer.git("rev-parse", "HEAD")
    maintainer.plan("P", PLAN)  # committed straight to main: no merge approved it
    maintainer.ok("submit", "P")
    _, mallory = published(maintainer, tmp_path)
    if not remote_head:
        maintainer.git("remote", "set-head", "origin", "-d")
    plan_bytes = subprocess.run(["git", "show", f"main:{STATE_PLAN}"], cwd=mallory.path, capture_output=True,
                                check=True).stdout
    mallory.git("checkout", "-q", "-b", "x", base)
    (mallory.path / STATE_PLAN).parent.mkdir(parents=True, exist_ok=True)
    (mallory.path / STATE_PLAN).write_bytes(plan_bytes)
    mallory.git("add", STATE_PLAN)
    mallory.git("commit", "-q", "--no-verify", "-m", "plan")
    mallory.git("checkout", "-q", "-b", "y", base)
    mallory.git("merge", "-q", "--no-ff", "-m", "Merge pull request #7", "x")
    mallory.git("tag", "main")
    mallory.git("push", "-q", "origin", "y", "refs/tags/main")
    maintainer.git("fetch", "-q", "origin")
    assert maintainer.git("tag", "-l") == "main"
    maintainer.run("advance", "P")
    st = maintainer.ok("status", "P", "--json").json
    assert st["phase"] == "plan_review" and st["approvals"] == [], st
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_an_event_at_the_last_clock_does_not_stop_every_transition(tmp_path: Path) -> None:
    """One `plan.task_failed` line with clock 2**63-1 (the checker's limit then: validate
    passed it) pushed to flow/state: every claim of the plan exited 1 with 'flowgit would write
    an unreadable event ... report this as a bug', and nothing named the line. Readers now take
    clocks up to 2**53-1 (ADR 0014): the line is unreadable and named."""
    maintainer = state_repo(tmp_path / "maintainer", approvals="{required: 0}")
    maintainer.plan("P", PLAN)
    _, mallory = published(maintainer, tmp_path)
    ev = make_event("plan.task_failed", "P", None, "mallory", 2**63 - 1, {"task": "T9"}, time.time())
    push_state_event(mallory, tmp_path, "P", ev.to_line())
    maintainer.ok("sync")
    res = maintainer.run("claim", "P/T1", "--worker", "w")
    assert res.code == 0 or maintainer.run("validate").code == 1, res.err


def test_a_junk_claim_ref_holds_its_task_not_every_sync(tmp_path: Path) -> None:
    maintainer = state_repo(tmp_path / "maintainer", approvals="{required: 0}")
    maintainer.plan("P", PLAN)
    maintainer.plan("Q", PLAN.replace("id: P", "id: Q"))
    _, mallory = published(maintainer, tmp_path)
    junk = mallory.git("commit-tree", mallory.git("rev-parse", "flow/state^{tree}"), "-m", "not a claim")
    mallory.git("push", "-q", "origin", f"{junk}:refs/heads/flow/state-claims/P/T1")
    assert maintainer.run("sync").code == 0
    assert maintainer.run("claim", "Q/T1", "--worker", "w", "--sync").code == 0
    # the junk holds its own task, said in one line with the way out, here and in doctor
    res = maintainer.run("claim", "P/T1", "--worker", "w", "--sync")
    delete = "git push origin --delete flow/state-claims/P/T1"
    assert res.code == 1 and delete in res.err and "\n" not in res.err.strip()
    assert maintainer.run("claim", "P", "--worker", "w", "--sync").code in (0, 3)
    doctor = maintainer.run("doctor", "--json")
    assert doctor.code == 1 and [p["kind"] for p in doctor.json["problems"]] == ["held_claim"]
    assert delete in doctor.json["problems"][0]["message"]


def test_one_signing_key_is_one_signed_approval(tmp_path: Path) -> None:
    """approvals.signed with `required: 2`: one person holding one allowed key approves twice,
    as `--reviewer alice` and `--reviewer bob` (free text), both signed by that key, and the
    plan goes to execute: the two approvals a team asks for came from one key."""
    from test_approvals import ssh_signing

    r = state_repo(tmp_path / "repo", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(r, tmp_path / "home")
    set_approvals(r, "{required: 2, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.run("approve", "P", "--reviewer", "alice")
    r.run("approve", "P", "--reviewer", "bob")
    assert r.ok("status", "P", "--json").json["phase"] == "plan_review"
