"""The fifth session's gaps: what a teammate who can push `flow/state`, or who commits to a
branch this clone pulls, could do through the open findings of the fourth closing note. Each
case is real clones of one bare remote, the attack arriving by `flowgit sync` or `git pull`."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from helpers import Repo
from test_adversary_gates import published, push_state_event, push_state_file
from test_state_plan import PLAN, set_approvals, state_repo

from flowgit.core.events import MAX_CLOCK, make_event
from flowgit.store.state import log_path


def forged(task: str | None, clock: int, type_: str = "task.log") -> str:
    data: dict[str, object] = {"task": "T9"} if task is None else {"message": "hello"}
    if task is None:
        type_ = "plan.task_failed"
    return make_event(type_, "P", task, "mallory", clock, data, time.time()).to_line()


def executing(tmp_path: Path) -> tuple[Repo, Repo]:
    maintainer = state_repo(tmp_path / "maintainer", approvals="{required: 0}")
    maintainer.plan("P", PLAN)
    maintainer.ok("claim", "P/T2", "--worker", "w")  # the plan executes; T1 has no log yet
    _, mallory = published(maintainer, tmp_path)
    return maintainer, mallory


def test_a_task_line_past_the_last_clock_holds_its_task_and_is_named(tmp_path: Path) -> None:
    """A sound line but for its clock (2**63-1, the most JSON and the old checker allowed) in
    T1's log: T1 is held and named by validate, doctor and status; the plan goes on."""
    maintainer, mallory = executing(tmp_path)
    mallory.ok("claim", "P/T1", "--worker", "m")
    push_state_event(mallory, tmp_path, "P", forged("T1", 2**63 - 1), stream="T1")
    sync = maintainer.run("sync")
    where = "flow/state:.flow/plans/P/events/"
    assert sync.code == 0 and f"unreadable event at {where}" in sync.err, sync.err
    res = maintainer.run("done", "P/T1", "--worker", "m")
    assert res.code == 1 and "unreadable event" in res.err, res.err
    assert "report this as a bug" not in res.err and "Traceback" not in res.err
    assert maintainer.run("done", "P/T2", "--worker", "w").code == 0  # the plan is not held
    val = maintainer.run("validate")
    assert val.code == 1 and where in val.err + val.out and str(MAX_CLOCK) in val.err + val.out, val
    doc = maintainer.run("doctor")
    assert where in doc.out + doc.err, doc
    rows = {t["id"]: t["state"] for t in maintainer.ok("status", "P", "--json").json["tasks"]}
    assert rows["T1"] == "blocked" and rows["T2"] == "done", rows


def test_a_task_line_at_the_last_clock_holds_only_its_task(tmp_path: Path) -> None:
    """The largest clock a reader takes: the next write of that log is past it. flowgit writes
    it (its own check allows any clock up to 2**63-1), so the task is held, named, and never
    'report this as a bug'; other tasks go on."""
    maintainer, mallory = executing(tmp_path)
    push_state_file(mallory, tmp_path, log_path("P", "T1"), forged("T1", MAX_CLOCK))
    assert maintainer.run("sync").code == 0
    res = maintainer.run("claim", "P/T1", "--worker", "w2")
    assert "report this as a bug" not in res.err and "Traceback" not in res.err, res.err
    res = maintainer.run("done", "P/T1", "--worker", "w2")
    assert res.code == 1 and "unreadable event" in res.err, res.err
    assert maintainer.run("validate").code == 1
    assert maintainer.run("done", "P/T2", "--worker", "w").code == 0


def test_a_plan_line_past_the_last_clock_is_named_not_a_bug(tmp_path: Path) -> None:
    """The plan log: a line there holds the plan, as any unreadable plan line does (it may have
    been a rejection or a halt); it is named by validate and by the claim's one line."""
    maintainer, mallory = executing(tmp_path)
    push_state_event(mallory, tmp_path, "P", forged(None, 2**63 - 1))
    assert maintainer.run("sync").code == 0
    res = maintainer.run("claim", "P/T1", "--worker", "w2")
    assert res.code == 1 and "unreadable event" in res.err and "_plan.jsonl" in res.err, res.err
    assert "report this as a bug" not in res.err
    assert maintainer.run("validate").code == 1


def test_doctor_fix_signs_its_state_commit_when_the_bad_recorded_config_asks_for_signing(tmp_path: Path) -> None:
    """A recorded config that does not read but says `approvals: {signed: true}` (the stricter
    policy) while this work tree's does not: `doctor --fix`'s state commit was unsigned, as
    `config` could not be read to say so. It is signed as any state commit is under `signed`."""
    from test_approvals import ssh_signing

    r = state_repo(tmp_path / "repo")
    (tmp_path / "home").mkdir()
    ssh_signing(r, tmp_path / "home")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    push_state_file(r, tmp_path, ".flow/config.yaml",
                    "version: 2\napprovals: {required: 1, signed: true, via: pigeon}\n", push=False)
    res = r.proc("doctor", "--fix")
    assert res.returncode == 0, res.stdout + res.stderr
    assert r.git("log", "-1", "--format=%s", "flow/state").startswith("flow: doctor")
    r.git("verify-commit", "flow/state")  # raises when unsigned


def test_approve_records_the_committed_config_not_uncommitted_edits(tmp_path: Path) -> None:
    """approve recorded the work tree's config.yaml as it was: an edit nobody committed (or
    reviewed) became the config every clone's execution follows. It records HEAD's and says
    in one line that the edits are not recorded."""
    r = state_repo(tmp_path / "repo")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    cfg = r.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("lease_seconds: 900", "lease_seconds: 7"))
    res = r.run("approve", "P", "--reviewer", "rev")
    assert res.code == 0, res.err
    assert "uncommitted" in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert r.git("rev-parse", "flow/state:.flow/config.yaml") == r.git("rev-parse", "HEAD:.flow/config.yaml")
    assert r.ok("status", "P", "--json").json["phase"] == "execute"
    r.git("commit", "-q", "-am", "lease 7")  # committed, approving again records it
    r.ok("approve", "P", "--reviewer", "rev2")
    assert r.git("rev-parse", "flow/state:.flow/config.yaml") == r.git("rev-parse", "HEAD:.flow/config.yaml")


def test_events_from_git_leaves_a_log_version_above_the_limit_unread_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`events --from-git` read every version a log ever had on the state branch whole, with
    no size limit (other readers refuse a log above it by git's header). History keeps a
    pushed huge version for good, so it is left unread, named in one line, and the rest listed."""
    from flowgit.core import storage

    r = state_repo(tmp_path / "repo", approvals="{required: 0}")
    r.plan("P", PLAN)
    r.ok("claim", "P/T1", "--worker", "w")
    line = forged("T2", 3)
    push_state_file(r, tmp_path, log_path("P", "T2"), line * 400, push=False)
    big = r.git("rev-parse", f"flow/state:{log_path('P', 'T2')}")
    push_state_file(r, tmp_path, log_path("P", "T2"), line, push=False)  # put back small
    monkeypatch.setattr(storage, "MAX_LOG_BYTES", 20_000)
    res = r.run("events", "P", "--from-git", "--json")
    assert res.code == 0, res.err
    assert big in res.err and "limit" in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert "Traceback" not in res.err
    tasks = {e["task"] for e in res.json["events"]}
    assert {"T1", "T2"} <= tasks, tasks  # the small version of T2's log is still read


def test_the_board_does_not_read_a_huge_prompt_blob_an_event_names(tmp_path: Path) -> None:
    """A task event's `prompt` names a blob the board shows on the task's page: a pushed event
    could name any blob, of any size, read whole and sent. Above a flowgit file's limit it is
    not read; the page says so in one line."""
    from helpers.board import Board

    from flowgit.formats.yamlio import MAX_YAML_BYTES

    r = state_repo(tmp_path / "repo", approvals="{required: 0}")
    r.plan("P", PLAN)
    r.ok("claim", "P/T1", "--worker", "w")
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=r.path, check=True, capture_output=True,
                          input=b"A" * (MAX_YAML_BYTES + 1)).stdout.decode().strip()
    ev = make_event("task.started", "P", "T1", "w", 5, {"prompt": blob}, time.time()).to_line()
    push_state_event(r, tmp_path, "P", ev, stream="T1", push=False)
    b = Board(r)
    try:
        html = b.get("/plan/P/task/T1")
    finally:
        b.stop()
    assert "AAAAAAAAAA" not in html, len(html)
    assert "limit" in html, html


def test_a_forged_snapshot_cannot_bring_back_an_approval_a_rejection_cleared(tmp_path: Path) -> None:
    """approvals.signed, `required: 2`: alice approves (signed), bob rejects (back to draft),
    the plan is submitted again and carol approves. A snapshot pushed to flow/state listing
    alice's and carol's approvals counted both: alice's signed event is still in the log, so
    it vouched for the listing, though the rejection after it had cleared it."""
    from test_approvals import ssh_signing

    maintainer = state_repo(tmp_path / "maintainer", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(maintainer, tmp_path / "home")
    set_approvals(maintainer, "{required: 2, signed: true}")
    maintainer.plan("P", PLAN)
    maintainer.ok("submit", "P")
    maintainer.ok("approve", "P", "--reviewer", "alice")
    maintainer.ok("reject", "P", "--reviewer", "bob", "--comment", "not yet")
    maintainer.ok("submit", "P")
    first = (tmp_path / "home" / "allowed_signers").read_text()
    (tmp_path / "home2").mkdir()
    both = ssh_signing(maintainer, tmp_path / "home2")  # carol signs with a key of her own
    both.write_text(both.read_text() + first)
    maintainer.ok("approve", "P", "--reviewer", "carol")
    assert maintainer.ok("status", "P", "--json").json["phase"] == "plan_review"
    _, mallory = published(maintainer, tmp_path)
    events = [json.loads(line) for line in mallory.git("show", f"flow/state:{log_path('P', '_plan')}").splitlines()]
    listed = [{"reviewer": e["data"]["reviewer"], "comment": e["data"].get("comment", ""),
               "plan_hash": e["data"]["plan_hash"], "at": e["at"]} for e in events if e["type"] == "plan.approved"]
    assert [a["reviewer"] for a in listed] == ["alice", "carol"]
    state = {"phase": "plan_review", "base_commit": None, "accepted_hash": None, "halted_from": None,
             "failed_tasks": [], "approvals": listed, "checkpoints": {}, "schedules": {}, "signals_handled": []}
    snap = make_event("plan.snapshot", "P", None, "mallory", max(e["clock"] for e in events) + 1,
                      {"state": state, "replaces": 1, "through": events[-1]["id"]}, time.time())
    push_state_event(mallory, tmp_path, "P", snap.to_line())
    maintainer.ok("sync")
    maintainer.run("advance", "P")  # two counted approvals of one version would move it to execute
    st = maintainer.ok("status", "P", "--json").json
    assert st["phase"] == "plan_review" and [a["reviewer"] for a in st["approvals"]] == ["carol"], st
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approv" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_a_signed_approval_after_a_rejection_counts_again(tmp_path: Path) -> None:
    """approvals.signed: one key counts once per version (cb6ab17), but that counted the
    approval a rejection had cleared: alice approved, bob rejected, the same version came back
    and alice's second signed approval was dropped as the key's second; the plan stayed in
    review for good."""
    from test_approvals import ssh_signing

    r = state_repo(tmp_path / "repo", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(r, tmp_path / "home")
    set_approvals(r, "{required: 2, signed: true}")
    r.plan("P", PLAN)
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "alice")
    r.ok("reject", "P", "--reviewer", "bob", "--comment", "not yet")
    r.ok("submit", "P")
    r.ok("approve", "P", "--reviewer", "alice")
    st = r.ok("status", "P", "--json").json
    assert [a["reviewer"] for a in st["approvals"]] == ["alice"], st


def test_a_branch_checked_out_in_the_main_work_tree_is_not_the_default_branch(tmp_path: Path) -> None:
    """No origin/HEAD, no main, no master: the default branch was the main work tree's own, so
    a teammate's branch checked out there to review it was the default branch, and its config
    (`required: 0`) set the approval policy: its plan was claimable. flowgit now stops in one
    line until the clone names its default branch; named, the branch's config is no default."""
    r = Repo(tmp_path / "trunk")
    r.path.mkdir()
    for args in (("init", "-q", "-b", "trunk"), ("config", "user.email", "t@example.com"),
                 ("config", "user.name", "T"), ("commit", "-q", "--allow-empty", "-m", "initial")):
        r.git(*args)
    r.ok("init", "--format", "2")
    set_approvals(r, "{required: 1}")
    subprocess.run(["git", "config", "--unset", "flowgit.defaultBranch"], cwd=r.path)  # set up before this rule
    mallory = Repo(tmp_path / "mallory")
    subprocess.run(["git", "clone", "-q", str(r.path), str(mallory.path)], check=True)
    mallory.git("config", "user.email", "m@example.com")
    mallory.git("config", "user.name", "M")
    mallory.git("checkout", "-q", "-b", "feature")
    set_approvals(mallory, "{required: 0}")
    mallory.plan("P", PLAN)
    r.git("fetch", "-q", str(mallory.path), "feature:feature")
    r.git("checkout", "-q", "feature")  # to review it
    res = r.run("claim", "P/T1", "--worker", "w")
    assert res.code == 1 and "git config flowgit.defaultBranch" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1
    r.git("config", "flowgit.defaultBranch", "trunk")
    res = r.run("claim", "P/T1", "--worker", "w")
    assert res.code == 1 and "approv" in res.err, res.err  # trunk's required: 1 holds here
